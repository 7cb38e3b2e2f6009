"""Keras models of jsqa-tf (keras.layers / keras.ops only: TensorFlow and JAX backends)."""

from jsqa_tf.models.contrastive_pretrainer import ContrastivePretrainer
from jsqa_tf.models.distiller import Distiller
from jsqa_tf.models.mos_head import MOSHead, ScaledSigmoid
from jsqa_tf.models.mos_regressor import MOSRegressor
from jsqa_tf.models.projection_head import ProjectionHead
from jsqa_tf.models.saving import find_model_file, load_mos_regressor
from jsqa_tf.models.student_encoder import STUDENT_PRESETS, LogMelSpectrogram, StudentEncoder
from jsqa_tf.models.waveform_encoder import PRESETS, WaveformEncoder


def encoder_from_preset(preset: str, /, **overrides):
    """A `WaveformEncoder` for its presets (`PRESETS`: jsqa, cdpam, small, tiny), a
    `StudentEncoder` for the student's (`STUDENT_PRESETS`), any argument (`name=` too)
    overridden."""
    if preset in PRESETS:
        return WaveformEncoder.from_preset(preset, **overrides)
    if preset in STUDENT_PRESETS:
        return StudentEncoder.from_preset(preset, **overrides)
    names = sorted(PRESETS) + sorted(STUDENT_PRESETS)
    raise ValueError(f"unknown encoder preset {preset!r}; one of {names}")


__all__ = [
    "PRESETS",
    "STUDENT_PRESETS",
    "ContrastivePretrainer",
    "Distiller",
    "LogMelSpectrogram",
    "MOSHead",
    "MOSRegressor",
    "ProjectionHead",
    "ScaledSigmoid",
    "StudentEncoder",
    "WaveformEncoder",
    "encoder_from_preset",
    "find_model_file",
    "load_mos_regressor",
]
