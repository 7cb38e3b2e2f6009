"""The `jsqa-tf` command line: parses, calls library functions, prints.

Logs and progress bars go to stderr; machine-readable results (JSON) go to stdout.
Errors the user can act on (`JSQAError`) print as one line and exit with status 1.
"""

from __future__ import annotations

import json
import logging
import os
import sys

import click

import jsqa_tf
from jsqa_tf.errors import JSQAError

logger = logging.getLogger("jsqa_tf")


def _quiet_tensorflow() -> None:
    # TensorFlow's C++ start-up chatter is not for the user; set before TF is imported.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _echo_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2))


class _Group(click.Group):
    """A click group that turns project errors into one clear line instead of a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except JSQAError as error:
            raise click.ClickException(str(error)) from error


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(jsqa_tf.__version__, prog_name="jsqa-tf")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """jsqa-tf: JSQA speech quality assessment (JND contrastive pretraining, MOS fine-tuning)."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    _quiet_tensorflow()


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
    _echo_json(make_demo_corpus(directory, seed, **sizes))


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
    from jsqa_tf.config import PrepareConfig, from_dict, load_yaml
    from jsqa_tf.data.prepare import list_corpus
    from jsqa_tf.data.prepare import prepare as run_prepare

    settings = load_yaml(config_path) if config_path else {}
    settings.update(corpus=corpus, source=os.path.abspath(source))
    for name, value in options.items():  # every option is a PrepareConfig field; unset ones are None
        if value not in (None, ()):
            settings[name] = list(value) if isinstance(value, tuple) else value
    config = from_dict(PrepareConfig, settings, where=config_path or "prepare")

    listing = list_corpus(config)
    if strict and listing.problems:
        raise JSQAError(f"--strict: {listing.summary()}")

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
