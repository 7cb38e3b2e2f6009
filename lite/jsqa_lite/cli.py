"""The `jsqa-lite` command line, and the `predict` command it shares with `jsqa-tf`.

`predict_command(open_backend, ...)` builds the click command: `jsqa-lite predict` opens
`.tflite` files only, `jsqa-tf predict` passes an `open_backend` that opens every form of a
model. Results go to stdout (or --output), logs and the progress bar to stderr. Exit status:
0 all files scored, 1 some failed (or an unexpected error), 2 the command could not start.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import sys
import tempfile
import traceback
from collections.abc import Callable

import click
from click.core import ParameterSource

from jsqa_lite import __version__
from jsqa_lite.contract import DEFAULT_WINDOW_SECONDS, MIN_SECONDS
from jsqa_lite.errors import JSQAError

logger = logging.getLogger(__name__)


class Failure(click.ClickException):
    """One line on stderr, `error: <message>`, exit status 1."""

    def show(self, file=None) -> None:
        click.echo(f"error: {self.message}", err=True)


class UsageError(Failure):
    """One line, `error: <message>`, and exit status 2: the command cannot start (bad option,
    model or output)."""

    exit_code = 2


class WriteFailure(Failure):
    """One line, `error: <path>: cannot write ...`, and exit status 3: the results could not be
    written (a full disk, a lost device), as distinct from files that failed (1)."""

    exit_code = 3


def parse_number(option: str, text: str, kind: type, minimum: float):
    """`text` as an int or float of at least `minimum`, else a `UsageError` naming `option`."""
    try:
        value = kind(text)
    except ValueError:
        raise UsageError(f"{option} {text}: not a{'n integer' if kind is int else ' number'}") from None
    if not value >= minimum:
        raise UsageError(f"{option} {text}: must be at least {minimum:g}")
    return value


_PREDICT_OPTIONS = [
    click.option(
        "--csv", "csv_lists", multiple=True, type=click.Path(), help="CSV list of files (a `path` column)."
    ),
    click.option("--recursive", is_flag=True, help="Also take audio files from subfolders of folders given."),
    click.option(
        "--format",
        "output_format",
        type=click.Choice(["csv", "json", "jsonl"]),
        default="csv",
        show_default=True,
    ),
    click.option(
        "--output", type=click.Path(dir_okay=False), help="Write the results here (default: stdout)."
    ),
    click.option("--batch-size", default="8", show_default=True, help="Windows scored at once."),
    click.option(
        "--window-seconds",
        default=f"{DEFAULT_WINDOW_SECONDS:g}",
        show_default=True,
        help="Longer files are scored in windows.",
    ),
    click.option("--per-window", is_flag=True, help="Also give each window's MOS and start time."),
    click.option("--threads", default="2", show_default=True, help="CPU threads of the TFLite interpreter."),
]


def predict_command(
    open_backend: Callable[[str, int], object],
    *,
    model_help: str,
    default_model: str | None = None,
    no_model_hint: str = "",
) -> click.Command:
    """The `predict` command scoring files with what `open_backend(path, num_threads)` opens.

    Args:
        open_backend: returns a backend (`jsqa_lite.predict`) or raises a `JSQAError`.
        model_help: the --model option's help (what it may name).
        default_model: --model's default; None makes --model required.
        no_model_hint: what to say, after "no --model given and no model at DEFAULT", when
            --model is not given and the default does not exist (how to get a model).
    """

    def predict(paths, model_path, **options) -> None:
        """MOS of audio files: PATHS are files or folders (any rate, channels, WAV/FLAC/OGG).

        A file longer than --window-seconds is scored in windows of that length and averaged. Each
        file gets a row (path, mos, seconds, num_windows, error), streamed as it is done; a file that
        fails gets its error and the run goes on. --output is written whole or not at all (a
        temporary file renamed at the end) and may not be an input, a list or the model. Exit
        status: 0 all scored, 1 some failed, 2 the command could not start, 3 the results could
        not be written. With a .tflite model TensorFlow is not imported.
        """
        settings = _predict_settings(options)

        def no_model() -> None:
            if default_model and _defaulted("model_path") and not os.path.exists(model_path):
                raise UsageError(
                    f"no --model given and no model at {model_path}: {no_model_hint}".rstrip(": ")
                )

        files, backend = _open_predict(open_backend, paths, model_path, options, settings, no_model)
        output = options["output"]
        try:
            with _results_stream(output) as stream:
                scored, failed = _score_to(stream, backend, files, options, settings)
        except _WriteError as error:
            raise WriteFailure(str(error)) from error
        click.echo(f"{scored} file(s) scored, {failed} failed", err=True)
        if failed:
            sys.exit(1)

    # No default at all when there is none (click >= 8.3 takes default=None for a given value).
    model_default = {"default": default_model, "show_default": True} if default_model else {"required": True}
    decorators = [
        click.command("predict"),
        click.argument("paths", nargs=-1, type=click.Path()),
        click.option("--model", "model_path", help=model_help, **model_default),
        *_PREDICT_OPTIONS,
    ]
    for decorator in reversed(decorators):
        predict = decorator(predict)
    return predict


def _defaulted(parameter: str) -> bool:
    """True when the running command's `parameter` took its default (was not given)."""
    return click.get_current_context().get_parameter_source(parameter) is ParameterSource.DEFAULT


def _predict_settings(options: dict) -> dict:
    """The numeric options, checked (a `UsageError` names the first out of range)."""
    window_seconds = parse_number("--window-seconds", options["window_seconds"], float, MIN_SECONDS)
    if not math.isfinite(window_seconds):
        raise UsageError(f"--window-seconds {window_seconds}: must be a finite number of seconds")
    return {
        "batch_size": parse_number("--batch-size", options["batch_size"], int, 1),
        "threads": parse_number("--threads", options["threads"], int, 1),
        "window_seconds": window_seconds,
    }


def _open_predict(open_backend, paths, model_path: str, options: dict, settings: dict, no_model):
    """The files to score and the backend; a `UsageError` for either, for settings that would
    not fit in memory, or for an output that cannot be written or is an input."""
    from jsqa_lite.memory import check_scoring
    from jsqa_lite.predict import collect_inputs

    output = options["output"]
    if output:
        folder = os.path.dirname(os.path.abspath(output))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise UsageError(f"{output}: cannot write here (no such folder, or not writable)")
    try:
        check_scoring(settings["window_seconds"], settings["batch_size"])
        files = collect_inputs(paths, options["csv_lists"], options["recursive"])
        if not files:
            raise UsageError(_no_audio_message(paths, options["recursive"]))
        if output:
            _refuse_output_over_inputs(output, files, options["csv_lists"], model_path)
        no_model()  # a missing default model, said after what the output would destroy
        backend = open_backend(model_path, settings["threads"])
    except JSQAError as error:
        raise UsageError(str(error)) from error
    return files, backend


def _no_audio_message(paths, recursive: bool) -> str:
    """Why there is nothing to score: the folders given (named) hold no audio files."""
    from jsqa_lite.audio import AUDIO_SUFFIXES

    folders = [path for path in paths if os.path.isdir(path)]
    if not folders:
        return "no audio files given (PATH..., folders with audio, or --csv LIST)"
    where = "or its subfolders" if recursive else "(--recursive also looks in subfolders)"
    named = folders[0] if len(folders) == 1 else f"{folders[0]} (and {len(folders) - 1} more folder(s))"
    return f"{named}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in this folder {where}"


def _refuse_output_over_inputs(output: str, files: list[str], csv_lists, model_path: str) -> None:
    """A `UsageError` when --output is one of the files, a list, the model, or inside the model's
    folder: writing it would destroy what the run reads."""
    target = os.path.realpath(output)
    named = [("one of the audio files", path) for path in files]
    named += [("the list given to --csv", path) for path in csv_lists]
    named.append(("the model", model_path))
    for what, path in named:
        if os.path.realpath(path) == target:
            raise UsageError(
                f"{output}: is {what}; writing the results there would destroy it: choose another --output"
            )
    model = os.path.realpath(model_path)
    if os.path.isdir(model) and target.startswith(model + os.sep):
        raise UsageError(f"{output}: lies inside the model folder {model_path}: choose another --output")


class _WriteError(Exception):
    """Writing the results failed: `str()` names the path and what became of it."""


class _GuardedStream:
    """A text stream whose failing writes raise `_WriteError` naming `name`."""

    def __init__(self, stream, name: str, after: str):
        self._stream, self._name, self._after = stream, name, after

    def _guard(self, method, *args):
        try:
            return method(*args)
        except OSError as error:
            reason = error.strerror or str(error)
            raise _WriteError(f"{self._name}: cannot write ({reason}); {self._after}") from error

    def write(self, text: str) -> int:
        return self._guard(self._stream.write, text)

    def flush(self) -> None:
        self._guard(self._stream.flush)


@contextlib.contextmanager
def _results_stream(output: str | None):
    """stdout (rows streamed as they come), or a temporary file beside `output` renamed onto it
    when every row is written: a full disk, an error or a kill leaves the previous file (or
    none), never a truncated one."""
    if not output:
        yield _GuardedStream(sys.stdout, "stdout", "the rows before this one were written")
        return
    path = os.path.abspath(output)
    kept = "the previous file is kept" if os.path.exists(path) else "no file was written"
    handle, temp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f".{os.path.basename(path)}.tmp-")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            guarded = _GuardedStream(stream, path, kept)
            yield guarded
            guarded._guard(stream.flush)
            guarded._guard(os.fsync, stream.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(temp, 0o666 & ~mask)
        try:
            os.replace(temp, path)
        except OSError as error:
            raise _WriteError(f"{path}: cannot write ({error.strerror}); {kept}") from error
    finally:
        if os.path.exists(temp):
            os.remove(temp)


def _score_to(stream, backend, files: list[str], options: dict, settings: dict) -> tuple[int, int]:
    """Scores `files`, streaming each row to `stream`; returns (number scored, number failed)."""
    from jsqa_lite.predict import ResultWriter
    from jsqa_lite.predict import predict as run_predict

    logger.info("scoring %d file(s) with %s (%s)", len(files), backend.path, backend.kind)
    targets = getattr(backend, "targets", ("mos",))
    writer = ResultWriter(stream, options["output_format"], options["per_window"], targets)
    with click.progressbar(length=len(files), label="scoring", file=sys.stderr, show_pos=True) as bar:

        def on_result(result) -> None:
            writer.write(result)
            bar.update(1)

        counts = run_predict(
            backend,
            files,
            window_seconds=settings["window_seconds"],
            batch_size=settings["batch_size"],
            on_result=on_result,
        )
    writer.close()
    return counts


def one_line(text: object) -> str:
    """`text` with its line breaks (and the spaces around them) made single spaces."""
    return re.sub(r"\s*\n\s*", " ", str(text).strip())


class ErrorBoundaryGroup(click.Group):
    """A command group that turns any exception its commands let through into one line,
    `error: ...`, and exit status 1 (-vv prints the traceback first). `error_line` says what
    the line says; a CLI that knows more kinds of errors extends it (`jsqa_tf.cli`)."""

    program = "jsqa-lite"

    @classmethod
    def error_line(cls, error: Exception) -> str:
        if isinstance(error, JSQAError):
            return one_line(error)
        if isinstance(error, OSError) and error.strerror:
            where = error.filename or error.filename2
            return one_line(f"{where}: {error.strerror}" if where else error.strerror)
        if isinstance(error, MemoryError):
            return "out of memory: use smaller batches or crops, or fewer workers (-j)"
        return one_line(
            f"unexpected {type(error).__name__}: {error} (a bug in {cls.program}? Run the same command "
            "with -vv for the traceback, and please report it)"
        )

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as error:
            if ctx.params.get("verbose", 0) >= 2:
                traceback.print_exception(error, file=sys.stderr)
            raise Failure(self.error_line(error)) from error


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a record comes (click's test runner swaps it)."""

    def emit(self, record):
        self.stream = sys.stderr
        super().emit(record)


class _Formatter(logging.Formatter):
    """`warning: ...` lines by default; times and logger names with -v."""

    def __init__(self, verbose: int):
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s" if verbose else "%(levelname)s: %(message)s"
        super().__init__(fmt)
        self.verbose = verbose

    def format(self, record):
        text = super().format(record)
        return text if self.verbose else text.replace(record.levelname, record.levelname.lower(), 1)


def setup_logging(verbose: int) -> None:
    """Log lines on stderr: warnings and errors by default, -v info, -vv debug."""
    root = logging.getLogger()
    handler = _StderrHandler()
    handler.setFormatter(_Formatter(verbose))
    root.handlers = [h for h in root.handlers if not isinstance(h, _StderrHandler)] + [handler]
    root.setLevel({0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG))


@click.group(cls=ErrorBoundaryGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jsqa-lite")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug and tracebacks).")
def main(verbose: int) -> None:
    """jsqa-lite: MOS of speech files with a jsqa-tf TFLite model, on LiteRT (no TensorFlow)."""
    setup_logging(verbose)


def _open_tflite(path: str, num_threads: int):
    from jsqa_lite.predict import open_tflite

    return open_tflite(path, num_threads)


main.add_command(predict_command(_open_tflite, model_help="The FILE.tflite that `jsqa-tf export` wrote."))


if __name__ == "__main__":
    main()
