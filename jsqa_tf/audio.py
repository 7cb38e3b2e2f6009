"""Audio I/O of the full package: reading (from `jsqa_lite.audio`, the runtime's: decode,
mono, resample, scale to [-1, 1]) and what training adds: writing, silence, int16 PCM.

`read_audio` turns any WAV, FLAC or OGG/Vorbis file into a float32 vector in [-1, 1] at 16 kHz
(or the rate asked for); every way a file can be unusable raises `AudioError` carrying the path
and the reason. Silence is not an error, `is_silent` reports it.
"""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf

from jsqa_lite.audio import AUDIO_SUFFIXES, AudioInfo, audio_info, read_audio, resample
from jsqa_lite.contract import SAMPLE_RATE
from jsqa_tf.atomic import atomic_path

__all__ = [
    "AUDIO_SUFFIXES",
    "SAMPLE_RATE",
    "SILENCE_DBFS",
    "AudioInfo",
    "audio_info",
    "is_silent",
    "read_audio",
    "resample",
    "rms_dbfs",
    "to_int16",
    "write_audio",
    "write_wav",
]

SILENCE_DBFS = -60.0
"""RMS level (dB re full scale) below which `is_silent` calls a signal silent."""


def rms_dbfs(samples: np.ndarray) -> float:
    """RMS level in dB relative to full scale (-inf for digital silence)."""
    power = float(np.mean(np.square(samples, dtype=np.float64))) if samples.size else 0.0
    return 10.0 * np.log10(power) if power > 0 else float("-inf")


def is_silent(samples: np.ndarray, threshold_dbfs: float = SILENCE_DBFS) -> bool:
    """Whether a signal's RMS level is below `threshold_dbfs` (digital silence included)."""
    return rms_dbfs(samples) < threshold_dbfs


def to_int16(samples: np.ndarray) -> np.ndarray:
    """float in [-1, 1] -> int16 PCM, rounding to nearest and clipping at full scale."""
    scaled = np.round(np.asarray(samples, dtype=np.float64) * 32768.0)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def write_audio(
    path: str | os.PathLike,
    samples: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    *,
    subtype: str = "PCM_16",
) -> str:
    """Writes audio atomically (temporary file, then rename); the format follows the suffix.

    Args:
        path: destination, `.wav` (16-bit PCM by default) or `.flac`, `.ogg`.
        samples: float in [-1, 1], shape (num_samples,) or (num_samples, num_channels).
        sample_rate: in Hz.
        subtype: libsndfile subtype, e.g. "PCM_16", "PCM_24", "FLOAT", "VORBIS".

    Returns:
        the path written.
    """
    path = os.fspath(path)
    with atomic_path(path) as temp_path:
        sf.write(temp_path, samples, sample_rate, subtype=subtype)
    return path


def write_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str:
    """Writes a 16-bit PCM WAV file atomically."""
    return write_audio(path, samples, sample_rate, subtype="PCM_16")
