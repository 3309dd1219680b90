"""The training-time techniques a run config selects, built as hooks (golf.train.hooks.TrainHook).

Each technique's module is imported only when the config uses it, so a submission ships only those it runs.
"""

from __future__ import annotations

from golf.train.hooks import TrainHook


def build_hooks(cfg) -> list[TrainHook]:
    """Hooks selected by a typed TrainRunConfig, in the order they run.

    Weight averaging (`cfg.averaging`, golf/train/averaging.py) comes last, so its `on_train_end` swaps the
    averaged weights in after every other hook has finished with the live ones.
    """
    hooks: list[TrainHook] = []
    if cfg.model.num_loops > 0 and cfg.model.enable_looping_at > 0:
        from golf.train.looping import EnableLoopingHook  # lazy: only looped models ship it

        hooks.append(EnableLoopingHook(cfg.model.enable_looping_at, cfg.schedule.iterations,
                                       cfg.schedule.max_wallclock_seconds))
    if cfg.quant.qat.enabled:
        from golf.train.qat import QATHook  # lazy: only a QAT run ships the QAT code

        hooks.append(QATHook(cfg.quant))
    averager = None
    if cfg.averaging.name != "none":
        from golf.train.averaging import build_averager  # lazy: only averaged runs ship it

        averager = build_averager(cfg.averaging)
    if averager is not None:
        hooks.append(averager)
    return hooks
