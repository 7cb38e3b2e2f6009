"""JSQA's second stage: the (pretrained) waveform encoder followed by the MOS head."""

from __future__ import annotations

import keras
from keras import ops

from jsqa_tf.models.distributed_step import DistributedStepMixin
from jsqa_tf.models.mos_head import MOSHead
from jsqa_tf.models.student_encoder import StudentEncoder
from jsqa_tf.models.waveform_encoder import WaveformEncoder

EMBEDDINGS = ("full", "contrastive")


@keras.saving.register_keras_serializable(package="jsqa_tf")
class MOSRegressor(DistributedStepMixin, keras.Model):
    """Raw 16 kHz waveform -> MOS in [1, 5].

    Input: a waveform batch float [batch, samples], or a dict {"waveform": [batch, samples],
    "num_valid_samples": int [batch]} for a zero-padded batch of files of different lengths;
    then each file is scored exactly as if it were alone (`WaveformEncoder.encode` or
    `StudentEncoder.encode`: masked convolutions and pooling). Output: MOS float32 [batch].

    Training (`compile(optimizer)`, then `fit` on (inputs, mos) batches): the loss is the
    mean squared error in float32 (the paper's), tracked with the RMSE of the epoch; the same
    step serves TensorFlow (any tf.distribute strategy) and JAX.

    Args:
        encoder: a `WaveformEncoder` (pretrained, or freshly initialised for "scratch"), or a
            `StudentEncoder` (the distilled on-device student).
        hidden_dims: widths of the head's hidden layers (default: the paper's 256, 128, 64
            after the 512-d embedding).
        embedding: which embedding feeds the head: "full" (every dimension; the default) or
            "contrastive" (the leading `encoder.contrastive_dim` dimensions NT-Xent saw).
        dropout: dropout in the head.
        leaky_relu_slope: negative slope of the head's LeakyReLU.
        mos_range: (low, high) of the scaled sigmoid.
    """

    def __init__(
        self,
        encoder: WaveformEncoder | StudentEncoder,
        hidden_dims: tuple[int, ...] = (256, 128, 64),
        embedding: str = "full",
        dropout: float = 0.0,
        leaky_relu_slope: float = 0.1,
        mos_range: tuple[float, float] = (1.0, 5.0),
        **kwargs,
    ):
        super().__init__(**kwargs)
        if embedding not in EMBEDDINGS:
            raise ValueError(f"embedding must be one of {EMBEDDINGS}, not {embedding!r}")
        # === Layers ===
        self.encoder = encoder
        self.embedding_width = encoder.embedding_dim if embedding == "full" else encoder.contrastive_dim
        self.head = MOSHead(
            self.embedding_width,
            hidden_dims=hidden_dims,
            dropout=dropout,
            leaky_relu_slope=leaky_relu_slope,
            mos_range=mos_range,
            name="head",
        )
        # Both parts are functional models, built at construction: so is this one (a saved
        # model's weights load without a first call).
        self.built = True
        self.rmse_tracker = keras.metrics.RootMeanSquaredError(name="rmse")

        # === Config ===
        self.hidden_dims = tuple(hidden_dims)
        self.embedding = embedding
        self.dropout = dropout
        self.leaky_relu_slope = leaky_relu_slope
        self.mos_range = tuple(mos_range)

    @staticmethod
    def _unpack(inputs):
        if isinstance(inputs, dict):
            return inputs["waveform"], inputs.get("num_valid_samples")
        return inputs, None

    def embed(self, inputs, training=False):
        """The embedding the head reads: float [batch, embedding_width]."""
        waveform, num_valid_samples = self._unpack(inputs)
        embedding = self.encoder.encode(waveform, num_valid_samples, training=training)
        if self.embedding == "contrastive":
            embedding = embedding[:, : self.encoder.contrastive_dim]
        return embedding

    def call(self, inputs, training=False):
        mos = self.head(self.embed(inputs, training=training), training=training)
        return ops.squeeze(mos, axis=-1)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        error = ops.cast(y_pred, "float32") - ops.cast(y, "float32")
        loss = ops.mean(ops.square(error))
        if self.losses:  # weight regularisers, if a user adds any
            loss = loss + ops.sum(ops.stack([ops.cast(extra, "float32") for extra in self.losses]))
        return self.scaled(loss)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        self.rmse_tracker.update_state(ops.cast(y, "float32"), ops.cast(y_pred, "float32"))
        return self.logs(self.get_metrics_result())

    @property
    def metrics(self):
        return [*super().metrics, self.rmse_tracker]

    def get_config(self):
        return {
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "hidden_dims": list(self.hidden_dims),
            "embedding": self.embedding,
            "dropout": self.dropout,
            "leaky_relu_slope": self.leaky_relu_slope,
            "mos_range": list(self.mos_range),
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)
