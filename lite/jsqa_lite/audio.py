"""Reading audio for inference: the only place in jsqa-tf and jsqa-lite that decodes audio files.

Contract of `read_audio`: any WAV (8/16/24/32-bit integer or float), FLAC or OGG/Vorbis file
(anything libsndfile reads) comes back as a float32 NumPy vector in [-1, 1] at the requested
sample rate (16 kHz by default): channels are averaged, or one chosen channel is kept, and the
rate is converted with soxr (high quality). Every way a file can be unusable raises `AudioError`
carrying the path and the reason. (`jsqa_tf.audio` adds what training needs: writing,
silence, int16.)
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re

import numpy as np
import soundfile as sf
import soxr

from jsqa_lite.contract import SAMPLE_RATE, too_short_reason
from jsqa_lite.errors import AudioError

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".mp3")
"""File name endings (lower case) taken as audio when a folder is listed."""

_TRUNCATED = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """What a file's header says, read without decoding the samples."""

    path: str
    sample_rate: int
    num_frames: int
    num_channels: int
    format: str
    subtype: str

    @property
    def duration_seconds(self) -> float:
        return self.num_frames / self.sample_rate


def _check_path(path: str) -> None:
    if not os.path.exists(path):
        raise AudioError(path, "file not found")
    if os.path.isdir(path):
        raise AudioError(path, "is a folder, not an audio file")
    if not os.access(path, os.R_OK):
        raise AudioError(path, "permission denied")
    if os.path.getsize(path) == 0:
        raise AudioError(path, "empty file (0 bytes)")


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Reads a file's header: rate, length, channels. Raises `AudioError` if unusable."""
    path = os.fspath(path)
    _check_path(path)
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise AudioError(path, f"not an audio file or corrupt ({_libsndfile_reason(error)})")
    if info.frames <= 0:
        raise AudioError(path, "zero length: the file holds no samples")
    if info.samplerate <= 0:
        raise AudioError(path, f"invalid sample rate {info.samplerate} in header")
    truncated = _TRUNCATED.search(info.extra_info or "")
    if truncated:
        promised, held = truncated.groups()
        raise AudioError(path, f"truncated: header promises {promised} bytes of audio, file holds {held}")
    return AudioInfo(
        path=path,
        sample_rate=int(info.samplerate),
        num_frames=int(info.frames),
        num_channels=int(info.channels),
        format=info.format,
        subtype=info.subtype,
    )


def _libsndfile_reason(error: Exception) -> str:
    # "Error opening 'x.wav': Format not recognised." -> "Format not recognised"
    text = str(error)
    if "': " in text:
        text = text.split("': ", 1)[1]
    return text.strip().rstrip(".") or type(error).__name__


def read_audio(
    path: str | os.PathLike,
    sample_rate: int | None = SAMPLE_RATE,
    *,
    channel: int | None = None,
    min_seconds: float = 0.0,
) -> np.ndarray:
    """Decodes a file to a mono float32 vector in [-1, 1].

    Args:
        path: WAV, FLAC, OGG/Vorbis or any other format libsndfile reads.
        sample_rate: rate of the result in Hz; `None` keeps the file's own rate.
        channel: keep this channel (0-based); `None` averages all channels.
        min_seconds: raise `AudioError` when the decoded file is shorter than this.

    Returns:
        float32 array of shape (num_samples,).

    Raises:
        AudioError: missing, not audio or corrupt, zero length, NaN/Inf samples, too short,
            or a channel the file does not have.
    """
    path = os.fspath(path)
    info = audio_info(path)
    if channel is not None and not 0 <= channel < info.num_channels:
        raise AudioError(path, f"has {info.num_channels} channel(s); channel {channel} was asked for")
    try:
        data, file_rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise AudioError(path, f"corrupt audio data ({_libsndfile_reason(error)})")
    if data.shape[0] == 0:
        raise AudioError(path, "zero length: the file holds no samples")
    if data.shape[0] < info.num_frames:
        raise AudioError(
            path, f"truncated: header promises {info.num_frames} frames, decoded {data.shape[0]}"
        )
    if not np.all(np.isfinite(data)):
        raise AudioError(path, "contains NaN or Inf samples")

    mono = data[:, channel] if channel is not None else data.mean(axis=1)
    if sample_rate is not None and file_rate != sample_rate:
        mono = resample(mono, file_rate, sample_rate)
    mono = np.ascontiguousarray(mono, dtype=np.float32)

    peak = float(np.max(np.abs(mono)))
    if peak > 1.0:
        # Integer formats decode to [-1, 1); a float file (or resampler overshoot) may not.
        if peak > 1.01:
            logger.warning("%s: peak %.2f exceeds full scale; clipped to [-1, 1]", path, peak)
        np.clip(mono, -1.0, 1.0, out=mono)

    rate = sample_rate or file_rate
    if mono.shape[0] < min_seconds * rate:
        raise AudioError(path, f"too short: {mono.shape[0] / rate:.3f} s, at least {min_seconds:g} s needed")
    return mono


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Converts the sample rate with soxr (high quality); a no-op at the same rate."""
    if from_rate == to_rate:
        return samples
    return soxr.resample(samples, from_rate, to_rate, quality="HQ")


def read_model_input(path: str | os.PathLike, min_samples: int) -> np.ndarray:
    """`read_audio` at 16 kHz, refusing audio shorter than a model's `min_samples`.

    Raises:
        AudioError: what `read_audio` raises, or "too short".
    """
    audio = read_audio(path)
    if len(audio) < min_samples:
        raise AudioError(path, too_short_reason(len(audio), min_samples))
    return audio
