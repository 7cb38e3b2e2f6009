"""The `jsqa-tf` command line: parses, calls library functions, prints.

Logs and progress bars go to stderr; machine-readable results (JSON) go to stdout.

One error boundary (`_Group.invoke`): whatever exception reaches it prints one line,
`error: <file>: <reason>`, and exits with status 1; `-vv` prints the traceback first. Errors
the user can act on are `JSQAError`s, OS errors (a full disk) and TensorFlow read errors
(turned into the shard at fault); anything else is reported as unexpected, pointing at -vv.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import traceback

import click

import jsqa_tf
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


def _echo_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2))


class _Failure(click.ClickException):
    """One line on stderr, `error: <message>`, exit status 1."""

    def show(self, file=None) -> None:
        click.echo(f"error: {self.message}", err=True)


def _one_line(text: str) -> str:
    return re.sub(r"\s*\n\s*", " ", str(text).strip())


def error_line(error: BaseException) -> str:
    """What the CLI says about an exception, in one line (without "error: ")."""
    if isinstance(error, JSQAError):
        return _one_line(error)
    from jsqa_tf.data.integrity import explain_read_error

    explained = explain_read_error(error)
    if explained is not None:
        return _one_line(explained)
    if isinstance(error, OSError) and error.strerror:
        where = error.filename or error.filename2
        return _one_line(f"{where}: {error.strerror}" if where else error.strerror)
    if isinstance(error, MemoryError):
        return "out of memory: use smaller batches or crops, or fewer workers (-j)"
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(error, tf.errors.OpError):
        first = ((error.message or "").strip().splitlines() or [type(error).__name__])[0]
        return _one_line(f"TensorFlow: {first} (-vv shows the traceback)")
    return _one_line(
        f"unexpected {type(error).__name__}: {error} (a bug in jsqa-tf? Run the same command with -vv "
        "for the traceback, and please report it)"
    )


class _Group(click.Group):
    """The CLI's error boundary: any exception from a command becomes one line and status 1."""

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
            raise _Failure(error_line(error)) from error


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


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(jsqa_tf.__version__, prog_name="jsqa-tf")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug and tracebacks).")
def main(verbose: int) -> None:
    """jsqa-tf: JSQA in Keras: JND pairs, contrastive pretraining of a waveform encoder, MOS
    fine-tuning and evaluation on labelled data, export for TF Serving and TFLite, and
    scoring new files (predict)."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    root = logging.getLogger()
    handler = _StderrHandler()
    handler.setFormatter(_Formatter(verbose))
    root.handlers = [h for h in root.handlers if not isinstance(h, _StderrHandler)] + [handler]
    root.setLevel(level)
    _quiet_tensorflow(verbose)


def _progress(length: int, label: str):
    return click.progressbar(
        length=length, label=label, file=sys.stderr, show_pos=True, item_show_func=lambda item: item
    )


@contextlib.contextmanager
def _progress_bars():
    """A `jsqa_tf.progress.Progress` for the library: one bar a task, on stderr, closed when
    its task is done, the next one starts, or the command ends."""
    bars = []

    def close() -> None:
        if bars:
            bars.pop().__exit__(None, None, None)

    def progress(label: str, length: int):
        close()
        bar = _progress(length, label)
        bar.__enter__()
        bars.append(bar)

        def update(n: int, item=None) -> None:
            if bars and bars[-1] is bar:
                bar.update(n, item)
                if bar.pos >= length:
                    close()

        return update

    try:
        yield progress
    finally:
        close()


def _given(options: dict, keys: dict | None = None) -> dict:
    """The options given (not None, not empty) as config keys (`keys[name]`, or the option's
    own name); tuples become lists."""
    return {
        (keys or {}).get(name, name): list(value) if isinstance(value, tuple) else value
        for name, value in options.items()
        if value not in (None, ())
    }


def _options(*options):
    """One decorator for several click options, in the order given."""

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


@main.command("demo-data")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--seed", default=0, show_default=True, help="Seed of the synthetic corpus.")
@click.option("--small", is_flag=True, help="A smaller corpus (seconds to make; for tests).")
def demo_data(directory: str, seed: int, small: bool) -> None:
    """Writes the built-in synthetic demo corpus to DIRECTORY.

    LibriSpeech-, CHiME-3- and NISQA-shaped trees; the MOS labels are computed from known
    degradations, not rated by people. Prints the corpus paths as JSON.
    """
    from jsqa_tf.data.demo import SMALL_DEMO, make_demo_corpus
    from jsqa_tf.progress import demo_callbacks

    logger.info("writing the demo corpus to %s", directory)
    with _progress_bars() as progress:
        paths = make_demo_corpus(directory, seed, **demo_callbacks(progress), **(SMALL_DEMO if small else {}))
    _echo_json(paths)


@main.command()
@click.argument("corpus", type=click.Choice(["librispeech", "chime3", "nisqa", "folder", "csv"]))
@click.argument("source", type=click.Path())
@click.argument("output_dir", type=click.Path(file_okay=False))
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="YAML with PrepareConfig fields; options given here override it.",
)
@click.option("--subset", "subsets", multiple=True, help="LibriSpeech subset to keep (repeatable).")
@click.option("--db", "databases", multiple=True, help="NISQA db to keep, e.g. NISQA_TRAIN_SIM.")
@click.option(
    "--chime3-channels",
    type=click.Choice(["first", "all"]),
    help="CHiME-3: channel 1 only (default) or every channel as its own noise.",
)
@click.option("--channel", type=int, help="Keep this channel (0-based) instead of averaging.")
@click.option("--val-fraction", type=float, help="Audio share held out by group (default 0).")
@click.option(
    "--val-db",
    "val_databases",
    multiple=True,
    help="NISQA db (or LibriSpeech subset) for the val split, e.g. NISQA_VAL_SIM.",
)
@click.option("--shard-seconds", type=float, help="Audio per shard in seconds (default 1800).")
@click.option("--min-seconds", type=float, help="Skip (and report) files shorter than this.")
@click.option("--sample-rate", type=int, help="Stored rate in Hz (default 16000).")
@click.option("--seed", type=int, help="Seed of the split and the shard order (default 0).")
@click.option("-j", "--num-workers", type=int, help="Decoding processes (default 2; 0: none).")
@click.option(
    "--mos-range",
    nargs=2,
    type=float,
    help="MOS scale LOW HIGH of a nisqa or csv corpus (default 1 5); a row outside it is an error.",
)
@click.option("--strict", is_flag=True, help="Fail if any file is missing or unreadable.")
def prepare(corpus, source, output_dir, config_path, strict, **options) -> None:
    """Converts a corpus into sharded TFRecords (16 kHz int16) plus manifest.json.

    \b
    CORPUS   SOURCE
    librispeech  the LibriSpeech folder or one subset folder (<speaker>/<chapter>/*.flac)
    chime3       the CHiME-3 backgrounds folder (*_<ENV>.CH<k>.wav) or one above it
    nisqa        NISQA_corpus_file.csv or <DB>/<DB>_file.csv
    folder       any folder of audio files
    csv          a CSV with columns path, mos[, condition]; paths relative to the CSV

    Resumable: rerun the same command after an interruption and finished shards are kept.
    Prints a summary of the manifest as JSON.
    """
    from jsqa_tf.atomic import check_writable
    from jsqa_tf.config import PrepareConfig, from_dict, load_yaml
    from jsqa_tf.data.prepare import list_corpus
    from jsqa_tf.data.prepare import prepare as run_prepare
    from jsqa_tf.progress import prepare_callbacks

    check_writable(os.path.join(output_dir, "manifest.json"))
    settings = load_yaml(config_path) if config_path else {}
    settings.update(corpus=corpus, source=os.path.abspath(source))
    settings.update(_given(options))  # every option is a PrepareConfig field
    config = from_dict(PrepareConfig, settings, where=config_path or "prepare")

    listing = list_corpus(config)
    if strict and listing.problems:
        first = listing.problems[0]
        raise JSQAError(
            f"--strict: {len(listing.problems)} problem file(s), e.g. {first.path}: {first.reason} "
            "(without --strict they are skipped and listed)"
        )
    with _progress_bars() as progress:
        callbacks = prepare_callbacks(progress, "writing {num_shards} shard(s)")
        manifest = run_prepare(config, output_dir, corpus=listing, **callbacks)

    if strict and manifest["num_problems"]:
        raise JSQAError(
            f"--strict: {manifest['num_problems']} file(s) could not be decoded; "
            f"the shards are written and the files listed in {output_dir}/manifest.json"
        )
    if manifest["num_problems"]:
        examples = "".join(f"\n  {p['path']}: {p['reason']}" for p in manifest["problems"][:3])
        click.echo(
            f"warning: {manifest['num_problems']} file(s) skipped, all listed in "
            f"{os.path.join(output_dir, 'manifest.json')}; e.g.:{examples}",
            err=True,
        )
    summary = {key: manifest[key] for key in ("corpus", "num_records", "total_seconds", "num_problems")}
    summary["output_dir"] = os.path.abspath(output_dir)
    summary["splits"] = {
        name: {k: split[k] for k in ("num_records", "total_seconds", "num_silent")}
        | {"num_shards": len(split["shards"])}
        for name, split in manifest["splits"].items()
    }
    _echo_json(summary)


@main.command()
@click.argument("folders", metavar="SHARDS...", nargs=-1, required=True, type=click.Path())
@click.option("--records", is_flag=True, help="Also read every record (TFRecord CRCs) and count them.")
@click.option("--quick", is_flag=True, help="Sizes only (what every reader checks when it opens shards).")
def check(folders, records, quick) -> None:
    """Checks prepared shards against their manifest.json: present, byte size, SHA-256.

    SHARDS: folders written by `jsqa-tf prepare`. Shards of a jsqa-tf that recorded no
    checksum have every record read instead. Prints a JSON report; with a damaged shard,
    names each on stderr and exits with status 1.
    """
    from jsqa_tf.data.integrity import verify_shards

    reports = [verify_shards(folder, checksum=not quick, records=records) for folder in folders]
    _echo_json(reports)
    problems = [problem for report in reports for problem in report["problems"]]
    for problem in problems:
        click.echo(f"damaged: {problem['file']}: {problem['reason']}", err=True)
    if problems:
        total = sum(report["num_shards"] for report in reports)
        raise JSQAError(
            f"{len(problems)} of {total} shard(s) damaged, e.g. {problems[0]['file']}: copy them again, "
            "or prepare the corpus again"
        )
    click.echo(f"{sum(r['num_shards'] for r in reports)} shard(s) intact", err=True)


_PAIR_KEYS = {
    "snr_range": "snr_range_db",
    "snr_window": "snr_window_db",
    "snr_window_low": "snr_window_low_db",
    "max_abs_delta": "max_abs_delta_db",
}
"""The SNR options' `PairSampling` fields."""

_snr_options = _options(
    click.option("--snr-range", nargs=2, type=float, help="Range the SNR window lies in, dB (default -3 9)."),
    click.option("--snr-window", type=float, help="Width of the window both SNRs come from, dB (default 6)."),
    click.option("--snr-window-low", type=float, help="Fix the window's low end (default: random per pair)."),
    click.option(
        "--max-abs-delta",
        type=float,
        help="Cap on |ΔSNR|, dB, at most the window (default: none; see `jnd curve --target-same`).",
    ),
)


@main.command()
@click.argument("clean_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("noise_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("output_dir", type=click.Path(file_okay=False))
@click.option("-n", "--num-pairs", default=64, show_default=True, help="Pairs to draw.")
@click.option("--split", default="train", show_default=True, help="Split of both prepared folders.")
@click.option("--crop-seconds", type=float, help="Length of each pair (default 4 s).")
@_snr_options
@click.option(
    "--snr-placement",
    type=click.Choice(["uniform_window", "uniform_snr"]),
    help="Where the pairs' SNRs lie in the range: a uniformly placed window (default) or "
    "uniform single SNRs (README, jsqa-tf pairs).",
)
@click.option("--seed", type=int, help="Seed of crops, excerpts and SNRs (default 0).")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="YAML with PairConfig fields (a pretraining file's data.pairs section is one).",
)
@click.option("--audio/--no-audio", default=True, show_default=True, help="Write each pair's two WAV files.")
@click.option(
    "--tensorboard",
    "tensorboard_dir",
    type=click.Path(file_okay=False),
    help="Also log example pairs (audio) and the |ΔSNR| histogram here.",
)
def pairs(
    clean_dir, noise_dir, output_dir, num_pairs, split, config_path, audio, tensorboard_dir, **options
) -> None:
    """Draws JND pairs from prepared CLEAN_DIR speech and NOISE_DIR noise into OUTPUT_DIR.

    Each pair: one clean crop and one noise excerpt mixed at two SNRs drawn from one 6 dB
    window inside [-3, 9] dB (paper defaults; --max-abs-delta caps |ΔSNR|; --snr-placement
    chooses where the SNRs lie in the range). Writes pairs.csv, audio/*.wav, summary.json, the
    |ΔSNR| histogram (abs_delta_snr_histogram.png) and the single-SNR and |ΔSNR| distributions
    (snr_distributions.png); prints the summary as JSON.
    """
    from jsqa_tf.config import PairConfig, from_dict, load_yaml
    from jsqa_tf.data.pairs import write_pairs
    from jsqa_tf.data.prepare import load_manifest

    settings = load_yaml(config_path) if config_path else {}
    settings.update(clean_dir=os.path.abspath(clean_dir), noise_dir=os.path.abspath(noise_dir), split=split)
    # Pairs are drawn at the rate the speech was prepared at (the noise must match it).
    settings.setdefault("sample_rate", load_manifest(clean_dir).get("sample_rate", 16_000))
    config = from_dict(PairConfig, settings | _given(options, _PAIR_KEYS), where=config_path or "pairs")
    with _progress_bars() as progress:
        update = progress("drawing pairs", num_pairs)
        summary = write_pairs(
            config,
            output_dir,
            num_pairs,
            write_audio=audio,
            tensorboard_dir=tensorboard_dir,
            on_progress=update,
        )
    click.echo(
        f"mean |ΔSNR| {summary['mean_abs_delta_db']:.3f} dB over {summary['num_pairs']} pairs "
        f"(expected {summary['expected_mean_abs_delta_db']:.3f})",
        err=True,
    )
    _echo_json(
        {k: v for k, v in summary.items() if k != "config"} | {"output_dir": os.path.abspath(output_dir)}
    )


@main.group()
def jnd() -> None:
    """The JND classifier (PESQ SVM) and the label-only JND curve."""


_KINDS_HELP = "Kinds of degradation to use, comma-separated: additive (noise types; gain-named), mp3, reverb."
_WORKERS_OPTION = click.option(
    "-j", "--num-workers", default=2, show_default=True, help="Feature processes (0: none)."
)


@jnd.command("fit")
@click.argument("pair_list", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--audio-root",
    type=click.Path(exists=True, file_okay=False),
    help="Folder the list's paths are relative to (default: the list's folder).",
)
@click.option(
    "-o",
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to write the classifier (JSON).",
)
@click.option(
    "--features",
    "features_text",
    default="pesq",
    show_default=True,
    help="Features of a pair: pesq (the paper's final SVM), sisdr, or pesq,sisdr.",
)
@click.option("--kinds", "kinds_text", default="additive", show_default=True, help=_KINDS_HELP)
@click.option(
    "--reference",
    type=click.Choice(["first", "second", "by-name"]),
    default="first",
    show_default=True,
    help="Reference of each pair: the list's first file (CDPAM: the less degraded), the second, "
    "or by name (lower noise gain, higher bitrate; reverb keeps the list's order).",
)
@click.option("--c", "c_value", default=1.0, show_default=True, help="SVM regularisation C (> 0).")
@click.option("--folds", default=5, show_default=True, help="Cross-validation folds, grouped by recording.")
@click.option("--seed", default=0, show_default=True)
@_WORKERS_OPTION
def jnd_fit(pair_list, out_path, features_text, kinds_text, c_value, **options) -> None:
    """Trains the JND classifier on human-labelled pairs and prints its CV accuracy.

    PAIR_LIST: CDPAM's `ref<TAB>per<TAB>label[<TAB>type]` list (0 = same, 1 = different) or a
    CSV with columns ref, deg, label[, type]. Cross-validation keeps each source recording (the
    name after the gain) in one fold.
    """
    from jsqa_tf.jnd import fit_from_list, parse_feature_names, parse_kinds

    feature_names, kinds = parse_feature_names(features_text), parse_kinds(kinds_text)
    with _progress_bars() as progress:
        classifier = fit_from_list(
            pair_list,
            out_path,
            feature_names=feature_names,
            kinds=kinds,
            C=c_value,
            progress=progress,
            **options,
        )
    _echo_json(classifier.info | {"classifier": os.path.abspath(out_path)})


@jnd.command("validate")
@click.argument("classifier_path", type=click.Path(exists=True, dir_okay=False))
@click.argument("pairs_dir", type=click.Path(exists=True, file_okay=False))
@_WORKERS_OPTION
def jnd_validate(classifier_path, pairs_dir, num_workers) -> None:
    """Scores pairs written by `jsqa-tf pairs` and reports the share within JND (95% CI)."""
    from jsqa_tf.jnd import JNDClassifier, validate_pairs

    classifier = JNDClassifier.load(classifier_path)
    with _progress_bars() as progress:
        _echo_json(validate_pairs(classifier, pairs_dir, num_workers=num_workers, progress=progress))


@jnd.command("curve")
@click.argument("pair_list", type=click.Path(exists=True, dir_okay=False))
@_snr_options
@click.option("--kinds", "kinds_text", default="additive", show_default=True, help=_KINDS_HELP)
@click.option("--bin-width", default=1.0, show_default=True, help="Width of the |ΔSNR| bins, dB.")
@click.option(
    "--drop", default=0.1, show_default=True, help="Threshold: where P(same) is this far below the ceiling."
)
@click.option("--fit-max-db", type=float, help="Fit only pairs with |ΔSNR| <= this (bins show all).")
@click.option(
    "--target-same",
    "targets",
    type=float,
    multiple=True,
    help="Find the widest window / |ΔSNR| cap whose expected share judged same is >= this (repeatable).",
)
@click.option("--bootstrap", default=500, show_default=True, help="Bootstrap resamples for intervals (>= 1).")
@click.option("--seed", default=0, show_default=True)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write the curve as a PNG here.")
def jnd_curve(
    pair_list, kinds_text, bin_width, drop, fit_max_db, targets, bootstrap, seed, plot_path, **options
) -> None:
    """P(same) against the size of the difference, from a CDPAM list's labels alone (no audio).

    \b
    Additive noise (the default): |ΔSNR| = |20 log10(gain ratio)| of two files of one source,
    binned (Wilson 95% intervals; identical files apart) and fitted with a logistic that has a
    free floor and ceiling (maximum likelihood, bootstrap intervals), pooled and per noise type:
    thresholds (half-way, --drop below the ceiling, P(same) = 0.5), goodness of fit, and what the
    curve says of the configured pair window (--target-same: the window that keeps a share).
    mp3 (octaves of bitrate) and reverb (parameter distance) on request: --kinds additive,mp3,reverb.
    """
    from jsqa_tf.config import PairConfig, from_dict
    from jsqa_tf.jnd import parse_kinds
    from jsqa_tf.jnd_curve import check_curve_settings, curve_from_list, summary_lines

    kinds = parse_kinds(kinds_text)
    check_curve_settings(bin_width_db=bin_width, drop=drop, num_bootstrap=bootstrap, targets=targets)
    if fit_max_db is not None and not fit_max_db > 0:
        raise JSQAError(f"--fit-max-db must be > 0, got {fit_max_db}")
    settings = {"clean_dir": "", "noise_dir": ""} | _given(options, _PAIR_KEYS)
    report = curve_from_list(
        pair_list,
        kinds=kinds,
        pair_config=from_dict(PairConfig, settings, where="jnd curve"),
        bin_width_db=bin_width,
        drop=drop,
        num_bootstrap=bootstrap,
        seed=seed,
        targets=targets,
        fit_max_db=fit_max_db,
        plot_path=plot_path,
    )
    for line in [f"warning: {warning}" for warning in report["warnings"]] + summary_lines(report):
        click.echo(line, err=True)
    _echo_json(report)


def _assignments(assignments) -> dict:
    """--set KEY=VALUE options as {dotted key: YAML value}."""
    import yaml

    overrides = {}
    for assignment in assignments:
        key, separator, value = assignment.partition("=")
        if not separator or not key.strip():
            raise JSQAError(f"--set {assignment!r}: expected KEY=VALUE")
        try:
            overrides[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            raise JSQAError(f"--set {assignment!r}: the value is not valid YAML ({error})")
    return overrides


_SET_OPTION = click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="Any config value, e.g. --set training.learning_rate=3e-4 (repeatable).",
)


_STAGE_KEYS = {
    "run_dir": "run_dir",
    "clean_dir": "data.clean_dir",
    "noise_dir": "data.noise_dir",
    "data_dir": "data.data_dir",
    "mos_dir": "data.mos_dir",
    "encoder": "model.encoder",
    "teacher": "model.teacher",
    "epochs": "training.epochs",
    "steps_per_epoch": "training.steps_per_epoch",
    "precision": "training.precision",
    "jit_compile": "training.jit_compile",
    "strategy": "training.strategy",
}
"""The training commands' options as the dotted keys of their config files."""

_run_options = _options(
    click.option("--run-dir", help="Run folder (default: the config's run_dir)."),
    click.option("--precision", type=click.Choice(["float32", "mixed_float16", "mixed_bfloat16"])),
    click.option("--jit-compile/--no-jit-compile", default=None, help="Compile the step with XLA."),
    click.option(
        "--strategy",
        type=click.Choice(["default", "mirrored", "multi-worker"]),
        help="default: one device; mirrored: all local GPUs; multi-worker: TF_CONFIG cluster.",
    ),
    _SET_OPTION,
    click.option("--resume", is_flag=True, help="Continue an interrupted run from its last checkpoint."),
)
"""The options of every training command (pretrain, finetune, distill, train)."""


def _config_option(help_text: str):
    return click.option(
        "--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False), help=help_text
    )


def _run_stage(stage, cls, config_path: str, assignments, resume: bool, options: dict) -> None:
    """Runs a training stage on its config file, overridden by the options given (a data
    folder replaces the demo data; steps per epoch replace an epoch's hours of audio), then
    by --set; prints the summary without the history."""
    from jsqa_tf.config import apply_overrides, from_dict, load_yaml

    overrides = _given(options, _STAGE_KEYS)
    if any(key.startswith("data.") for key in overrides):
        overrides["data.demo_dir"] = None
    if "training.steps_per_epoch" in overrides:  # pretraining's option wins over its file's epoch_hours
        overrides["training.epoch_hours"] = None
    overrides.update(_assignments(assignments))
    config = from_dict(cls, apply_overrides(load_yaml(config_path), overrides), where=config_path)
    if not config.run_dir:
        raise JSQAError(f"{config_path}: run_dir is not set (--run-dir)")
    with _progress_bars() as progress:
        summary = stage(config, resume=resume, progress=progress)
    _echo_json({k: v for k, v in summary.items() if k != "history"})


@main.command()
@_config_option("Pipeline YAML, e.g. pipelines/pretrain_demo.yaml.")
@click.option("--clean-dir", type=click.Path(file_okay=False), help="Prepared clean speech (train + val).")
@click.option("--noise-dir", type=click.Path(file_okay=False), help="Prepared noise (train + val).")
@click.option("--epochs", type=int, help="Training epochs.")
@click.option("--steps-per-epoch", type=int, help="Batches per epoch (instead of the file's epoch_hours).")
@_run_options
def pretrain(config_path, assignments, resume, **options) -> None:
    """Contrastive pretraining of the encoder on JND pairs (NT-Xent).

    Writes a run folder (config.yaml, checkpoints/, logs/ for TensorBoard, history.csv,
    encoder.keras = the last epoch, encoder-best.keras = the lowest validation loss,
    summary.json); prints the summary as JSON. Ctrl-C, then the same command with --resume,
    continues from the last finished epoch. The logged pair accuracy shows that the two views
    of a pair are told apart from the others (recognising the utterance or the noise is
    enough), not that the encoder learned anything perceptual (README).
    """
    from jsqa_tf.config import PretrainConfig
    from jsqa_tf.training import pretrain as run_pretrain

    _run_stage(run_pretrain, PretrainConfig, config_path, assignments, resume, options)


@main.command()
@_config_option("YAML with FinetuneConfig sections (run_dir, data, model, training).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Prepared MOS shards (train + val).")
@click.option("--encoder", help="'scratch', a pretraining run folder, or an encoder .keras file.")
@click.option("--epochs", type=int, help="Training epochs.")
@_run_options
def finetune(config_path, assignments, resume, **options) -> None:
    """MOS fine-tuning of a (pretrained) encoder with the 4-layer regression head.

    Writes a run folder (config.yaml, checkpoints/, logs/ for TensorBoard, history.csv,
    model.keras = the epoch with the lowest validation RMSE, model-last.keras,
    summary.json); prints the summary as JSON. Ctrl-C, then the same command with --resume,
    continues from the last finished epoch.
    """
    from jsqa_tf.config import FinetuneConfig
    from jsqa_tf.training import finetune as run_finetune

    _run_stage(run_finetune, FinetuneConfig, config_path, assignments, resume, options)


@main.command()
@_config_option("YAML with DistillConfig sections (run_dir, data, model, training).")
@click.option("--teacher", help="The fine-tuned teacher: a run folder or a .keras file.")
@click.option("--clean-dir", type=click.Path(file_okay=False), help="Prepared clean speech (train split).")
@click.option("--noise-dir", type=click.Path(file_okay=False), help="Prepared noise (train split).")
@click.option("--mos-dir", type=click.Path(file_okay=False), help="Prepared MOS corpus (train, val).")
@click.option("--epochs", type=int, help="Training epochs.")
@_run_options
def distill(config_path, assignments, resume, **options) -> None:
    """Trains a small student to give a fine-tuned teacher's MOS, on unlabelled audio.

    Writes a run folder (config.yaml, checkpoints/, logs/ for TensorBoard, history.csv,
    model.keras = the student of the epoch closest to the teacher on the val files,
    model-last.keras, summary.json); prints the summary as JSON. The student is a MOS model
    like any other: `evaluate`, `export` and `predict` take the run folder. Ctrl-C, then the
    same command with --resume, continues from the last finished epoch.
    """
    from jsqa_tf.config import DistillConfig
    from jsqa_tf.training.distill import distill as run_distill

    _run_stage(run_distill, DistillConfig, config_path, assignments, resume, options)


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
def evaluate(
    model_path, data, out_dir, split, databases, window_seconds, batch_size, bootstrap, seed, strict
) -> None:
    """Scores MODEL (a .keras file or a fine-tuning / train run folder) on labelled DATA.

    DATA: prepared shards (`jsqa-tf prepare nisqa|csv`) or a CSV with columns path, mos[,
    condition] (paths relative to the CSV). Writes metrics.json (PCC, SRCC, RMSE, MAE, RMSE
    after P.1401's first- and third-order mappings, per file and per condition, bootstrap
    95% intervals), predictions.csv and scatter.png; prints a summary, and the output
    folder as JSON.
    """
    from jsqa_tf.evaluation import evaluate as run_evaluate
    from jsqa_tf.evaluation import summary_text
    from jsqa_tf.models import find_model_file

    if window_seconds <= 0 or batch_size < 1 or bootstrap < 0:
        raise click.UsageError("--window-seconds must be > 0, --batch-size >= 1, --bootstrap >= 0")
    if not os.path.exists(data):
        raise JSQAError(f"{data}: not found (prepared shards or a CSV)")
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
@_config_option("Pipeline YAML: pipelines/demo.yaml, paper.yaml, label_efficiency.yaml.")
@_run_options
def train(config_path, run_dir, assignments, resume, **run_settings) -> None:
    """The whole of JSQA: pretraining, fine-tuning and evaluation (and a comparison of runs).

    Writes pretrain/, finetune/ and evaluate/ into the run folder (per run when the file
    has several, with compare.md; student/ with a distill section, saved_models/ with an
    export section). --resume continues whichever stage was interrupted and
    skips the finished ones. --precision, --jit-compile and --strategy apply to every training
    stage; --set takes dotted keys of the file (e.g. finetune.training.epochs=5). Prints
    each run's headline figures as JSON.
    """
    from jsqa_tf.config import apply_overrides, load_yaml
    from jsqa_tf.training import train as run_train
    from jsqa_tf.training.pipeline import with_run_settings

    raw = with_run_settings(load_yaml(config_path), _given(run_settings), config_path)
    raw = apply_overrides(raw, _given({"run_dir": run_dir}) | _assignments(assignments))
    with _progress_bars() as progress:
        _echo_json(run_train(raw, resume=resume, where=config_path, progress=progress))


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


class _UsageError(click.ClickException):
    """One line and exit status 2: the command cannot start (bad option, model or output)."""

    exit_code = 2


@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option(
    "--model",
    "model_path",
    default=os.path.join("runs", "demo"),
    show_default=True,
    help="saved_models/NAME[/VERSION], FILE.tflite, a run folder or a .keras file.",
)
@click.option(
    "--csv", "csv_lists", multiple=True, type=click.Path(), help="CSV list of files (a `path` column)."
)
@click.option("--recursive", is_flag=True, help="Also take audio files from subfolders of folders given.")
@click.option(
    "--format", "output_format", type=click.Choice(["csv", "json", "jsonl"]), default="csv", show_default=True
)
@click.option("--output", type=click.Path(dir_okay=False), help="Write the results here (default: stdout).")
@click.option("--batch-size", default="8", show_default=True, help="Windows scored at once.")
@click.option("--window-seconds", default="10", show_default=True, help="Longer files are scored in windows.")
@click.option("--per-window", is_flag=True, help="Also give each window's MOS and start time.")
@click.option("--threads", default="2", show_default=True, help="CPU threads of the TFLite interpreter.")
def predict(
    paths,
    model_path,
    csv_lists,
    recursive,
    output_format,
    output,
    batch_size,
    window_seconds,
    per_window,
    threads,
) -> None:
    """MOS of audio files: PATHS are files or folders (any rate, channels, WAV/FLAC/OGG).

    A file longer than --window-seconds is scored in windows of that length and averaged. Each
    file gets a row (path, mos, seconds, num_windows, error), streamed as it is done; a file that
    fails gets its error and the run goes on. Exit status: 0 all scored, 1 some failed, 2 the
    command could not start. With a .tflite model TensorFlow is not imported.
    """
    import math

    from jsqa_tf.export import MIN_SECONDS
    from jsqa_tf.predict import ResultWriter, collect_inputs, open_backend
    from jsqa_tf.predict import predict as run_predict

    batch_size = _number("--batch-size", batch_size, int, 1)
    threads = _number("--threads", threads, int, 1)
    window_seconds = _number("--window-seconds", window_seconds, float, MIN_SECONDS)
    if not math.isfinite(window_seconds):
        raise _UsageError(f"--window-seconds {window_seconds}: must be a finite number of seconds")
    if output:
        folder = os.path.dirname(os.path.abspath(output))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise _UsageError(f"{output}: cannot write here (no such folder, or not writable)")
    try:
        files = collect_inputs(paths, csv_lists, recursive)
        if not files:
            raise _UsageError("no audio files given (PATH..., folders with audio, or --csv LIST)")
        backend = open_backend(model_path, num_threads=threads)
        stream = open(output, "w", encoding="utf-8", newline="") if output else sys.stdout
    except JSQAError as error:
        raise _UsageError(str(error)) from error
    except OSError as error:
        raise _UsageError(f"{output}: cannot write ({error.strerror})") from error

    logger.info("scoring %d file(s) with %s (%s)", len(files), backend.path, backend.kind)
    writer = ResultWriter(stream, output_format, per_window)
    try:
        with _progress(len(files), "scoring") as bar:

            def on_result(result) -> None:
                writer.write(result)
                bar.update(1)

            scored, failed = run_predict(
                backend, files, window_seconds=window_seconds, batch_size=batch_size, on_result=on_result
            )
        writer.close()
    finally:
        if stream is not sys.stdout:
            stream.close()
    click.echo(f"{scored} file(s) scored, {failed} failed", err=True)
    if failed:
        sys.exit(1)


def _number(option: str, text: str, kind: type, minimum: float):
    try:
        value = kind(text)
    except ValueError:
        raise _UsageError(f"{option} {text}: not a{'n integer' if kind is int else ' number'}") from None
    if not value >= minimum:
        raise _UsageError(f"{option} {text}: must be at least {minimum:g}")
    return value
