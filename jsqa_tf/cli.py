"""The `jsqa-tf` command line: parses, calls library functions, prints.

This module is the entry point: the `main` group (error boundary, logging) and the commands
that use a trained model (evaluate, compare, export, predict). The other commands, by task,
are in `jsqa_tf.commands` (data, jnd, training) and are added to `main` here. Logs and
progress bars go to stderr; machine-readable results (JSON) go to stdout.

One error boundary (`_Group.invoke`): whatever exception reaches it prints one line,
`error: <file>: <reason>`, and exits with status 1; `-vv` prints the traceback first. Errors
the user can act on are `JSQAError`s, OS errors (a full disk) and TensorFlow read errors
(turned into the shard at fault); anything else is reported as unexpected, pointing at -vv.
"""

from __future__ import annotations

import logging
import os
import sys

import click

import jsqa_tf
from jsqa_lite.cli import ErrorBoundaryGroup, one_line, predict_command, setup_logging
from jsqa_tf.commands import data as data_commands
from jsqa_tf.commands import jnd as jnd_commands
from jsqa_tf.commands import training as training_commands
from jsqa_tf.commands.common import echo_json as _echo_json
from jsqa_tf.commands.common import progress_bars as _progress_bars
from jsqa_tf.errors import JSQAError

logger = logging.getLogger("jsqa_tf")


def _quiet_tensorflow(verbose: int) -> None:
    """TensorFlow's C++ start-up chatter is not for the user (-v shows warnings and errors,
    -vv all of it); set before TensorFlow is imported."""
    if verbose == 0:
        from jsqa_tf.processes import quiet_tensorflow_import

        quiet_tensorflow_import()
    elif verbose == 1:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")


class _Group(ErrorBoundaryGroup):
    """The CLI's error boundary (`jsqa_lite.cli.ErrorBoundaryGroup`), which also names the shard
    behind a TensorFlow read error and says what a TensorFlow error was."""

    program = "jsqa-tf"

    @classmethod
    def error_line(cls, error: Exception) -> str:
        if not isinstance(error, JSQAError):
            from jsqa_tf.data.integrity import explain_read_error

            explained = explain_read_error(error)
            if explained is not None:
                return one_line(explained)
            tf = sys.modules.get("tensorflow")
            if tf is not None and isinstance(error, tf.errors.OpError):
                first = ((error.message or "").strip().splitlines() or [type(error).__name__])[0]
                return one_line(f"TensorFlow: {first} (-vv shows the traceback)")
        return super().error_line(error)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(jsqa_tf.__version__, prog_name="jsqa-tf")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug and tracebacks).")
def main(verbose: int) -> None:
    """jsqa-tf: JSQA in Keras: JND pairs, contrastive pretraining of a waveform encoder, MOS
    fine-tuning and evaluation on labelled data, export for TF Serving and TFLite, and
    scoring new files (predict)."""
    setup_logging(verbose)
    _quiet_tensorflow(verbose)


for _command in (
    data_commands.demo_data,
    data_commands.prepare,
    data_commands.check,
    data_commands.pairs,
    jnd_commands.jnd,
    training_commands.pretrain,
    training_commands.finetune,
    training_commands.distill,
    training_commands.train,
):
    main.add_command(_command)


@main.command()
@click.argument("model_path", metavar="MODEL", type=click.Path())
@click.argument("data", type=click.Path())
@click.option(
    "-o",
    "--output",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Output folder (default: evaluate-<data name> beside a run folder's model).",
)
@click.option("--split", default="val", show_default=True, help="Split of prepared shards to score.")
@click.option("--db", "databases", multiple=True, help="Only these NISQA dbs of the shards (repeatable).")
@click.option("--window-seconds", default=10.0, show_default=True, help="Longer files: windows, averaged.")
@click.option("--batch-size", default=8, show_default=True, help="Windows per batch.")
@click.option("--bootstrap", default=1000, show_default=True, help="Bootstrap resamples (95% intervals).")
@click.option("--seed", default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--strict", is_flag=True, help="Fail if any listed file is missing or unreadable.")
@click.option(
    "--mos-range",
    nargs=2,
    type=float,
    help="The labels' scale LOW HIGH (e.g. 0 100 for MUSHRA; default: the model's, 1 5): the "
    "model's MOS is mapped onto it and the figures are on it.",
)
def evaluate(
    model_path,
    data,
    out_dir,
    split,
    databases,
    window_seconds,
    batch_size,
    bootstrap,
    seed,
    strict,
    mos_range,
) -> None:
    """Scores MODEL (a .keras file or a fine-tuning / train run folder) on labelled DATA.

    DATA: prepared shards (`jsqa-tf prepare nisqa|csv`) or a CSV with columns path, mos[,
    condition] (paths relative to the CSV). Writes metrics.json (PCC, SRCC, RMSE, MAE, RMSE
    after P.1401's first- and third-order mappings, per file and per condition, bootstrap
    95% intervals), predictions.csv and scatter.png; prints a summary, and the output
    folder as JSON.
    """
    from jsqa_lite.memory import check_scoring
    from jsqa_tf.evaluation import evaluate as run_evaluate
    from jsqa_tf.evaluation import summary_text
    from jsqa_tf.models import find_model_file

    if window_seconds <= 0 or batch_size < 1 or bootstrap < 0:
        raise click.UsageError("--window-seconds must be > 0, --batch-size >= 1, --bootstrap >= 0")
    if not os.path.exists(data):
        raise JSQAError(f"{data}: not found (prepared shards or a CSV)")
    check_scoring(window_seconds, batch_size)
    model_file = find_model_file(model_path)
    if out_dir is None:
        name = os.path.splitext(os.path.basename(os.path.normpath(data)))[0]
        out_dir = os.path.join(os.path.dirname(model_file), f"evaluate-{name}")
    with _progress_bars() as progress:
        updates = []
        report = run_evaluate(
            model_file,
            data,
            out_dir,
            split=split,
            databases=databases,
            window_seconds=window_seconds,
            batch_size=batch_size,
            num_bootstrap=bootstrap,
            seed=seed,
            strict=strict,
            mos_range=mos_range or None,
            on_start=lambda count: updates.append(progress("scoring", count)),
            on_file=lambda: updates[-1](1),
        )
    click.echo(summary_text(report), err=True)
    _echo_json({"output_dir": os.path.abspath(out_dir), "num_files": report["num_files"]})


@main.command()
@click.argument("sources", metavar="RUN_OR_METRICS...", nargs=-1, required=True, type=click.Path())
@click.option("--baseline", help="Name (or position, from 0) of the result the others are compared with.")
@click.option("--bootstrap", default=1000, show_default=True, help="Paired bootstrap resamples.")
@click.option("--seed", default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON instead of markdown.")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Also write the markdown (and .json) here."
)
def compare(sources, baseline, bootstrap, seed, as_json, output) -> None:
    """A table like the paper's Tables 1-2 of evaluations, with paired-bootstrap differences.

    Each source: a run folder (its evaluate/), an evaluation folder, or a metrics.json; the
    differences pair the files both results scored (their predictions.csv).
    """
    from jsqa_tf import atomic
    from jsqa_tf.compare import compare as run_compare
    from jsqa_tf.compare import load_result, to_markdown

    if bootstrap < 0:
        raise click.UsageError("--bootstrap must be >= 0")
    if output:  # before any work: a file where a folder of the path should be, no permission
        atomic.check_writable(output)
        atomic.check_writable(os.path.splitext(output)[0] + ".json")
    results = [load_result(source) for source in sources]
    names = [result.name for result in results]
    index = 0
    if baseline is not None:
        if baseline in names:
            index = names.index(baseline)
        elif baseline.isdigit() and int(baseline) < len(results):
            index = int(baseline)
        else:
            raise click.UsageError(f"--baseline {baseline!r} is none of {', '.join(names)}")
    table = run_compare(results, baseline=index, num_bootstrap=bootstrap, seed=seed)
    markdown = to_markdown(table)
    if output:
        atomic.write_text(output, markdown + "\n")
        atomic.write_json(os.path.splitext(output)[0] + ".json", table)
    if as_json:
        _echo_json(table)
    else:
        click.echo(markdown)


@main.command()
@click.argument("model_path", metavar="MODEL", type=click.Path())
@click.option("--name", required=True, help="Model name (TF Serving's --model_name); the base path's folder.")
@click.option(
    "--output-dir",
    default="saved_models",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the base path OUTPUT_DIR/NAME/ lies.",
)
@click.option(
    "--tflite",
    multiple=True,
    type=click.Choice(["float32", "float16", "int8", "int8-full"]),
    help="Also convert to TFLite (repeatable). int8: dynamic range; int8-full needs --representative-data.",
)
@click.option(
    "--representative-data",
    type=click.Path(file_okay=False),
    help="Prepared shards (train split) that calibrate int8-full.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Serving check (v1 loader + PredictRequest) and TFLite parity against the Keras model.",
)
def export(model_path, name, output_dir, tflite, representative_data, check) -> None:
    """Exports MODEL (a .keras file or a fine-tuning / train run folder) for TF Serving and LiteRT.

    Writes OUTPUT_DIR/NAME/<version>/ (a SavedModel, next integer version, never overwritten;
    signature serving_default: waveform float32 [batch, samples] -> mos [batch], embedding
    [batch, d]) and, with --tflite, OUTPUT_DIR/NAME/tflite/<version>/NAME-<quant>.tflite with a
    contract JSON beside each. Prints a summary as JSON.
    """
    from jsqa_tf.export import export_model

    summary = export_model(
        model_path,
        name,
        output_dir,
        tflite=tflite,
        representative_data_dir=representative_data,
        check=check,
        on_step=lambda text: click.echo(f"{text} ...", err=True),
    )
    _echo_json(summary)


def _open_backend(path: str, num_threads: int):
    from jsqa_tf.predict import open_backend

    return open_backend(path, num_threads)


main.add_command(
    predict_command(
        _open_backend,
        model_help="saved_models/NAME[/VERSION], FILE.tflite, a run folder or a .keras file.",
        default_model=os.path.join("runs", "demo"),
        no_model_hint=(
            "give --model a run folder, a .keras file, an export (saved_models/NAME) or a .tflite file, "
            "or train the demo model with `jsqa-tf train --config pipelines/demo.yaml` (it learns the demo "
            "corpus's formula labels: for trying jsqa-tf, not for judging real speech)"
        ),
    )
)


if __name__ == "__main__":
    main()
