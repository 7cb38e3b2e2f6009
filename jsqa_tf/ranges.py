"""The allowed range of every numeric setting of every config, in one table.

`check_ranges(config)` (called first by each config dataclass's `__post_init__`) refuses a
value outside its range, naming the field's path in a YAML file and the value:
`training.learning_rate must be > 0, got -0.001`. Floats must also be finite. Checks that
involve two fields (a window inside a range) stay with their config class.
"""

from __future__ import annotations

import dataclasses
import math

from jsqa_tf.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Range:
    """An interval a setting must lie in: `low` (<, or <= when `low_closed`) value (<, or <=
    when `high_closed`) `high`; None leaves a side open. `unit` is said in the message."""

    low: float | None = None
    high: float | None = None
    low_closed: bool = True
    high_closed: bool = True
    unit: str = ""

    def __contains__(self, value) -> bool:
        if self.low is not None and not (value >= self.low if self.low_closed else value > self.low):
            return False
        return self.high is None or (value <= self.high if self.high_closed else value < self.high)

    def __str__(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if self.high is None:
            return f"{'>=' if self.low_closed else '>'} {self.low:g}{unit}"
        if self.low is None:
            return f"{'<=' if self.high_closed else '<'} {self.high:g}{unit}"
        opening, closing = "[" if self.low_closed else "(", "]" if self.high_closed else ")"
        return f"in {opening}{self.low:g}, {self.high:g}{closing}{unit}"


def _at_least(low) -> Range:
    return Range(low)


def _above(low) -> Range:
    return Range(low, low_closed=False)


_SHARE = Range(0.0, 1.0, high_closed=False)  # [0, 1): dropout, a held-out share
SAMPLE_RATES = Range(4_000, 192_000, unit="Hz")

RANGES: dict[str, tuple[str, dict[str, Range]]] = {
    # class name: (its section in a YAML file, {field: range}); a tuple's items are checked each
    "PrepareConfig": (
        "",
        {
            "sample_rate": SAMPLE_RATES,
            "shard_seconds": _above(0),
            "val_fraction": _SHARE,
            "seed": _at_least(0),
            "min_seconds": _at_least(0),
            "channel": _at_least(0),
            "num_workers": _at_least(0),
        },
    ),
    "PairConfig": (
        "",
        {
            "crop_seconds": _above(0),
            "pairs_per_batch": _at_least(2),
            "sample_rate": SAMPLE_RATES,
            "seed": _at_least(0),
            "noise_bank_max_mb": _at_least(0),
            "max_crops_per_file": _at_least(1),
        },
    ),
    "PretrainDataConfig": (
        "data.",
        {
            "crop_seconds": _above(0),
            "pairs_per_batch": _at_least(2),
            "val_batches": _at_least(1),
            "noise_bank_max_mb": _at_least(0),
            "max_crops_per_file": _at_least(1),
        },
    ),
    "EncoderConfig": (
        "model.",
        {
            "first_filters": _at_least(1),
            "num_blocks": _at_least(1),
            "layers_per_block": _at_least(1),
            "growth": _at_least(1),
            "kernel_size": _at_least(1),
            "embedding_dim": _at_least(1),
            "contrastive_dim": _at_least(1),
            "projection_dropout": _SHARE,
        },
    ),
    "PretrainTrainingConfig": (
        "training.",
        {
            "epochs": _at_least(1),
            "steps_per_epoch": _at_least(1),
            "epoch_hours": _above(0),
            "learning_rate": _above(0),
            "temperature": _above(0),
            "seed": _at_least(0),
            "keep_checkpoints": _at_least(1),
            "audio_examples": _at_least(0),
        },
    ),
    "MOSDataConfig": (
        "data.",
        {
            "train_fraction": Range(0.0, 1.0, low_closed=False),
            "subset_seed": _at_least(0),
            "crop_seconds": _above(0),
            "batch_size": _at_least(1),
            "window_seconds": _above(0),
            "length_bucket_seconds": _above(0),
        },
    ),
    "MOSModelConfig": ("model.", {"hidden_dims": _at_least(1), "dropout": _SHARE}),
    "FinetuneTrainingConfig": (
        "training.",
        {
            "epochs": _at_least(1),
            "steps_per_epoch": _at_least(1),
            "learning_rate": _above(0),
            "encoder_learning_rate": _at_least(0),
            "weight_decay": _at_least(0),
            "freeze_encoder_epochs": _at_least(0),
            "early_stopping_patience": _at_least(1),
            "seed": _at_least(0),
            "keep_checkpoints": _at_least(1),
        },
    ),
    "DistillDataConfig": (
        "data.",
        {
            "crop_seconds": _above(0),
            "mixtures_per_batch": _at_least(2),
            "mos_clips_per_batch": _at_least(0),
            "clean_share": Range(0.0, 1.0),
            "window_seconds": _above(0),
            "val_batch_size": _at_least(1),
            "noise_bank_max_mb": _at_least(0),
        },
    ),
    "DistillModelConfig": ("model.", {"hidden_dims": _at_least(1), "embedding_loss_weight": _at_least(0)}),
    "DistillTrainingConfig": (
        "training.",
        {
            "epochs": _at_least(1),
            "steps_per_epoch": _at_least(1),
            "learning_rate": _above(0),
            "label_loss_weight": _at_least(0),
            "early_stopping_patience": _at_least(1),
            "seed": _at_least(0),
            "keep_checkpoints": _at_least(1),
        },
    ),
    "EvaluateConfig": (
        "evaluate.",
        {
            "window_seconds": _above(0),
            "batch_size": _at_least(1),
            "num_bootstrap": _at_least(0),
            "seed": _at_least(0),
        },
    ),
}


def check_ranges(config) -> None:
    """Raises `ConfigError` naming the field's path and value for the first numeric field of
    `config` outside its `RANGES` entry, or a float that is not finite (None is skipped)."""
    section, ranges = RANGES.get(type(config).__name__, ("", {}))
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        items = enumerate(value) if isinstance(value, tuple) else [(None, value)]
        for index, item in items:
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                continue
            name = f"{section}{field.name}" + ("" if index is None else f"[{index}]")
            if isinstance(item, float) and not math.isfinite(item):
                raise ConfigError(f"{name} must be a finite number, got {item}")
            allowed = ranges.get(field.name)
            if allowed is not None and item not in allowed:
                raise ConfigError(f"{name} must be {allowed}, got {item!r}")


def check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")


def check_interval(name: str, value: tuple) -> None:
    if len(value) != 2 or value[0] >= value[1]:
        raise ConfigError(f"{name} must be [low, high] with low < high, got {list(value)}")


ENCODER_PRESETS = ("jsqa", "cdpam", "small", "tiny")
"""The `WaveformEncoder` presets (`jsqa_tf.models.PRESETS`; checked equal by the tests)."""
STUDENT_PRESETS = ("student", "student-w512", "student-waveform", "student-tiny")
"""The `StudentEncoder` presets (`jsqa_tf.models.STUDENT_PRESETS`; checked equal by the tests)."""
DECIMATIONS = ("stride", "subsample")
MOS_RANGE = (1.0, 5.0)
"""The ACR scale of NISQA and ITU-T P.800."""
