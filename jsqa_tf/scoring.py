"""Scoring whole files with any backend: windows, padded batches, per-file means (NumPy only).

`score_files` cuts each file into windows (`jsqa_tf.windows`), packs windows of several files
into batches, calls `predict(waveform [batch, samples], num_valid_samples [batch]) -> mos
[batch]`, and yields each file's mean score as soon as all its windows are scored, in input
order. Batches always have `batch_size` rows and a length rounded up to `bucket_samples`, so a
compiled (XLA, TFLite) model sees a handful of shapes; unused rows are zeros of length 1. The
`predict` function must mask padding (`MOSRegressor` with its dict input does) when files
of different lengths share a batch.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from jsqa_tf.windows import window_starts


@dataclasses.dataclass
class FileScore:
    """A file's score: the mean of its windows' scores."""

    key: Any
    mos: float
    window_scores: list[float]
    window_starts: list[int]


def score_files(
    files: Iterable[tuple[Any, np.ndarray]],
    predict: Callable[[np.ndarray, np.ndarray], np.ndarray],
    *,
    window_samples: int,
    hop_samples: int | None = None,
    batch_size: int = 8,
    bucket_samples: int = 16_000,
) -> Iterator[FileScore]:
    """Scores (key, 1-D float32 waveform) pairs; yields a `FileScore` per file, in order."""
    pending: collections.deque[FileScore] = collections.deque()  # files not yet yielded
    remaining: dict[int, int] = {}  # id(FileScore) -> windows still unscored
    queue: list[tuple[FileScore, np.ndarray]] = []

    def run_batch(items):
        lengths = np.array([len(piece) for _, piece in items], dtype=np.int32)
        longest = int(-(-lengths.max() // bucket_samples) * bucket_samples)
        batch = np.zeros((batch_size, longest), dtype=np.float32)
        valid = np.ones(batch_size, dtype=np.int32)
        for row, (_, piece) in enumerate(items):
            batch[row, : len(piece)] = piece
        valid[: len(items)] = lengths
        scores = np.asarray(predict(batch, valid), dtype=np.float64).reshape(-1)
        for (score, _), value in zip(items, scores[: len(items)], strict=True):
            score.window_scores.append(float(value))
            remaining[id(score)] -= 1

    def finished():
        while pending and remaining[id(pending[0])] == 0:
            score = pending.popleft()
            del remaining[id(score)]
            score.mos = float(np.mean(score.window_scores))
            yield score

    for key, audio in files:
        starts = window_starts(len(audio), window_samples, hop_samples)
        score = FileScore(key=key, mos=float("nan"), window_scores=[], window_starts=starts)
        pending.append(score)
        remaining[id(score)] = len(starts)
        for start in starts:
            queue.append((score, audio[start : start + window_samples]))
            if len(queue) == batch_size:
                run_batch(queue)
                queue = []
        yield from finished()
    if queue:
        run_batch(queue)
    yield from finished()


def keras_predictor(model) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """`predict` for a `MOSRegressor`: its masked dict input, Keras's compiled predict step."""

    def predict(waveform, num_valid_samples):
        return model.predict_on_batch({"waveform": waveform, "num_valid_samples": num_valid_samples})

    return predict
