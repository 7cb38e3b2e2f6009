"""`predict` with any backend, without TensorFlow: inputs, the scoring loop, the result rows.

Backends share one interface, `score(batch) -> MOS`, for a float32 [batch, samples] batch of
clips of one length (`jsqa_lite.contract`), plus `path`, `kind` and `min_samples`; a backend
whose model masks zero padding says so (`masks_padding`, `bucket_samples`) and takes
`score(batch, num_valid_samples)` for padded batches of a bounded set of lengths. The TFLite
backend is here; `jsqa_tf.predict` adds the Keras and SavedModel ones. Files are read with
`jsqa_lite.audio.read_audio` (any rate, channels, WAV/FLAC/OGG) and scored in windows of
exactly `window_seconds` by `jsqa_lite.scoring.score_files`; full windows of different files
are batched together, a file shorter than the window is scored alone (zero padding would change
its score), and a file's MOS is the mean of its windows'. Results come out in input order as
soon as a file and all before it are done.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from collections.abc import Callable, Iterable, Sequence

from jsqa_lite.audio import AUDIO_SUFFIXES, read_model_input
from jsqa_lite.contract import DEFAULT_WINDOW_SECONDS, to_samples
from jsqa_lite.errors import AudioError, JSQAError, ModelError
from jsqa_lite.lite_model import LiteModel
from jsqa_lite.scoring import score_files, target_summary

FORMATS = ("csv", "json", "jsonl")


class TFLiteBackend:
    """A `.tflite` file in LiteRT (`LiteModel`)."""

    kind = "tflite"

    def __init__(self, path: str, num_threads: int = 2):
        self._model = LiteModel(path, num_threads=num_threads)
        self.path = self._model.path
        self.min_samples = self._model.min_samples
        self.targets = self._model.targets

    def score(self, batch):
        return self._model.score(batch)


def open_tflite(model_path: str | os.PathLike, num_threads: int = 2) -> TFLiteBackend:
    """The backend of a `.tflite` file; `ModelError` for anything else (`jsqa_tf.predict.open_backend`
    opens the other forms)."""
    path = os.path.abspath(os.fspath(model_path))
    if not os.path.exists(path):
        raise ModelError(path, "model not found")
    if not (os.path.isfile(path) and path.endswith(".tflite")):
        raise ModelError(path, "not a .tflite file (jsqa-tf predict runs the other forms of a model)")
    return TFLiteBackend(path, num_threads)


# --- inputs --------------------------------------------------------------------------------------------


def list_audio(folder: str, recursive: bool = False) -> list[str]:
    """Audio files (by suffix) in a folder, sorted; subfolders too with `recursive`."""
    found = []
    for parent, subfolders, files in os.walk(folder, followlinks=True):
        subfolders.sort()
        found += [
            os.path.join(parent, name)
            for name in sorted(files)
            if name.lower().endswith(AUDIO_SUFFIXES) and not name.startswith(".")
        ]
        if not recursive:
            break
    return found


def read_list(csv_path: str) -> list[str]:
    """Paths from a CSV list: its `path` column (or the first, without such a header); relative
    paths are relative to the CSV's folder."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as stream:  # a BOM is no header cell
            rows = [row for row in csv.reader(stream) if row and any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError) as error:
        raise JSQAError(f"{csv_path}: cannot read the list ({error})")
    if not rows:
        raise JSQAError(f"{csv_path}: the list is empty")
    header = [cell.strip().lower() for cell in rows[0]]
    column = header.index("path") if "path" in header else 0
    body = rows[1:] if "path" in header else rows
    folder = os.path.dirname(os.path.abspath(csv_path))
    return [os.path.join(folder, row[column].strip()) for row in body if len(row) > column]


def collect_inputs(paths: Sequence[str], csv_lists: Sequence[str] = (), recursive: bool = False) -> list[str]:
    """Files named, the audio files of folders named, and the paths of CSV lists, in order.

    A path that does not exist is kept (it becomes a row with its error)."""
    files = []
    for path in paths:
        files += list_audio(path, recursive) if os.path.isdir(path) else [path]
    for csv_path in csv_lists:
        files += read_list(csv_path)
    return files


# --- scoring ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class FileResult:
    """One file's row: its MOS (mean of its windows') or its error; of a multi-target model,
    `scores` {target: mean of its windows'} too."""

    path: str
    mos: float | None = None
    seconds: float | None = None
    num_windows: int = 0
    error: str | None = None
    window_mos: list[float] | None = None
    window_start_seconds: list[float] | None = None
    scores: dict | None = None
    window_scores: dict | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def predict(
    backend,
    files: Iterable[str],
    *,
    window_seconds: float = DEFAULT_WINDOW_SECONDS,
    batch_size: int = 8,
    on_result: Callable[[FileResult], None],
) -> tuple[int, int]:
    """Scores files, calling `on_result` for each in input order as soon as it is done.

    A file that cannot be read, is too short, or whose score fails gets a result with its error;
    the run goes on. Returns (number scored, number failed).
    """

    def audio():
        for path in files:
            try:
                yield path, read_model_input(path, backend.min_samples)
            except AudioError as error:
                yield path, error

    # A backend that masks padding (`masks_padding`, e.g. Keras) takes the valid lengths and
    # sees a bounded set of shapes; the others get rows of one real length.
    masks = getattr(backend, "masks_padding", False)
    targets = tuple(getattr(backend, "targets", ("mos",)))
    counts = {True: 0, False: 0}
    for score in score_files(
        audio(),
        (lambda batch, lengths: backend.score(batch, lengths))
        if masks
        else (lambda batch, _: backend.score(batch)),
        window_samples=to_samples(window_seconds),
        masks_padding=masks,
        batch_size=batch_size,
        bucket_samples=getattr(backend, "bucket_samples", 1),
    ):
        summary = target_summary(score, targets, spread=False)  # `FileResult` keeps them in `scores`
        result = FileResult(score.key, error=score.error, **summary)
        counts[result.ok] += 1
        on_result(result)
    return counts[True], counts[False]


# --- output ------------------------------------------------------------------------------------------


class ResultWriter:
    """Streams results as CSV, a JSON array or JSON lines, flushing after each.

    Args:
        stream: a text stream.
        output_format: "csv", "json" or "jsonl".
        per_window: add each window's MOS and start (seconds); in CSV, ";"-joined.
        targets: the model's score outputs: ("mos",), or a multi-target model's (mos, noi,
            col, dis, loud), each its own column (JSON key) in this order after `path`; with
            `per_window`, `window_<target>` for each.
    """

    COLUMNS = ("path", "mos", "seconds", "num_windows", "error")
    WINDOW_COLUMNS = ("window_mos", "window_start_seconds")

    def __init__(
        self,
        stream: io.TextIOBase,
        output_format: str = "csv",
        per_window: bool = False,
        targets: Sequence[str] = ("mos",),
    ):
        if output_format not in FORMATS:
            raise ValueError(f"output_format must be one of {FORMATS}")
        self.stream = stream
        self.output_format = output_format
        self.targets = tuple(targets)
        if self.targets == ("mos",):
            self.columns = self.COLUMNS + (self.WINDOW_COLUMNS if per_window else ())
        else:
            windows = (*(f"window_{t}" for t in self.targets), "window_start_seconds") if per_window else ()
            self.columns = ("path", *self.targets, "seconds", "num_windows", "error", *windows)
        self._count = 0
        if output_format == "csv":
            self._csv = csv.writer(stream, lineterminator="\n")
            self._csv.writerow(self.columns)
        elif output_format == "json":
            stream.write("[")
        stream.flush()

    def _value(self, result: FileResult, column: str):
        if self.targets == ("mos",):
            return getattr(result, column)
        if column in self.targets:
            return (result.scores or {}).get(column)
        if column.startswith("window_") and column[len("window_") :] in self.targets:
            return (result.window_scores or {}).get(column[len("window_") :])
        return getattr(result, column)

    def _row(self, result: FileResult) -> dict:
        row = {column: self._value(result, column) for column in self.columns}
        if result.error is not None:  # nothing half-filled on an error row
            row.update({column: None for column in self.columns if column not in ("path", "error")})
        return row

    def write(self, result: FileResult) -> None:
        row = self._row(result)
        if self.output_format == "csv":
            self._csv.writerow([_csv_cell(row[column]) for column in self.columns])
        elif self.output_format == "json":
            self.stream.write(("," if self._count else "") + "\n  " + json.dumps(row))
        else:
            self.stream.write(json.dumps(row) + "\n")
        self._count += 1
        self.stream.flush()

    def close(self) -> None:
        if self.output_format == "json":
            self.stream.write("\n]\n" if self._count else "]\n")
        self.stream.flush()


def _csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return ";".join(_csv_cell(item) for item in value)
    return str(value)
