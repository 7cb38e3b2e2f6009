"""How a config declares the allowed range of a numeric setting, beside the setting itself.

A config dataclass declares each numeric field with `setting(default, allowed)`:

    epochs: int = setting(45, at_least(1))
    dropout: float = setting(0.0, SHARE)

and calls `check_ranges(self)` first in its `__post_init__`, which refuses a value outside its
range, naming the field's path in a YAML file (the class's `YAML_SECTION`, e.g. "training.")
and the value: `training.learning_rate must be > 0, got -0.001`. Floats must also be finite;
a tuple's items are checked each. `FINITE` declares a field whose limits depend on another
field (a window inside a range): the class checks those itself. The tests fail for a numeric
field declared without a range.
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
        if self.low is None and self.high is None:
            return f"a finite number{unit}"
        if self.high is None:
            return f"{'>=' if self.low_closed else '>'} {self.low:g}{unit}"
        if self.low is None:
            return f"{'<=' if self.high_closed else '<'} {self.high:g}{unit}"
        opening, closing = "[" if self.low_closed else "(", "]" if self.high_closed else ")"
        return f"in {opening}{self.low:g}, {self.high:g}{closing}{unit}"


def at_least(low) -> Range:
    return Range(low)


def above(low) -> Range:
    return Range(low, low_closed=False)


FINITE = Range()
"""Any finite number: the limits depend on another field, and the class checks them."""
SHARE = Range(0.0, 1.0, high_closed=False)
"""[0, 1): dropout, a held-out share."""
SAMPLE_RATES = Range(4_000, 192_000, unit="Hz")

RANGE = "range"
"""The key of a field's range in its metadata."""


def setting(default, allowed: Range):
    """A dataclass field with a default and its allowed range (checked by `check_ranges`)."""
    return dataclasses.field(default=default, metadata={RANGE: allowed})


def check_ranges(config) -> None:
    """Raises `ConfigError` naming the field's path and value for the first numeric field of
    `config` outside its declared range, or a float that is not finite (None is skipped)."""
    section = getattr(type(config), "YAML_SECTION", "")
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        items = enumerate(value) if isinstance(value, tuple) else [(None, value)]
        for index, item in items:
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                continue
            name = f"{section}{field.name}" + ("" if index is None else f"[{index}]")
            if isinstance(item, float) and not math.isfinite(item):
                raise ConfigError(f"{name} must be a finite number, got {item}")
            allowed = field.metadata.get(RANGE)
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
DIMENSIONS = ("noi", "col", "dis", "loud")
"""NISQA's quality dimensions beside the MOS: noisiness, coloration, discontinuity, loudness
(1 to 5, higher is better, as the MOS)."""
TARGETS = ("mos", *DIMENSIONS)
"""What a `MOSRegressor` can be trained to predict (`model.targets`), in this order."""
DIMENSION_RANGE = (1.0, 5.0)
"""The scale of the dimension columns of the NISQA corpus."""
HEAD_KINDS = ("separate", "shared")
PAIR_FAMILIES = ("additive", "codec", "reverb", "bandwidth")
"""What the two views of a JND pair may differ by (`jsqa_tf.data.families`), in this order
(the order of a batch's rows)."""
REVERB_LEVELS = Range(0.0, 100.0, unit="(CDPAM's level scale)")
"""CDPAM's level scale of a reverberation parameter (DRR, RT60)."""
"""A multi-target head: a hidden stack per target, or one stack with an output per target."""


def default_target_ranges(targets, mos_range=MOS_RANGE) -> tuple[tuple[float, float], ...]:
    """Each target's scale when none is given: `mos_range` for "mos", `DIMENSION_RANGE` for a
    NISQA dimension."""
    return tuple(tuple(mos_range) if target == "mos" else DIMENSION_RANGE for target in targets)


def model_targets(model) -> tuple[str, ...]:
    """What a model (`MOSRegressor`, or a copy of one) predicts, in output order: ("mos",)
    for a MOS-only model."""
    return tuple(getattr(model, "targets", ("mos",)))


def mos_column(targets) -> int:
    """The column of multi-target scores that MOS labels, checkpoints and the train RMSE
    follow: the MOS's, else the first target's."""
    targets = tuple(targets)
    return targets.index("mos") if "mos" in targets else 0
