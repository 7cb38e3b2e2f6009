"""The optional projection head of contrastive pretraining."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="jsqa_tf")
class ProjectionHead(keras.Model):
    """Two Dense layers, each halving the width; LeakyReLU and dropout after the first.

    Args:
        input_dim: width of the embedding slice it projects.
        dropout: dropout rate after the first layer.
        leaky_relu_slope: negative slope of LeakyReLU.
    """

    def __init__(self, input_dim: int, dropout: float = 0.1, leaky_relu_slope: float = 0.1, **kwargs):
        # === Layers ===
        first = keras.layers.Dense(input_dim // 2, name="dense1")
        activation = keras.layers.LeakyReLU(negative_slope=leaky_relu_slope, name="dense1_act")
        drop = keras.layers.Dropout(dropout, name="dense1_dropout")
        second = keras.layers.Dense(input_dim // 4, name="dense2")

        # === Functional Model ===
        embedding = keras.Input(shape=(input_dim,), name="embedding")
        projection = second(drop(activation(first(embedding))))
        super().__init__(inputs=embedding, outputs=projection, **kwargs)

        # === Config ===
        self.input_dim = input_dim
        self.dropout = dropout
        self.leaky_relu_slope = leaky_relu_slope

    def get_config(self):
        return {
            "input_dim": self.input_dim,
            "dropout": self.dropout,
            "leaky_relu_slope": self.leaky_relu_slope,
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
