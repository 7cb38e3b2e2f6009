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

    Args:
        input_dim: width of the embedding it reads.
        hidden_dims: widths of the hidden layers (the last layer has one unit).
        dropout: dropout rate after each hidden layer (0: none).
        leaky_relu_slope: negative slope of LeakyReLU.
        mos_range: (low, high) of the output.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dims: tuple[int, ...] = (256, 128, 64),
        dropout: float = 0.0,
        leaky_relu_slope: float = 0.1,
        mos_range: tuple[float, float] = (1.0, 5.0),
        **kwargs,
    ):
        hidden_dims = tuple(int(width) for width in hidden_dims)
        mos_range = tuple(float(value) for value in mos_range)

        # === Layers ===
        hidden = []
        for index, width in enumerate(hidden_dims):
            name = f"dense{index + 1}"
            hidden.append(keras.layers.Dense(width, name=name))
            hidden.append(keras.layers.LeakyReLU(negative_slope=leaky_relu_slope, name=f"{name}_act"))
            if dropout:
                hidden.append(keras.layers.Dropout(dropout, name=f"{name}_dropout"))
        # The score in float32 under mixed precision: a sigmoid near 0 or 1 needs it.
        output = keras.layers.Dense(1, dtype="float32", name="score")
        bound = ScaledSigmoid(*mos_range, dtype="float32", name="scaled_sigmoid")

        # === Functional Model ===
        embedding = keras.Input(shape=(input_dim,), name="embedding")
        x = embedding
        for layer in hidden:
            x = layer(x)
        mos = bound(output(x))
        super().__init__(inputs=embedding, outputs=mos, **kwargs)

        # === Config ===
        self.input_dim = input_dim
        self.hidden_dims = hidden_dims
        self.dropout = dropout
        self.leaky_relu_slope = leaky_relu_slope
        self.mos_range = mos_range

    def get_config(self):
        return {
            "input_dim": self.input_dim,
            "hidden_dims": list(self.hidden_dims),
            "dropout": self.dropout,
            "leaky_relu_slope": self.leaky_relu_slope,
            "mos_range": list(self.mos_range),
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
