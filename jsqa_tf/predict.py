"""`jsqa-tf predict`: MOS of audio files with any exported or trained form of the model.

Backends share one interface, `score(batch) -> MOS`, for a float32 [batch, samples] batch of
clips of one length (`jsqa_tf.export`'s contract). Files are read with `jsqa_tf.audio.read_audio`
(any rate, channels, WAV/FLAC/OGG), cut into windows of exactly `window_seconds`
(`jsqa_tf.windows`); full windows of different files are batched together, a file shorter than
the window is scored alone (zero padding would change its score), and a file's MOS is the mean of
its windows'. Results come out in input order as soon as a file and all before it are done.

With a TFLite model nothing here imports TensorFlow (it is imported only by the Keras and
SavedModel backends).
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
import json
import os
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from jsqa_tf.audio import SAMPLE_RATE, read_audio
from jsqa_tf.data.corpora import AUDIO_SUFFIXES
from jsqa_tf.errors import AudioError, JSQAError, ModelError
from jsqa_tf.export import CONTRACT_FILE, MIN_SAMPLES, SIGNATURE_KEY, list_versions
from jsqa_tf.lite import too_short_reason
from jsqa_tf.windows import split_windows, window_starts

FORMATS = ("csv", "json", "jsonl")


# --- backends ------------------------------------------------------------------------------------


class KerasBackend:
    """A `.keras` file or a run folder, run by Keras (TensorFlow)."""

    kind = "keras"

    def __init__(self, path: str):
        import tensorflow as tf

        from jsqa_tf.models.saving import find_model_file, load_mos_regressor

        self.path = find_model_file(path)
        self.min_samples = MIN_SAMPLES
        model = load_mos_regressor(self.path)
        self._score = tf.function(
            lambda waveform: model(waveform, training=False),
            input_signature=[tf.TensorSpec([None, None], tf.float32)],
        )

    def score(self, batch: np.ndarray) -> np.ndarray:
        return self._score(np.asarray(batch, dtype=np.float32)).numpy()


class SavedModelBackend:
    """One version folder of an export (`saved_models/NAME/<version>`), its `serving_default`."""

    kind = "saved_model"

    def __init__(self, path: str):
        import tensorflow as tf

        self.path = path
        self.min_samples = _contract_min_samples(os.path.join(path, "assets.extra", CONTRACT_FILE))
        try:
            self._loaded = tf.saved_model.load(path)  # keep it: the signature needs its variables
            self._signature = self._loaded.signatures[SIGNATURE_KEY]
        except Exception as error:  # corrupt protos, missing variables: many error types
            raise ModelError(path, f"cannot load the SavedModel ({type(error).__name__}: {error})")

    def score(self, batch: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        return self._signature(waveform=tf.constant(batch, dtype=tf.float32))["mos"].numpy()


class TFLiteBackend:
    """A `.tflite` file in LiteRT (`jsqa_tf.lite`; no TensorFlow)."""

    kind = "tflite"

    def __init__(self, path: str, num_threads: int = 2):
        from jsqa_tf.lite import LiteModel

        self._model = LiteModel(path, num_threads=num_threads)
        self.path = self._model.path
        self.min_samples = self._model.min_samples

    def score(self, batch: np.ndarray) -> np.ndarray:
        return self._model.score(batch)


def _contract_min_samples(path: str) -> int:
    try:
        with open(path, encoding="utf-8") as stream:
            return int(json.load(stream)["input"]["min_samples"])
    except (OSError, ValueError, KeyError, TypeError):
        return MIN_SAMPLES


def open_backend(model_path: str | os.PathLike, num_threads: int = 2):
    """The backend for what `--model` names.

    `FILE.tflite` -> TFLite; a SavedModel folder (`saved_model.pb`) -> SavedModel; a TF Serving
    base path (integer version folders) -> its latest version; a `.keras` file or a run folder
    -> Keras. Raises `ModelError` for anything else.
    """
    path = os.path.abspath(os.fspath(model_path))
    if not os.path.exists(path):
        raise ModelError(path, "model not found")
    if os.path.isfile(path) and path.endswith(".tflite"):
        return TFLiteBackend(path, num_threads)
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "saved_model.pb")):
            return SavedModelBackend(path)
        versions = list_versions(path)
        if versions:
            return SavedModelBackend(os.path.join(path, str(versions[-1])))
        if any(name.isdigit() for name in os.listdir(path)):
            raise ModelError(path, "its version folders hold no saved_model.pb (an incomplete export?)")
    if os.path.isdir(path) or path.endswith(".keras"):
        return KerasBackend(path)  # ModelError when the folder is not a run folder
    raise ModelError(
        path, "not a .tflite or .keras file, a SavedModel, a TF Serving base path or a run folder"
    )


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
        with open(csv_path, newline="", encoding="utf-8") as stream:
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
    """One file's row: its MOS (mean of its windows') or its error."""

    path: str
    mos: float | None = None
    seconds: float | None = None
    num_windows: int = 0
    error: str | None = None
    window_mos: list[float] | None = None
    window_start_seconds: list[float] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class _Pending:
    def __init__(self, path: str):
        self.result = FileResult(path)
        self.scores: list[float | None] = []

    @property
    def done(self) -> bool:
        return self.result.error is not None or all(s is not None for s in self.scores)


def predict(
    backend,
    files: Iterable[str],
    *,
    window_seconds: float = 10.0,
    batch_size: int = 8,
    on_result: Callable[[FileResult], None],
) -> tuple[int, int]:
    """Scores files, calling `on_result` for each in input order as soon as it is done.

    A file that cannot be read, is too short, or whose score fails gets a result with its error;
    the run goes on. Returns (number scored, number failed).
    """
    window_samples = int(round(window_seconds * SAMPLE_RATE))
    pending: collections.deque[_Pending] = collections.deque()
    queue: list[tuple[_Pending, int, np.ndarray]] = []  # full-length windows awaiting a batch
    counts = {"scored": 0, "failed": 0}

    def run(items):
        try:
            mos = np.asarray(backend.score(np.stack([window for _, _, window in items])), np.float64)
        except Exception as error:  # a failing batch fails its files, not the run
            for entry, _, _ in items:
                entry.result.error = f"scoring failed ({type(error).__name__}: {error})"
            return
        for (entry, index, _), value in zip(items, mos.reshape(-1), strict=True):
            if not np.isfinite(value):
                entry.result.error = "the model gave a non-finite MOS"
            entry.scores[index] = float(value)

    def emit():
        while pending and pending[0].done:
            entry = pending.popleft()
            result = entry.result
            if result.ok:
                result.mos = float(np.mean(entry.scores))
                result.window_mos = list(entry.scores)
            counts["scored" if result.ok else "failed"] += 1
            on_result(result)

    for path in files:
        entry = _Pending(path)
        pending.append(entry)
        try:
            audio = read_audio(path)
            if len(audio) < backend.min_samples:
                raise AudioError(path, too_short_reason(len(audio), backend.min_samples))
        except AudioError as error:
            entry.result.error = error.reason
        else:
            windows = split_windows(audio, window_samples)
            starts = window_starts(len(audio), window_samples)
            entry.scores = [None] * len(windows)
            entry.result.seconds = len(audio) / SAMPLE_RATE
            entry.result.num_windows = len(windows)
            entry.result.window_start_seconds = [start / SAMPLE_RATE for start in starts]
            if len(windows[0]) < window_samples:
                run([(entry, 0, windows[0])])  # a short file alone: no padding
            else:
                queue += [(entry, index, window) for index, window in enumerate(windows)]
                while len(queue) >= batch_size:
                    run(queue[:batch_size])
                    del queue[:batch_size]
        emit()
    if queue:
        run(queue)
    emit()
    return counts["scored"], counts["failed"]


# --- output ------------------------------------------------------------------------------------------


class ResultWriter:
    """Streams results as CSV, a JSON array or JSON lines, flushing after each.

    Args:
        stream: a text stream.
        output_format: "csv", "json" or "jsonl".
        per_window: add each window's MOS and start (seconds); in CSV, ";"-joined.
    """

    COLUMNS = ("path", "mos", "seconds", "num_windows", "error")
    WINDOW_COLUMNS = ("window_mos", "window_start_seconds")

    def __init__(self, stream: io.TextIOBase, output_format: str = "csv", per_window: bool = False):
        if output_format not in FORMATS:
            raise ValueError(f"output_format must be one of {FORMATS}")
        self.stream = stream
        self.output_format = output_format
        self.columns = self.COLUMNS + (self.WINDOW_COLUMNS if per_window else ())
        self._count = 0
        if output_format == "csv":
            self._csv = csv.writer(stream, lineterminator="\n")
            self._csv.writerow(self.columns)
        elif output_format == "json":
            stream.write("[")
        stream.flush()

    def _row(self, result: FileResult) -> dict:
        row = {column: getattr(result, column) for column in self.columns}
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
