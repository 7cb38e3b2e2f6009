"""JSQA's second stage: the (pretrained) waveform encoder followed by the MOS head."""

from __future__ import annotations

import keras
from keras import ops

from jsqa_tf.models.distributed_step import DistributedStepMixin
from jsqa_tf.models.mos_head import MOSHead
from jsqa_tf.models.student_encoder import StudentEncoder
from jsqa_tf.models.waveform_encoder import WaveformEncoder
from jsqa_tf.ranges import mos_column

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
        targets: what the head predicts (default: the MOS alone). With several (the NISQA
            set: mos, noi, col, dis, loud), the output is float32 [batch, len(targets)] in
            this order, each column in its own range, and the labels are [batch, targets]
            with NaN where a file has no rating on a target: the loss masks those (a file
            rated on the MOS alone still trains the MOS output).
        target_ranges: (low, high) per target; None: `mos_range` for "mos", (1, 5) else.
        target_weights: the loss's weight per target; None: 1 each. The loss is the weighted
            mean over targets of each target's MSE over its rated files.
        heads: "separate" (a hidden stack per target) or "shared" (one stack, an output per
            target).
    """

    def __init__(
        self,
        encoder: WaveformEncoder | StudentEncoder,
        hidden_dims: tuple[int, ...] = (256, 128, 64),
        embedding: str = "full",
        dropout: float = 0.0,
        leaky_relu_slope: float = 0.1,
        mos_range: tuple[float, float] = (1.0, 5.0),
        targets: tuple[str, ...] = ("mos",),
        target_ranges: tuple[tuple[float, float], ...] | None = None,
        target_weights: tuple[float, ...] | None = None,
        heads: str = "separate",
        **kwargs,
    ):
        super().__init__(**kwargs)
        targets = tuple(targets)
        if target_weights is None or len(target_weights) == 0:
            target_weights = (1.0,) * len(targets)
        target_weights = tuple(float(weight) for weight in target_weights)
        if len(target_weights) != len(targets) or min(target_weights) < 0 or sum(target_weights) <= 0:
            raise ValueError(
                f"target_weights must be one weight >= 0 per target (not all 0), got {list(target_weights)}"
            )
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
            targets=targets,
            target_ranges=target_ranges,
            kind=heads,
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
        self.targets = targets
        self.target_ranges = self.head.target_ranges
        self.target_weights = target_weights
        self.heads = heads

    @property
    def is_multi_target(self) -> bool:
        """Whether the output is [batch, targets] (else the MOS, [batch])."""
        return self.targets != ("mos",)

    @property
    def tracked_target(self) -> int:
        """The column the train RMSE follows: the MOS's, else the first target's."""
        return mos_column(self.targets)

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
        scores = self.head(self.embed(inputs, training=training), training=training)
        return scores if self.is_multi_target else ops.squeeze(scores, axis=-1)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if self.is_multi_target:
            loss = masked_weighted_mse(y, y_pred, self.target_weights)
        else:
            error = ops.cast(y_pred, "float32") - ops.cast(y, "float32")
            loss = ops.mean(ops.square(error))
        if self.losses:  # weight regularisers, if a user adds any
            loss = loss + ops.sum(ops.stack([ops.cast(extra, "float32") for extra in self.losses]))
        return self.scaled(loss)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        y, y_pred = ops.cast(y, "float32"), ops.cast(y_pred, "float32")
        if self.is_multi_target:  # the tracked target's RMSE over the files rated on it
            y, y_pred = y[:, self.tracked_target], y_pred[:, self.tracked_target]
            rated = ops.isfinite(y)
            self.rmse_tracker.update_state(
                ops.where(rated, y, y_pred), y_pred, sample_weight=ops.cast(rated, "float32")
            )
        else:
            self.rmse_tracker.update_state(y, y_pred)
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
        } | (
            {}  # a MOS-only model saves as it always did
            if not self.is_multi_target
            else {
                "targets": list(self.targets),
                "target_ranges": [list(pair) for pair in self.target_ranges],
                "target_weights": list(self.target_weights),
                "heads": self.heads,
            }
        )

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)


def masked_weighted_mse(y, y_pred, weights):
    """The weighted mean over targets of each target's MSE over the rows rated on it (float32;
    keras.ops only): labels [batch, targets] with NaN where a row has no rating; a target no
    row of the batch rates adds nothing, and its weight leaves the mean."""
    y, y_pred = ops.cast(y, "float32"), ops.cast(y_pred, "float32")
    rated = ops.isfinite(y)
    squared = ops.where(rated, ops.square(y_pred - ops.where(rated, y, 0.0)), 0.0)
    counts = ops.sum(ops.cast(rated, "float32"), axis=0)
    per_target = ops.sum(squared, axis=0) / ops.maximum(counts, 1.0)
    weights = ops.convert_to_tensor(list(weights), dtype="float32") * ops.cast(counts > 0, "float32")
    return ops.sum(weights * per_target) / ops.maximum(ops.sum(weights), 1e-12)
