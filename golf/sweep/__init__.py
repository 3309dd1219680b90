"""Sweeps: Hydra multirun jobs, their records on disk, and what turns them into a comparison.

    launch.py    DistConfig; a job asking for N processes re-runs itself under torchrun (Lightning #18145)
    job.py       JobFailed marker, work done after training inside a job (export_after, rank check, summary)
    records.py   one JobRecord per job directory (status.json, metrics.json, overrides); summary.json/md
    callback.py  Hydra callback writing each job's status and the sweep summary (hydra.callbacks.golf_sweep)
    stats.py     mean ± std per configuration over seeds; Welch t-test against a baseline (the record rule)
    plots.py     PNG charts: training-loss curves, val_bpb vs artifact bytes

Nothing here is needed to train; `golf.report` reads sweep and run directories alone (no W&B).
"""
