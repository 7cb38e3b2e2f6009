"""The regression head of JSQA's second stage: embedding -> MOS in [1, 5]."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="jsqa_tf")
class ScaledSigmoid(keras.layers.Layer):
    """`low + (high - low) * sigmoid(x)`: bounds a score to [low, high] (float32).

    Args:
        low: the lower bound (1 on the MOS scale).
        high: the upper bound (5 on the MOS scale).
    """

    def __init__(self, low: float = 1.0, high: float = 5.0, **kwargs):
        super().__init__(**kwargs)
        if not low < high:
            raise ValueError(f"need low < high, got {low}, {high}")
        self.low = float(low)
        self.high = float(high)

    def call(self, inputs):
        return self.low + (self.high - self.low) * ops.sigmoid(ops.cast(inputs, "float32"))

    def get_config(self):
        return {**super().get_config(), "low": self.low, "high": self.high}


@keras.saving.register_keras_serializable(package="jsqa_tf")
class MOSHead(keras.Model):
    """Fully connected layers with LeakyReLU (and optional dropout), then one unit and a
    scaled sigmoid: the paper's 4-layer regression network (512 -> 256 -> 128 -> 64 -> 1).

    With several `targets` (the NISQA set: mos, noi, col, dis, loud) it ends in one unit and
    scaled sigmoid per target, each to its own range, concatenated in the order of `targets`:
    [batch, len(targets)]. `kind` "separate" gives each target its own hidden stack (layers
    named `<target>_dense1`, ...); "shared" runs one hidden stack and branches at the last
    unit. One target ("mos", the default) builds exactly the paper's head, [batch, 1].

    Args:
        input_dim: width of the embedding it reads.
        hidden_dims: widths of the hidden layers (the last layer has one unit).
        dropout: dropout rate after each hidden layer (0: none).
        leaky_relu_slope: negative slope of LeakyReLU.
        mos_range: (low, high) of the output (of the "mos" target).
        targets: what it predicts, in output order.
        target_ranges: (low, high) per target; None: `mos_range` for "mos", (1, 5) else.
        kind: "separate" or "shared" hidden layers (several targets only).
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dims: tuple[int, ...] = (256, 128, 64),
        dropout: float = 0.0,
        leaky_relu_slope: float = 0.1,
        mos_range: tuple[float, float] = (1.0, 5.0),
        targets: tuple[str, ...] = ("mos",),
        target_ranges: tuple[tuple[float, float], ...] | None = None,
        kind: str = "separate",
        **kwargs,
    ):
        hidden_dims = tuple(int(width) for width in hidden_dims)
        mos_range = tuple(float(value) for value in mos_range)
        targets = tuple(targets)
        target_ranges = _checked_target_ranges(targets, mos_range, target_ranges)
        if kind not in ("separate", "shared"):
            raise ValueError(f"kind must be 'separate' or 'shared', not {kind!r}")
        single = targets == ("mos",)

        def hidden_stack(prefix):
            layers = []
            for index, width in enumerate(hidden_dims):
                name = f"{prefix}dense{index + 1}"
                layers.append(keras.layers.Dense(width, name=name))
                layers.append(keras.layers.LeakyReLU(negative_slope=leaky_relu_slope, name=f"{name}_act"))
                if dropout:
                    layers.append(keras.layers.Dropout(dropout, name=f"{name}_dropout"))
            return layers

        def run(layers, x):
            for layer in layers:
                x = layer(x)
            return x

        # === Functional Model ===
        if single:  # layers made in the order they always were: the same initial weights
            hidden = hidden_stack("")
            # The score in float32 under mixed precision: a sigmoid near 0 or 1 needs it.
            output = keras.layers.Dense(1, dtype="float32", name="score")
            bound = ScaledSigmoid(*mos_range, dtype="float32", name="scaled_sigmoid")
            embedding = keras.Input(shape=(input_dim,), name="embedding")
            scores = bound(output(run(hidden, embedding)))
        else:
            embedding = keras.Input(shape=(input_dim,), name="embedding")
            shared = run(hidden_stack(""), embedding) if kind == "shared" else None
            columns = []
            for target, (low, high) in zip(targets, target_ranges, strict=True):
                x = shared if shared is not None else run(hidden_stack(f"{target}_"), embedding)
                x = keras.layers.Dense(1, dtype="float32", name=f"{target}_score")(x)
                columns.append(ScaledSigmoid(low, high, dtype="float32", name=f"{target}_sigmoid")(x))
            scores = keras.layers.Concatenate(axis=-1, dtype="float32", name="scores")(columns)
        super().__init__(inputs=embedding, outputs=scores, **kwargs)

        # === Config ===
        self.input_dim = input_dim
        self.hidden_dims = hidden_dims
        self.dropout = dropout
        self.leaky_relu_slope = leaky_relu_slope
        self.mos_range = mos_range
        self.targets = targets
        self.target_ranges = target_ranges
        self.kind = kind

    def get_config(self):
        config = {
            "input_dim": self.input_dim,
            "hidden_dims": list(self.hidden_dims),
            "dropout": self.dropout,
            "leaky_relu_slope": self.leaky_relu_slope,
            "mos_range": list(self.mos_range),
            "name": self.name,
            "trainable": self.trainable,
        }
        if self.targets != ("mos",):  # a MOS-only head saves as it always did
            config.update(
                targets=list(self.targets),
                target_ranges=[list(pair) for pair in self.target_ranges],
                kind=self.kind,
            )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _checked_target_ranges(targets, mos_range, target_ranges=None) -> tuple[tuple[float, float], ...]:
    """Each target's (low, high): as given, else `mos_range` for "mos" and (1, 5) for a
    NISQA dimension."""
    from jsqa_tf.ranges import TARGETS, default_target_ranges

    targets = tuple(targets)
    if not targets or len(set(targets)) != len(targets):
        raise ValueError(f"targets must be distinct and at least one, got {list(targets)}")
    unknown = [target for target in targets if target not in TARGETS]
    if unknown:
        raise ValueError(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    if target_ranges is None or len(target_ranges) == 0:
        target_ranges = default_target_ranges(targets, mos_range)
    if len(target_ranges) != len(targets):
        raise ValueError(f"{len(target_ranges)} target ranges for {len(targets)} targets")
    pairs = tuple((float(low), float(high)) for low, high in target_ranges)
    for target, (low, high) in zip(targets, pairs, strict=True):
        if not low < high:
            raise ValueError(f"the range of {target} needs low < high, got {low}, {high}")
    return pairs
