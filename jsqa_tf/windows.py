"""Scoring long files in windows (NumPy only: shared by evaluation, `predict` and `jsqa_tf.lite`).

A file no longer than the window is scored whole. A longer one is cut into windows of exactly
`window_samples`, starting every `hop_samples`, the last one ending at the file's end (so no
window is a short remainder, whose score would be unreliable); the file's score is the mean of
its windows' scores.
"""

from __future__ import annotations

import numpy as np


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


def pad_batch(pieces: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pads 1-D float waveforms to the longest: (float32 [n, longest], int32 lengths [n])."""
    lengths = np.array([len(piece) for piece in pieces], dtype=np.int32)
    batch = np.zeros((len(pieces), int(lengths.max())), dtype=np.float32)
    for row, piece in enumerate(pieces):
        batch[row, : len(piece)] = piece
    return batch, lengths
