"""Contrastive pretraining on JND pairs: mix on the device, encode, NT-Xent."""

from __future__ import annotations

import keras
from keras import ops

from jsqa_tf.losses import nt_xent_loss, pair_retrieval_accuracy
from jsqa_tf.mixing import mix_views
from jsqa_tf.models.distributed_step import DistributedStepMixin
from jsqa_tf.models.projection_head import ProjectionHead
from jsqa_tf.models.waveform_encoder import WaveformEncoder


@keras.saving.register_keras_serializable(package="jsqa_tf")
class ContrastivePretrainer(DistributedStepMixin, keras.Model):
    """(clean, noise, snr_db) -> both views mixed with `mix_views` -> encoder -> the first
    `encoder.contrastive_dim` embedding dimensions -> optional projection -> NT-Xent.

    Input: a dict {"clean": [N, T], "noise": [N, T], "snr_db": [N, 2]} and optionally
    "num_valid_samples": [N] (the speech's length in each zero-padded clean crop, over which
    the SNRs hold; without it, over the whole crop), and "clean_b": [N, T] for pairs whose two
    views' speech differs (pair families: "clean" is view a's speech, mixed by `mix_views`;
    an SNR of +inf adds no noise). Both views go through
    the encoder as one batch of 2N (BatchNorm sees both). `call` returns the 2N projected
    embeddings [view a; view b]; the loss and the pair-retrieval accuracy are computed from
    them in `compute_loss` / `compute_metrics`, which Keras's own train and test steps call
    under every backend: that is how one custom step serves TensorFlow and JAX.

    Args:
        encoder: a `WaveformEncoder`.
        projection_head: a `ProjectionHead` or None.
        temperature: τ of NT-Xent.
        prevent_clipping: peak-limit the mixtures (one factor per pair).
    """

    def __init__(
        self,
        encoder: WaveformEncoder,
        projection_head: ProjectionHead | None = None,
        temperature: float = 1.0,
        prevent_clipping: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.projection_head = projection_head
        self.temperature = temperature
        self.prevent_clipping = prevent_clipping
        self.accuracy_tracker = keras.metrics.Mean(name="pair_accuracy")

    def call(self, inputs, training=False):
        view_a, view_b = mix_views(
            inputs["clean"],
            inputs.get("clean_b", inputs["clean"]),
            inputs["noise"],
            inputs["snr_db"],
            num_valid_samples=inputs.get("num_valid_samples"),
            prevent_clipping=self.prevent_clipping,
        )
        embedding = self.encoder(ops.concatenate([view_a, view_b], axis=0), training=training)
        z = embedding[:, : self.encoder.contrastive_dim]
        if self.projection_head is not None:
            z = self.projection_head(z, training=training)
        return ops.cast(z, "float32")

    @staticmethod
    def _views(z):
        num_pairs = ops.shape(z)[0] // 2
        return z[:num_pairs], z[num_pairs:]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        z_a, z_b = self._views(y_pred)
        loss = nt_xent_loss(z_a, z_b, self.temperature)
        if self.losses:  # weight regularisers, if a user adds any
            loss = loss + ops.sum(ops.stack([ops.cast(extra, "float32") for extra in self.losses]))
        return self.scaled(loss)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        self.accuracy_tracker.update_state(pair_retrieval_accuracy(*self._views(y_pred)))
        return self.logs(self.get_metrics_result())

    @property
    def metrics(self):
        return [*super().metrics, self.accuracy_tracker]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "projection_head": keras.saving.serialize_keras_object(self.projection_head)
                if self.projection_head is not None
                else None,
                "temperature": self.temperature,
                "prevent_clipping": self.prevent_clipping,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        if config.get("projection_head") is not None:
            config["projection_head"] = keras.saving.deserialize_keras_object(config["projection_head"])
        return cls(**config)
