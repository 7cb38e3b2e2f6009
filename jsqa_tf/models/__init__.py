"""Keras models of jsqa-tf (keras.layers / keras.ops only: TensorFlow and JAX backends)."""

from jsqa_tf.models.contrastive_pretrainer import ContrastivePretrainer
from jsqa_tf.models.projection_head import ProjectionHead
from jsqa_tf.models.waveform_encoder import PRESETS, WaveformEncoder

__all__ = ["PRESETS", "ContrastivePretrainer", "ProjectionHead", "WaveformEncoder"]
