"""Scoring whole files in windows with any model: the one loop behind `predict`, `LiteModel`
and evaluation (NumPy only).

`score_files` cuts each file into windows (`jsqa_lite.contract.window_starts`), packs windows
into batches, calls `predict(waveform [batch, samples], num_valid_samples [batch]) -> mos
[batch]`, and yields each file's score (the mean of its windows') as soon as the file and all
before it are scored, in input order. How windows share a batch depends on the model:

- `masks_padding=True` (a Keras `MOSRegressor` with its dict input): windows of any length,
  of several files, share a batch of exactly `batch_size` rows, zero-padded to a length
  rounded up to `bucket_samples` (so a compiled model sees a handful of shapes); unused rows
  are zeros of length 1.
- `masks_padding=False` (exported models: SavedModel, TFLite): the rows of a batch hold real
  audio of one length. Full windows of several files are batched together, the last batch
  with fewer rows; a file shorter than the window is scored alone, at once.

A multi-target model's `predict` returns [batch, targets] (mos, noi, col, dis, loud, in the
model's order): each window's score is then a tuple, and a file's `mos` the tuple of the
windows' means, target by target.

A batch whose call raises, or gives a non-finite MOS, fails its files (they carry the
error), not the run.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from jsqa_lite.contract import SAMPLE_RATE, window_starts
from jsqa_lite.errors import PathError


@dataclasses.dataclass
class FileScore:
    """A file's windows and their scores, or why it could not be scored.

    Attributes:
        key: what the caller gave with the audio (a path, an id).
        num_samples: the audio's length (None when it could not be read).
        window_starts: each window's first sample.
        window_mos: each window's MOS, in window order (None while not scored); of a
            multi-target model, a tuple per window (one score per target).
        error: why the file has no score, or None.
    """

    key: Any
    num_samples: int | None = None
    window_starts: list[int] = dataclasses.field(default_factory=list)
    window_mos: list[float | tuple | None] = dataclasses.field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def done(self) -> bool:
        return self.error is not None or all(mos is not None for mos in self.window_mos)

    @property
    def mos(self) -> float | tuple | None:
        """The mean of the windows' MOS (None for a file with an error); of a multi-target
        model, the tuple of the windows' means per target."""
        if not (self.ok and self.window_mos):
            return None
        means = np.mean(np.asarray(self.window_mos, dtype=np.float64), axis=0)
        return float(means) if means.ndim == 0 else tuple(float(value) for value in means)

    def summary(self) -> dict:
        """{"mos", "seconds", "num_windows", "window_mos", "window_start_seconds"}."""
        read = self.num_samples is not None
        return {
            "mos": self.mos,
            "seconds": self.num_samples / SAMPLE_RATE if read else None,
            "num_windows": len(self.window_starts),
            "window_mos": [_plain(mos) for mos in self.window_mos] if self.ok else None,
            "window_start_seconds": [start / SAMPLE_RATE for start in self.window_starts] if read else None,
        }


def target_summary(score: FileScore, targets, *, spread: bool = True) -> dict:
    """`FileScore.summary()` with a multi-target model's scores named: {"mos", "noi", ...
    (each the mean of its windows'; with `spread` False, "mos" alone), "scores" {target:
    score}, "seconds", "num_windows", "window_mos" (the windows' MOS; None without a mos
    target), "window_scores" {target: [each window's]}, "window_start_seconds"}. A MOS model's
    summary is unchanged."""
    targets = tuple(targets)
    summary = score.summary()
    if targets == ("mos",):
        return summary
    values, windows = summary.pop("mos"), summary.pop("window_mos")
    if values is not None and np.ndim(values) == 0:  # a single non-MOS target
        values, windows = (values,), [[w] for w in windows or []]
    named = dict.fromkeys(targets) if values is None else dict(zip(targets, values, strict=True))
    per_window = None if windows is None else {t: [w[i] for w in windows] for i, t in enumerate(targets)}
    top = named if spread else {key: named[key] for key in named if key == "mos"}
    return {
        **top,
        "scores": None if values is None else named,
        **summary,
        "window_mos": per_window.get("mos") if per_window else None,
        "window_scores": per_window,
    }


def stack_scores(outputs: dict, targets) -> np.ndarray:
    """An exported model's outputs as scores: the "mos" output, float32 [batch], of a MOS
    model; each target's output stacked, float32 [batch, targets] in `targets` order, of a
    multi-target one."""
    targets = tuple(targets)
    if targets == ("mos",):
        return np.asarray(outputs["mos"], dtype=np.float32).reshape(-1)
    return np.stack([np.asarray(outputs[t], dtype=np.float32).reshape(-1) for t in targets], axis=-1)


def _plain(score):
    return [float(value) for value in score] if isinstance(score, tuple) else float(score)


def pad_batch(
    pieces: list[np.ndarray], rows: int | None = None, multiple: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pads 1-D float waveforms into one batch: (float32 [rows, width], int32 lengths [rows]).

    Args:
        pieces: the waveforms, one per row.
        rows: the batch's rows (default: one per piece); rows past the pieces are zeros of
            length 1 (a length of 0 would divide by zero in a masked mean).
        multiple: the width is the longest piece rounded up to a multiple of this.
    """
    rows = len(pieces) if rows is None else rows
    lengths = np.ones(rows, dtype=np.int32)
    lengths[: len(pieces)] = [len(piece) for piece in pieces]
    width = int(-(-int(lengths.max()) // multiple) * multiple)
    batch = np.zeros((rows, width), dtype=np.float32)
    for row, piece in enumerate(pieces):
        batch[row, : len(piece)] = piece
    return batch, lengths


def score_files(
    files: Iterable[tuple[Any, np.ndarray | Exception]],
    predict: Callable[[np.ndarray, np.ndarray], np.ndarray],
    *,
    window_samples: int,
    masks_padding: bool,
    hop_samples: int | None = None,
    batch_size: int = 8,
    bucket_samples: int = 1,
) -> Iterator[FileScore]:
    """Scores (key, 1-D float32 waveform) pairs; yields a `FileScore` per file, in order.

    Args:
        files: (key, waveform) pairs; in place of a waveform, an exception saying why the
            file cannot be scored (its `FileScore` carries the reason, in its place).
        predict: waveform [batch, samples], num_valid_samples [batch] -> MOS [batch].
        window_samples, hop_samples: the window rule (`jsqa_lite.contract.window_starts`).
        masks_padding: whether `predict` ignores zero padding (see the module's docstring).
        batch_size: windows per call.
        bucket_samples: with `masks_padding`, batch lengths are multiples of this.
    """
    pending: collections.deque[FileScore] = collections.deque()  # files not yet yielded
    queue: list[tuple[FileScore, int, np.ndarray]] = []  # (file, window index, window)

    def run(items):
        pieces = [window for _, _, window in items]
        if masks_padding:
            batch, lengths = pad_batch(pieces, rows=batch_size, multiple=bucket_samples)
        else:
            batch, lengths = pad_batch(pieces)  # one length: nothing is padded
        try:
            mos = np.asarray(predict(batch, lengths), dtype=np.float64)
            # [batch] (or [batch, 1]): a MOS per row; [batch, targets]: a tuple per row
            mos = mos.reshape(-1) if mos.ndim < 2 or mos.shape[-1] == 1 else mos.reshape(len(batch), -1)
            mos = mos[: len(items)]
        except Exception as error:  # a failing batch fails its files, not the run
            for score, _, _ in items:
                score.error = f"scoring failed ({type(error).__name__}: {error})"
            return
        for (score, index, _), value in zip(items, mos, strict=True):
            if not np.all(np.isfinite(value)):
                score.error = "the model gave a non-finite MOS"
            score.window_mos[index] = float(value) if np.ndim(value) == 0 else tuple(float(v) for v in value)

    def finished():
        while pending and pending[0].done:
            yield pending.popleft()

    for key, audio in files:
        score = FileScore(key)
        pending.append(score)
        if isinstance(audio, Exception):
            score.error = audio.reason if isinstance(audio, PathError) else str(audio)
            yield from finished()
            continue
        score.num_samples = len(audio)
        score.window_starts = window_starts(len(audio), window_samples, hop_samples)
        score.window_mos = [None] * len(score.window_starts)
        windows = [audio[start : start + window_samples] for start in score.window_starts]
        if not masks_padding and len(windows[0]) < window_samples:
            run([(score, 0, windows[0])])  # shorter than a window: alone, unpadded
        else:
            queue += [(score, index, window) for index, window in enumerate(windows)]
            while len(queue) >= batch_size:
                run(queue[:batch_size])
                del queue[:batch_size]
        yield from finished()
    if queue:
        run(queue)
    yield from finished()
