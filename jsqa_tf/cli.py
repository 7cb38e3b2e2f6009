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
from jsqa_lite.cli import predict_command
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


@contextlib.contextmanager
def _progress_bars():
    """`progress(label, length) -> update(n)` for the library (one bar a task, on stderr)."""
    current = []

    def progress(label: str, length: int):
        if current:
            current.pop().__exit__(None, None, None)
        bar = _progress(length, label)
        bar.__enter__()
        current.append(bar)
        return bar.update

    try:
        yield progress
    finally:
        if current:
            current.pop().__exit__(None, None, None)


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

    sizes = SMALL_DEMO if small else {}
    logger.info("writing the demo corpus to %s", directory)
    with _progress_bars() as progress:
        update = []
        paths = make_demo_corpus(
            directory,
            seed,
            on_start=lambda steps: update.append(progress("writing the demo corpus", steps)),
            on_progress=lambda n: update[0](n),
            **sizes,
        )
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

    check_writable(os.path.join(output_dir, "manifest.json"))
    settings = load_yaml(config_path) if config_path else {}
    settings.update(corpus=corpus, source=os.path.abspath(source))
    for name, value in options.items():  # every option is a PrepareConfig field; unset ones are None
        if value not in (None, ()):
            settings[name] = list(value) if isinstance(value, tuple) else value
    config = from_dict(PrepareConfig, settings, where=config_path or "prepare")

    listing = list_corpus(config)
    if strict and listing.problems:
        first = listing.problems[0]
        raise JSQAError(
            f"--strict: {len(listing.problems)} problem file(s), e.g. {first.path}: {first.reason} "
            "(without --strict they are skipped and listed)"
        )

    bar = None

    def on_start(seconds: float, num_shards: int) -> None:
        nonlocal bar
        if num_shards:
            bar = click.progressbar(
                length=max(1, round(seconds)),
                label=f"writing {num_shards} shard(s)",
                file=sys.stderr,
                show_pos=True,
                item_show_func=lambda name: name,
            )
            bar.__enter__()

    def on_shard(stats: dict) -> None:
        if bar is not None:
            bar.update(round(stats["seconds"]), stats["name"])

    try:
        manifest = run_prepare(config, output_dir, corpus=listing, on_start=on_start, on_shard=on_shard)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)

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


def _progress(length: int, label: str):
    return click.progressbar(length=length, label=label, file=sys.stderr, show_pos=True)


def _pair_settings(settings: dict, snr_range, snr_window, snr_window_low, max_abs_delta) -> dict:
    if snr_range:
        settings["snr_range_db"] = list(snr_range)
    if snr_window is not None:
        settings["snr_window_db"] = snr_window
    if snr_window_low is not None:
        settings["snr_window_low_db"] = snr_window_low
    if max_abs_delta is not None:
        settings["max_abs_delta_db"] = max_abs_delta
    return settings


_SNR_OPTIONS = [
    click.option("--snr-range", nargs=2, type=float, help="Range the SNR window lies in, dB (default -3 9)."),
    click.option("--snr-window", type=float, help="Width of the window both SNRs come from, dB (default 6)."),
    click.option("--snr-window-low", type=float, help="Fix the window's low end (default: random per pair)."),
    click.option(
        "--max-abs-delta",
        type=float,
        help="Cap on |ΔSNR|, dB, at most the window (default: none; see `jnd curve --target-same`).",
    ),
]


def _snr_options(command):
    for option in reversed(_SNR_OPTIONS):
        command = option(command)
    return command


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
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML with PairConfig fields.")
@click.option("--audio/--no-audio", default=True, show_default=True, help="Write each pair's two WAV files.")
@click.option(
    "--tensorboard",
    "tensorboard_dir",
    type=click.Path(file_okay=False),
    help="Also log example pairs (audio) and the |ΔSNR| histogram here.",
)
def pairs(
    clean_dir,
    noise_dir,
    output_dir,
    num_pairs,
    split,
    crop_seconds,
    snr_range,
    snr_window,
    snr_window_low,
    max_abs_delta,
    snr_placement,
    seed,
    config_path,
    audio,
    tensorboard_dir,
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
    if crop_seconds is not None:
        settings["crop_seconds"] = crop_seconds
    if seed is not None:
        settings["seed"] = seed
    if snr_placement is not None:
        settings["snr_placement"] = snr_placement
    config = from_dict(
        PairConfig,
        _pair_settings(settings, snr_range, snr_window, snr_window_low, max_abs_delta),
        where=config_path or "pairs",
    )
    with _progress(num_pairs, "drawing pairs") as bar:
        summary = write_pairs(
            config,
            output_dir,
            num_pairs,
            write_audio=audio,
            tensorboard_dir=tensorboard_dir,
            on_progress=bar.update,
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


def _report_skipped(reasons: list[str], what: str) -> int:
    failed = [r for r in reasons if r]
    if failed:
        examples = "".join(f"\n  {r}" for r in failed[:3])
        click.echo(f"warning: {len(failed)} {what} skipped; e.g.:{examples}", err=True)
    return len(failed)


def _pair_name(pair) -> str:
    """A list's pair as a user finds it: its line and its two files."""
    return f"line {pair.line_number} ({os.path.basename(pair.first)} / {os.path.basename(pair.second)})"


_KINDS_HELP = "Kinds of degradation to use, comma-separated: additive (noise types; gain-named), mp3, reverb."


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
@click.option("-j", "--num-workers", default=2, show_default=True, help="Feature processes (0: none).")
def jnd_fit(
    pair_list, audio_root, out_path, features_text, kinds_text, reference, c_value, folds, seed, num_workers
) -> None:
    """Trains the JND classifier on human-labelled pairs and prints its CV accuracy.

    PAIR_LIST: CDPAM's `ref<TAB>per<TAB>label[<TAB>type]` list (0 = same, 1 = different) or a
    CSV with columns ref, deg, label[, type]. Cross-validation keeps each source recording (the
    name after the gain) in one fold.
    """
    import numpy as np

    from jsqa_tf.atomic import check_writable
    from jsqa_tf.jnd import (
        JNDClassifier,
        check_fit_settings,
        extract_features,
        parse_feature_names,
        parse_kinds,
        read_labelled_pairs,
        reference_and_degraded,
    )

    feature_names = parse_feature_names(features_text)
    kinds = parse_kinds(kinds_text)
    if os.path.exists(out_path):
        raise JSQAError(f"{out_path}: exists already; choose another name (nothing was overwritten)")
    check_writable(out_path)  # now, not after the features are computed
    listed = read_labelled_pairs(pair_list, audio_root)
    labelled = [p for p in listed if p.kind in kinds]
    if not labelled:
        raise JSQAError(f"{pair_list}: no pairs of kind(s) {', '.join(kinds)}")
    labels = np.array([p.label for p in labelled])
    groups = [p.source for p in labelled]
    check_fit_settings(labels, groups, C=c_value, folds=folds)
    with _progress(len(labelled), " + ".join(feature_names)) as bar:
        features, ok, reasons = extract_features(
            [reference_and_degraded(p, reference) for p in labelled],
            names=feature_names,
            num_workers=num_workers,
            on_progress=bar.update,
        )
    reasons = [reason and f"{_pair_name(p)}: {reason}" for p, reason in zip(labelled, reasons, strict=True)]
    skipped = _report_skipped(reasons, "pair(s) could not be scored and were")
    if skipped == len(labelled):
        raise JSQAError(f"{pair_list}: no pair could be scored; e.g. {reasons[0]}")
    classifier = JNDClassifier.fit(
        features[ok],
        labels[ok],
        feature_names=feature_names,
        groups=[g for g, keep in zip(groups, ok, strict=True) if keep],
        C=c_value,
        seed=seed,
        folds=folds,
    )
    classifier.info.update(
        num_skipped=skipped,
        num_not_used=len(listed) - len(labelled),
        kinds=list(kinds),
        reference=reference,
        trained_on=os.path.abspath(pair_list),
    )
    classifier.save(out_path)
    _echo_json(classifier.info | {"classifier": os.path.abspath(out_path)})


@jnd.command("validate")
@click.argument("classifier_path", type=click.Path(exists=True, dir_okay=False))
@click.argument("pairs_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-j", "--num-workers", default=2, show_default=True, help="Feature processes (0: none).")
def jnd_validate(classifier_path, pairs_dir, num_workers) -> None:
    """Scores pairs written by `jsqa-tf pairs` and reports the share within JND (95% CI)."""
    import csv

    import numpy as np

    from jsqa_tf.data.pairs import PAIRS_CSV
    from jsqa_tf.jnd import FEATURE_NAMES, SAME, JNDClassifier, extract_features, wilson_interval

    classifier = JNDClassifier.load(classifier_path)
    csv_path = os.path.join(pairs_dir, PAIRS_CSV)
    if not os.path.exists(csv_path):
        raise JSQAError(f"{pairs_dir}: no {PAIRS_CSV}; write pairs with `jsqa-tf pairs` first")
    with open(csv_path, newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    if not rows or not rows[0].get("file_a"):
        raise JSQAError(f"{csv_path}: the pairs were written without audio (--no-audio)")
    files = []
    for row in rows:
        a, b = (os.path.join(pairs_dir, row[key]) for key in ("file_a", "file_b"))
        files.append((a, b) if float(row["snr_a_db"]) >= float(row["snr_b_db"]) else (b, a))
    with _progress(len(files), "PESQ + SI-SDR") as bar:
        features, ok, reasons = extract_features(files, num_workers=num_workers, on_progress=bar.update)
    reasons = [reason and f"pair {row['pair']}: {reason}" for row, reason in zip(rows, reasons, strict=True)]
    skipped = _report_skipped(reasons, "pair(s) could not be scored and were")
    scored = int(ok.sum())
    if scored == 0:
        raise JSQAError(f"{pairs_dir}: no pair could be scored")
    columns = [FEATURE_NAMES.index(name) for name in classifier.feature_names]
    same = int(np.sum(classifier.predict(features[ok][:, columns]) == SAME))
    low, high = wilson_interval(same, scored)
    _echo_json(
        {
            "num_pairs": len(rows),
            "num_scored": scored,
            "num_skipped": skipped,
            "features": list(classifier.feature_names),
            "num_within_jnd": same,
            "share_within_jnd": same / scored,
            "share_within_jnd_ci95": [low, high],
            "mean_pesq_wb": float(np.mean(features[ok, 0])),
            "mean_si_sdr_db": float(np.mean(features[ok, 1])),
        }
    )


def _threshold_text(entry: dict, unit: str) -> str:
    if entry["x"] is None:
        return "undefined"
    interval = entry.get("ci95")
    ci = f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else ""
    return f"{entry['x']:.2f}{ci} {unit}"


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
    pair_list,
    snr_range,
    snr_window,
    snr_window_low,
    max_abs_delta,
    kinds_text,
    bin_width,
    drop,
    fit_max_db,
    targets,
    bootstrap,
    seed,
    plot_path,
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
    from jsqa_tf.jnd import parse_kinds, read_cdpam_list
    from jsqa_tf.jnd_curve import check_curve_settings, curve_report

    kinds = parse_kinds(kinds_text)
    check_curve_settings(bin_width_db=bin_width, drop=drop, num_bootstrap=bootstrap, targets=targets)
    if plot_path:
        from jsqa_tf.atomic import check_writable

        check_writable(plot_path)
    if fit_max_db is not None and not fit_max_db > 0:
        raise JSQAError(f"--fit-max-db must be > 0, got {fit_max_db}")
    settings = _pair_settings({}, snr_range, snr_window, snr_window_low, max_abs_delta)
    pair_config = from_dict(PairConfig, {"clean_dir": "", "noise_dir": "", **settings}, where="jnd curve")
    report, curves = curve_report(
        read_cdpam_list(pair_list),
        kinds=kinds,
        pair_config=pair_config,
        bin_width_db=bin_width,
        drop=drop,
        num_bootstrap=bootstrap,
        seed=seed,
        targets=targets,
        fit_max_db=fit_max_db,
    )
    report["list"] = os.path.abspath(pair_list)
    if plot_path:
        from jsqa_tf.atomic import atomic_path
        from jsqa_tf.plots import jnd_curve_png

        png = jnd_curve_png(report, curves, pair_config)
        with atomic_path(plot_path) as temp_path, open(temp_path, "wb") as stream:
            stream.write(png)
        report["plot"] = os.path.abspath(plot_path)
    for warning in report["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    for kind in kinds:
        fit = (report.get(kind) or {}).get("pooled", {}).get("fit")
        if fit:
            unit = report[kind]["unit"]
            levels = fit["thresholds"]
            names = list(levels)
            click.echo(
                f"{kind}: floor {fit['floor']:.3f}, ceiling {fit['ceiling']:.3f}; "
                + "; ".join(f"{name} {_threshold_text(levels[name], unit)}" for name in names)
                + f" ({fit['num_pairs_fitted']} pairs)",
                err=True,
            )
    window = report.get("pair_window")
    if window:
        share = window["expected_share_same"]
        if share["fit"] is not None:
            click.echo(
                f"pair window {window['snr_window_db']:g} dB"
                + (f", |ΔSNR| <= {window['max_abs_delta_db']:g} dB" if window["max_abs_delta_db"] else "")
                + f": expected share judged same {share['fit']:.3f} (fit), "
                + (f"{share['bins']:.3f} (bins)" if share["bins"] is not None else "bins: n/a"),
                err=True,
            )
        for answer in window["targets"]:
            parts = []
            options = (("widest_snr_window_db", "--snr-window"), ("max_abs_delta_db", "--max-abs-delta"))
            for name, option in options:
                value = answer[name]["fit"]
                parts.append(f"{option} {value:.2f}" if value is not None else f"{option}: none")
            click.echo(f"--target-same {answer['target_same']:g}: " + ", or ".join(parts), err=True)
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


@main.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Pipeline YAML, e.g. pipelines/pretrain_demo.yaml.",
)
@click.option("--run-dir", help="Run folder (default: the config's run_dir).")
@click.option("--clean-dir", type=click.Path(file_okay=False), help="Prepared clean speech (train + val).")
@click.option("--noise-dir", type=click.Path(file_okay=False), help="Prepared noise (train + val).")
@click.option("--epochs", type=int, help="Training epochs.")
@click.option("--steps-per-epoch", type=int, help="Batches per epoch (instead of the file's epoch_hours).")
@click.option("--precision", type=click.Choice(["float32", "mixed_float16", "mixed_bfloat16"]))
@click.option("--jit-compile/--no-jit-compile", default=None, help="Compile the step with XLA.")
@click.option(
    "--strategy",
    type=click.Choice(["default", "mirrored", "multi-worker"]),
    help="default: one device; mirrored: all local GPUs; multi-worker: TF_CONFIG cluster.",
)
@_SET_OPTION
@click.option("--resume", is_flag=True, help="Continue the run in the run folder from its last checkpoint.")
def pretrain(
    config_path,
    run_dir,
    clean_dir,
    noise_dir,
    epochs,
    steps_per_epoch,
    precision,
    jit_compile,
    strategy,
    assignments,
    resume,
) -> None:
    """Contrastive pretraining of the encoder on JND pairs (NT-Xent).

    Writes a run folder (config.yaml, checkpoints/, logs/ for TensorBoard, history.csv,
    encoder.keras = the last epoch, encoder-best.keras = the lowest validation loss,
    summary.json); prints the summary as JSON. Ctrl-C, then the same command with --resume,
    continues from the last finished epoch. The logged pair accuracy shows that the two views
    of a pair are told apart from the others (recognising the utterance or the noise is
    enough), not that the encoder learned anything perceptual (README).
    """
    from jsqa_tf.config import PretrainConfig, apply_overrides, from_dict, load_yaml
    from jsqa_tf.training import pretrain as run_pretrain

    overrides = {
        "run_dir": run_dir,
        "data.clean_dir": clean_dir,
        "data.noise_dir": noise_dir,
        "training.epochs": epochs,
        "training.steps_per_epoch": steps_per_epoch,
        "training.precision": precision,
        "training.jit_compile": jit_compile,
        "training.strategy": strategy,
    }
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if clean_dir or noise_dir:
        overrides["data.demo_dir"] = None
    if steps_per_epoch is not None:  # the option wins over an epoch length in hours
        overrides["training.epoch_hours"] = None
    overrides.update(_assignments(assignments))
    settings = apply_overrides(load_yaml(config_path), overrides)
    config = from_dict(PretrainConfig, settings, where=config_path)
    _check_run_dir(config.run_dir)
    if config.data.demo_dir:  # written and prepared once, with progress bars (~20 s)
        from jsqa_tf.training import demo_shards

        with _progress_bars() as progress:
            demo_shards(config.data.demo_dir, progress)
    summary = run_pretrain(config, resume=resume)
    _echo_json({k: v for k, v in summary.items() if k != "history"})


def _check_run_dir(run_dir: str) -> None:
    from jsqa_tf.atomic import check_writable

    check_writable(os.path.join(run_dir, "config.yaml"))


def _demo_data_for(raw: dict) -> None:
    """Writes and prepares the demo data a pipeline file names (data.demo_dir of its
    pretraining and fine-tuning sections), with progress bars, before the stages run."""
    from jsqa_tf.training import demo_mos_shards, demo_shards

    def demo_dir(section) -> str | None:
        data = section.get("data") if isinstance(section, dict) else None
        value = data.get("demo_dir") if isinstance(data, dict) else None
        return value if isinstance(value, str) and value else None

    pretrain_section = raw.get("pretrain") or {}
    if not isinstance(pretrain_section, dict):
        pretrain_section = {}
    sections = [pretrain_section] if "data" in pretrain_section else list(pretrain_section.values())
    wanted = [(demo_shards, demo_dir(section)) for section in sections]
    wanted.append((demo_mos_shards, demo_dir(raw.get("finetune"))))
    if demo_dir(raw.get("distill")):  # the student learns from the speech, noise and MOS audio
        wanted += [(demo_shards, demo_dir(raw["distill"])), (demo_mos_shards, demo_dir(raw["distill"]))]
    with _progress_bars() as progress:
        for make, folder in wanted:
            if folder:
                make(folder, progress)


_TRAINING_OPTIONS = [
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
]


def _training_options(command):
    for option in reversed(_TRAINING_OPTIONS):
        command = option(command)
    return command


@main.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="YAML with FinetuneConfig sections (run_dir, data, model, training).",
)
@click.option("--data-dir", type=click.Path(file_okay=False), help="Prepared MOS shards (train + val).")
@click.option("--encoder", help="'scratch', a pretraining run folder, or an encoder .keras file.")
@click.option("--epochs", type=int, help="Training epochs.")
@_training_options
def finetune(
    config_path, data_dir, encoder, epochs, run_dir, precision, jit_compile, strategy, assignments, resume
) -> None:
    """MOS fine-tuning of a (pretrained) encoder with the 4-layer regression head.

    Writes a run folder (config.yaml, checkpoints/, logs/ for TensorBoard, history.csv,
    model.keras = the epoch with the lowest validation RMSE, model-last.keras,
    summary.json); prints the summary as JSON. Ctrl-C, then the same command with --resume,
    continues from the last finished epoch.
    """
    from jsqa_tf.config import FinetuneConfig, apply_overrides, from_dict, load_yaml
    from jsqa_tf.training import finetune as run_finetune

    overrides = {
        "run_dir": run_dir,
        "data.data_dir": data_dir,
        "model.encoder": encoder,
        "training.epochs": epochs,
        "training.precision": precision,
        "training.jit_compile": jit_compile,
        "training.strategy": strategy,
    }
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if data_dir:
        overrides["data.demo_dir"] = None
    overrides.update(_assignments(assignments))
    config = from_dict(FinetuneConfig, apply_overrides(load_yaml(config_path), overrides), where=config_path)
    if not config.run_dir:
        raise JSQAError(f"{config_path}: run_dir is not set (--run-dir)")
    summary = run_finetune(config, resume=resume)
    _echo_json({k: v for k, v in summary.items() if k != "history"})


@main.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="YAML with DistillConfig sections (run_dir, data, model, training).",
)
@click.option("--teacher", help="The fine-tuned teacher: a run folder or a .keras file.")
@click.option("--clean-dir", type=click.Path(file_okay=False), help="Prepared clean speech (train split).")
@click.option("--noise-dir", type=click.Path(file_okay=False), help="Prepared noise (train split).")
@click.option("--mos-dir", type=click.Path(file_okay=False), help="Prepared MOS corpus (train, val).")
@click.option("--epochs", type=int, help="Training epochs.")
@_training_options
def distill(
    config_path,
    teacher,
    clean_dir,
    noise_dir,
    mos_dir,
    epochs,
    run_dir,
    precision,
    jit_compile,
    strategy,
    assignments,
    resume,
) -> None:
    """Trains a small student to give a fine-tuned teacher's MOS, on unlabelled audio.

    Writes a run folder (config.yaml, checkpoints/, logs/ for TensorBoard, history.csv,
    model.keras = the student of the epoch closest to the teacher on the val files,
    model-last.keras, summary.json); prints the summary as JSON. The student is a MOS model
    like any other: `evaluate`, `export` and `predict` take the run folder. Ctrl-C, then the
    same command with --resume, continues from the last finished epoch.
    """
    from jsqa_tf.config import DistillConfig, apply_overrides, from_dict, load_yaml
    from jsqa_tf.training.distill import distill as run_distill

    overrides = {
        "run_dir": run_dir,
        "model.teacher": teacher,
        "data.clean_dir": clean_dir,
        "data.noise_dir": noise_dir,
        "data.mos_dir": mos_dir,
        "training.epochs": epochs,
        "training.precision": precision,
        "training.jit_compile": jit_compile,
        "training.strategy": strategy,
    }
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if clean_dir or noise_dir or mos_dir:
        overrides["data.demo_dir"] = None
    overrides.update(_assignments(assignments))
    config = from_dict(DistillConfig, apply_overrides(load_yaml(config_path), overrides), where=config_path)
    if not config.run_dir:
        raise JSQAError(f"{config_path}: run_dir is not set (--run-dir)")
    _check_run_dir(config.run_dir)
    if config.data.demo_dir:  # written and prepared once, with progress bars
        from jsqa_tf.training import demo_mos_shards, demo_shards

        with _progress_bars() as progress:
            demo_shards(config.data.demo_dir, progress)
            demo_mos_shards(config.data.demo_dir, progress)
    summary = run_distill(config, resume=resume)
    _echo_json({k: v for k, v in summary.items() if k != "history"})


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
    bar = None

    def on_start(count):
        nonlocal bar
        bar = _progress(count, "scoring")
        bar.__enter__()

    try:
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
            on_start=on_start,
            on_file=lambda: bar.update(1),
        )
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
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
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Pipeline YAML: pipelines/demo.yaml, paper.yaml, label_efficiency.yaml.",
)
@_training_options
def train(config_path, run_dir, precision, jit_compile, strategy, assignments, resume) -> None:
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
    from jsqa_tf.training.pipeline import plan

    raw = load_yaml(config_path)
    overrides = {"run_dir": run_dir} if run_dir else {}
    stages = ["finetune", *(["distill"] if raw.get("distill") else [])]
    pretrain_section = raw.get("pretrain") or {}
    if isinstance(pretrain_section, dict) and pretrain_section:
        if set(pretrain_section) <= {"data", "model", "training"}:
            stages.append("pretrain")
        else:
            stages += [f"pretrain.{name}" for name in pretrain_section]
    for key, value in (("precision", precision), ("jit_compile", jit_compile), ("strategy", strategy)):
        if value is not None:
            overrides.update({f"{stage}.training.{key}": value for stage in stages})
    overrides.update(_assignments(assignments))
    raw = apply_overrides(raw, overrides)
    plan(raw, config_path)  # every setting checked before the demo data is written
    _demo_data_for(raw)
    _echo_json(run_train(raw, resume=resume, where=config_path))


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
    )
)
