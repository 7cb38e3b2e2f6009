"""The input contract of every exported form of a jsqa-tf model (pure Python).

Export writes it, and `LiteModel`, `predict`, scoring and evaluation read it, from here:

    waveform: float32 [batch, samples], `SAMPLE_RATE` (16 kHz) mono, in [-1, 1], any number of
        samples from `MIN_SAMPLES` (0.25 s) on; all rows of a batch hold real audio of the
        same length (an exported model does not mask zero padding, which would change the
        scores: batch equal lengths only).
    mos: float32 [batch], in the model's MOS range ([1, 5]).
    embedding: float32 [batch, d], the embedding the MOS head reads.

A multi-target model (trained on NISQA's quality dimensions) has one float32 [batch] output per
target instead of `mos` alone, each named after its target (mos, noi, col, dis, loud), in the
range its contract gives; the contract's "targets" lists them in order (`output_targets`).

The SavedModel's `serving_default` signature and the TFLite models' signature take the input
named `waveform` and return `mos` and `embedding`. A SavedModel also has `serving_masked`,
which takes `waveform` and `num_valid_samples` (int32 [batch]): rows of one batch may then be
zero-padded files of different lengths, each scored as if it were alone. A JSON file describing the model
(`input_spec()` among the rest) lies beside each `.tflite` file and in a SavedModel's
`assets.extra/`.

The window rule: a file no longer than the window is scored whole. A longer one is cut into
windows of exactly `window_samples`, starting every `hop_samples`, the last one ending at the
file's end (so no window is a short remainder, whose score would be unreliable); the file's
score is the mean of its windows' scores.
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING

from jsqa_lite.errors import ModelError

if TYPE_CHECKING:
    import numpy as np

SAMPLE_RATE = 16_000
"""The rate every jsqa-tf model works at, in Hz."""

MIN_SECONDS = 0.25
"""Shortest audio accepted, in seconds: about one syllable. Shorter input is rejected (the model
computes a number for any length, but below this it is not a quality judgement)."""
MIN_SAMPLES = int(MIN_SECONDS * SAMPLE_RATE)

SIGNATURE_KEY = "serving_default"
MASKED_SIGNATURE_KEY = "serving_masked"
"""The SavedModel's second signature: `waveform` plus `NUM_VALID_NAME`, zero padding masked."""
INPUT_NAME = "waveform"
NUM_VALID_NAME = "num_valid_samples"
MOS_OUTPUT = "mos"
EMBEDDING_OUTPUT = "embedding"
CONTRACT_FILE = "jsqa_tf_contract.json"
"""The contract's name in a SavedModel's `assets.extra/` (beside a `.tflite`: `NAME.json`)."""

DEFAULT_WINDOW_SECONDS = 10.0
"""Window length of `predict`, `evaluate` and `LiteModel` unless told otherwise."""


INT8_CHUNKS_KEY = "int8_chunks"
"""An int8 TFLite contract's record of its chunked convolutions: {"chunk_frames", "rule",
"layers": {conv name: {"chunked", "input_rate_hz", "quantized"}}}. A chunked convolution's
input is quantized with one int8 scale per `chunk_frames` output frames (a run of chunked
convolutions keeps the first one's chunks, halved at each decimation), the others' with one
scale per clip. Informational: nothing reads it to run the model."""

PROVENANCE_KEY = "provenance"
"""The contract's entry saying what the model learned from (`jsqa_tf.provenance`)."""


def demo_warning(provenance: dict | None, model: str) -> str | None:
    """The one warning line for a model that learned from the synthetic demo corpus (None for
    any other, or when its provenance is unknown)."""
    if not (isinstance(provenance, dict) and provenance.get("synthetic_demo")):
        return None
    return (
        f"{model}: this model learned from the synthetic demo corpus, whose MOS labels are a formula: "
        "its scores are not quality judgements of real speech"
    )


def warn_if_demo(provenance: dict | None, model: str) -> bool:
    """Logs `demo_warning`'s line (logger "jsqa_lite") when there is one; True if it did."""
    line = demo_warning(provenance, model)
    if line:
        logging.getLogger("jsqa_lite").warning(line)
    return line is not None


def input_spec() -> dict:
    """The "input" entry of a contract JSON."""
    return {
        "name": INPUT_NAME,
        "dtype": "float32",
        "shape": ["batch", "samples"],
        "range": [-1.0, 1.0],
        "sample_rate": SAMPLE_RATE,
        "channels": 1,
        "min_samples": MIN_SAMPLES,
        "min_seconds": MIN_SECONDS,
        "batch_rule": "rows of one batch have the same length (zero padding is not masked)",
    }


def tflite_contract_path(tflite_path: str | os.PathLike) -> str:
    """Where a `.tflite` file's contract lies: beside it, `NAME.json`."""
    return os.path.splitext(os.fspath(tflite_path))[0] + ".json"


def saved_model_contract_path(saved_model_dir: str | os.PathLike) -> str:
    """Where a SavedModel version's contract lies: `assets.extra/jsqa_tf_contract.json`."""
    return os.path.join(os.fspath(saved_model_dir), "assets.extra", CONTRACT_FILE)


def read_contract(path: str | os.PathLike) -> dict:
    """A contract JSON ({} when there is none: models exported without one use the defaults).

    Raises:
        ModelError: the file is unreadable, or not a JSON object with a valid "input" entry.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as stream:
            contract = json.load(stream)
    except (OSError, ValueError) as error:
        raise ModelError(path, f"unreadable contract JSON ({error})")
    spec = contract.get("input", {}) if isinstance(contract, dict) else None
    min_samples = spec.get("min_samples", MIN_SAMPLES) if isinstance(spec, dict) else None
    if not isinstance(min_samples, int) or isinstance(min_samples, bool) or min_samples < 1:
        raise ModelError(path, "not a jsqa-tf contract (no valid input.min_samples)")
    return contract


def min_samples(contract: dict) -> int:
    """The shortest input a model takes, by its contract (read by `read_contract`)."""
    return int(contract.get("input", {}).get("min_samples", MIN_SAMPLES))


def output_targets(contract: dict) -> tuple[str, ...]:
    """The score outputs of a model, in order, by its contract: ("mos",) for a MOS model (and
    a model exported without a contract); its "targets" for a multi-target one."""
    targets = contract.get("targets") if isinstance(contract, dict) else None
    return tuple(targets) if targets else (MOS_OUTPUT,)


def too_short_reason(num_samples: int, min_samples: int) -> str:
    """Why audio of `num_samples` is refused by a model that needs `min_samples`."""
    return (
        f"too short: {num_samples / SAMPLE_RATE:.3f} s, "
        f"the model needs at least {min_samples / SAMPLE_RATE:g} s"
    )


def to_samples(seconds: float) -> int:
    """A duration in samples at `SAMPLE_RATE` (rounded to the nearest)."""
    return int(round(seconds * SAMPLE_RATE))


def window_starts(num_samples: int, window_samples: int, hop_samples: int | None = None) -> list[int]:
    """Start offsets of the windows of a file of `num_samples` (one window, 0, when it fits).

    Args:
        num_samples: the file's length.
        window_samples: the window's length.
        hop_samples: the step between starts (default: the window length, no overlap but for
            the last window).
    """
    if window_samples <= 0:
        raise ValueError(f"window_samples must be > 0, got {window_samples}")
    hop_samples = hop_samples or window_samples
    if hop_samples <= 0:
        raise ValueError(f"hop_samples must be > 0, got {hop_samples}")
    if num_samples <= window_samples:
        return [0]
    last = num_samples - window_samples
    starts = list(range(0, last, hop_samples))
    starts.append(last)
    return starts


def split_windows(audio: np.ndarray, window_samples: int, hop_samples: int | None = None) -> list[np.ndarray]:
    """The windows of a 1-D waveform (views, no copies); the whole file when it fits."""
    return [
        audio[start : start + window_samples]
        for start in window_starts(len(audio), window_samples, hop_samples)
    ]
