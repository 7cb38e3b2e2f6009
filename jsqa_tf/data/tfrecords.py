"""The shard format: one `tf.train.Example` per audio file, written by `prepare`.

Features of each example:
    audio          bytes   the waveform as little-endian int16 PCM at the manifest's rate
    num_samples    int64   samples in `audio`
    sample_rate    int64   Hz (16000 unless configured otherwise)
    source_path    bytes   the file's path relative to the corpus root in the manifest
    speaker        bytes   LibriSpeech speaker ("" when none)
    chapter        bytes   LibriSpeech chapter
    environment    bytes   CHiME-3 environment (BUS, CAF, PED, STR)
    condition      bytes   NISQA condition / CSV condition / CHiME-3 channel (CH1...)
    database       bytes   NISQA db or LibriSpeech subset
    mos            float   mean opinion score, NaN when the corpus has none
    noi, col, dis, loud
                   float   NISQA's dimension scores, NaN where the corpus has none (format 2;
                           a format-1 shard, which lacks them, reads as NaN)
    is_silent      int64   1 when the file's RMS level is below -60 dBFS

Bump `jsqa_tf.data.manifest.FORMAT_VERSION` whenever this list changes.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from jsqa_tf.data.corpora import AudioRecord
from jsqa_tf.ranges import DIMENSIONS

STRING_FEATURES = ("source_path", "speaker", "chapter", "environment", "condition", "database")

FEATURE_SPEC = {
    "audio": tf.io.FixedLenFeature([], tf.string),
    "num_samples": tf.io.FixedLenFeature([], tf.int64),
    "sample_rate": tf.io.FixedLenFeature([], tf.int64),
    "mos": tf.io.FixedLenFeature([], tf.float32),
    **{name: tf.io.FixedLenFeature([], tf.float32, default_value=math.nan) for name in DIMENSIONS},
    "is_silent": tf.io.FixedLenFeature([], tf.int64),
    **{name: tf.io.FixedLenFeature([], tf.string) for name in STRING_FEATURES},
}


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def _float(value: float) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[value]))


def encode_example(pcm: np.ndarray, sample_rate: int, record: AudioRecord, *, is_silent: bool) -> bytes:
    """Serialises one file's int16 samples and metadata as a `tf.train.Example`."""
    if pcm.dtype != np.int16 or pcm.ndim != 1:
        raise ValueError(f"pcm must be a 1-D int16 array, got {pcm.dtype} {pcm.shape}")
    strings = {
        "source_path": record.relative_path,
        "speaker": record.speaker,
        "chapter": record.chapter,
        "environment": record.environment,
        "condition": record.condition,
        "database": record.database,
    }
    features = {
        "audio": _bytes(pcm.astype("<i2", copy=False).tobytes()),
        "num_samples": _int(int(pcm.shape[0])),
        "sample_rate": _int(int(sample_rate)),
        **{
            name: _float(math.nan if record.score(name) is None else float(record.score(name)))
            for name in ("mos", *DIMENSIONS)
        },
        "is_silent": _int(int(is_silent)),
        **{name: _bytes(value.encode("utf-8")) for name, value in strings.items()},
    }
    example = tf.train.Example(features=tf.train.Features(feature=features))
    # deterministic=True sorts the feature map: same bytes in every process (PYTHONHASHSEED)
    return example.SerializeToString(deterministic=True)


def parse_example(serialized: tf.Tensor, keys: tuple[str, ...] | None = None) -> dict:
    """Parses one serialised example (graph ops only); `audio` stays int16 PCM bytes.

    Args:
        serialized: scalar string tensor.
        keys: features to parse (all when None); parsing fewer is faster.
    """
    spec = FEATURE_SPEC if keys is None else {key: FEATURE_SPEC[key] for key in keys}
    return tf.io.parse_single_example(serialized, spec)


def decode_pcm(audio_bytes: tf.Tensor) -> tf.Tensor:
    """int16 PCM bytes -> float32 waveform in [-1, 1) (graph ops only)."""
    return pcm_to_float(tf.io.decode_raw(audio_bytes, tf.int16, little_endian=True))


def pcm_to_float(pcm: tf.Tensor) -> tf.Tensor:
    """int16 samples -> float32 x / 32768 in [-1, 1), bit for bit, in one pass: TensorFlow's
    `Dequantize` of the samples as qint16 over [-1, 32767 / 32768] ("MIN_COMBINED": -1 +
    (x + 32768) / 32768, exact in float32). `tf.cast` then a division makes two passes over a
    fresh float buffer: 0.62 against 0.42 CPU-ms for 8 x 4 s crops (2 cores), a tenth of a
    JND pair's CPU."""
    return tf.raw_ops.Dequantize(
        input=tf.bitcast(pcm, tf.qint16), min_range=-1.0, max_range=32767 / 32768, mode="MIN_COMBINED"
    )
