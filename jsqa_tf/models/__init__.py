"""Keras models of jsqa-tf (keras.layers / keras.ops only: TensorFlow and JAX backends)."""

from jsqa_tf.models.contrastive_pretrainer import ContrastivePretrainer
from jsqa_tf.models.distiller import Distiller
from jsqa_tf.models.mos_head import MOSHead, ScaledSigmoid
from jsqa_tf.models.mos_regressor import MOSRegressor
from jsqa_tf.models.projection_head import ProjectionHead
from jsqa_tf.models.saving import find_model_file, load_mos_regressor
from jsqa_tf.models.waveform_encoder import PRESETS, WaveformEncoder

__all__ = [
    "PRESETS",
    "ContrastivePretrainer",
    "Distiller",
    "MOSHead",
    "MOSRegressor",
    "ProjectionHead",
    "ScaledSigmoid",
    "WaveformEncoder",
    "encoder_from_preset",
    "find_model_file",
    "load_mos_regressor",
]


def encoder_from_preset(preset: str, **overrides):
    """An encoder by preset name: a `WaveformEncoder` (jsqa, cdpam, small, tiny)."""
    return WaveformEncoder.from_preset(preset, **overrides)
