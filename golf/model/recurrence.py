"""Depth schedules: which physical block runs at each virtual depth, split into U-Net encoder/decoder halves.

Three forms, all expressed as a list of physical block indices (the "virtual index list"):
- baseline: [0, 1, ..., L-1] (official train_gpt.py: encoder = first L//2, decoder = the rest);
- repeated blocks (seed 001 depth-recurrent GPT): the whole stack of L unique blocks looped k times,
  e.g. 3 blocks × 3 = [0,1,2,0,1,2,0,1,2] (9 effective layers, no extra parameters);
- looped range (records 2026-04-05_SP8192_GPTQ-Embeddings_SDClip_Loop45x2 onward, NUM_LOOPS/LOOP_START/
  LOOP_END): [0..s-1] + [s..e] × (num_loops+1) + [e+1..L-1], e.g. L=11, loop 3-5 ×2 ->
  encoder [0,1,2,3,4,5,3,4], decoder [5,3,4,5,6,7,8,9,10] (17 virtual layers).
Every list is split in half (encoder = first len//2), so U-Net skips connect the unrolled depth.
"""

from __future__ import annotations

from dataclasses import dataclass

from golf.model.config import ModelConfig


@dataclass(frozen=True)
class LayerSchedule:
    """Physical block index per virtual layer, split into the U-Net encoder and decoder halves."""

    encoder: tuple[int, ...]
    decoder: tuple[int, ...]

    @property
    def depth(self) -> int:
        """Effective (virtual) number of layers."""
        return len(self.encoder) + len(self.decoder)

    @property
    def num_skips(self) -> int:
        """U-Net skip connections (official: min(encoder, decoder))."""
        return min(len(self.encoder), len(self.decoder))


def split_unet(virtual: list[int]) -> LayerSchedule:
    """Encoder = first len//2 virtual layers, decoder = the rest (official split, train_gpt.py L670-713)."""
    half = len(virtual) // 2
    return LayerSchedule(tuple(virtual[:half]), tuple(virtual[half:]))


def looped_range_indices(num_layers: int, loop_start: int, loop_end: int, num_loops: int) -> list[int]:
    """[0..s-1] + [s..e] × (num_loops + 1) + [e+1..L-1] (records' NUM_LOOPS form)."""
    segment = list(range(loop_start, loop_end + 1))
    return list(range(loop_start)) + segment * (num_loops + 1) + list(range(loop_end + 1, num_layers))


def layer_schedules(cfg: ModelConfig) -> tuple[LayerSchedule, LayerSchedule]:
    """(full, plain) schedules of a config.

    `full` is the trained architecture (looping on); `plain` is what runs before `enable_looping_at` in the
    looped-range form (the baseline list). Both are equal when there is no switchable loop.
    """
    plain = split_unet(list(range(cfg.num_layers)))
    if cfg.block_repeats > 1:
        full = split_unet(list(range(cfg.num_layers)) * cfg.block_repeats)
        return full, full
    if cfg.num_loops > 0:
        full = split_unet(looped_range_indices(cfg.num_layers, cfg.loop_start, cfg.loop_end, cfg.num_loops))
        return full, plain
    return plain, plain
