"""`jsqa-tf demo-data`, `prepare`, `check` and `pairs`: the corpora, their shards, JND pairs."""

from __future__ import annotations

import logging
import os

import click

from jsqa_tf.commands.common import echo_json, given, option_group, progress_bars
from jsqa_tf.errors import JSQAError

logger = logging.getLogger("jsqa_tf")


@click.command("demo-data")
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
    with progress_bars() as progress:
        paths = make_demo_corpus(directory, seed, **demo_callbacks(progress), **(SMALL_DEMO if small else {}))
    echo_json(paths)


@click.command("codec-bank")
@click.argument("clean_dir", type=click.Path(file_okay=False))
@click.argument("bank_dir", type=click.Path(file_okay=False))
@click.option("--codec", type=click.Choice(["mp3"]), default="mp3", show_default=True, help="The codec.")
@click.option(
    "--bitrates",
    help="The ladder's constant bitrates in kbps, comma-separated (default 8,16,24,32,48,64,96,160; "
    "MP3 at 16 kHz takes 8-160).",
)
@click.option("--max-hours", type=float, help="At most this much audio of each split (default: all).")
@click.option(
    "--split", "splits", multiple=True, help="A split to render (repeatable; default: every split)."
)
@click.option(
    "-j", "--num-workers", type=int, default=2, show_default=True, help="Rendering processes (0: none)."
)
def prepare_codec_bank(clean_dir, bank_dir, codec, bitrates, max_hours, splits, num_workers) -> None:
    """Renders a prepared clean folder at a ladder of bitrates: the codec bank.

    CLEAN_DIR: a folder written by `jsqa-tf prepare` (speech). BANK_DIR: a new or empty
    folder. Each utterance is encoded at every rung, decoded, and stored as int16 PCM; the
    manifest records each rung's nominal and measured bitrate. Prints a summary as JSON.
    """
    from jsqa_tf.data.codec_bank import bank_summary, parse_bitrates, render_codec_bank
    from jsqa_tf.progress import prepare_callbacks

    with progress_bars() as progress:
        callbacks = prepare_callbacks(progress, "rendering {num_shards} shard(s)")
        manifest = render_codec_bank(
            clean_dir,
            bank_dir,
            codec=codec,
            bitrates_kbps=parse_bitrates(bitrates),
            max_hours=max_hours,
            splits=splits,
            num_workers=num_workers,
            **callbacks,
        )
    echo_json(bank_summary(manifest) | {"bank_dir": os.path.abspath(bank_dir)})


class _PrepareCommand(click.Command):
    """`prepare`, whose first argument may name a subcommand instead of a corpus
    (`jsqa-tf prepare codec-bank ...`)."""

    subcommands = {"codec-bank": prepare_codec_bank}

    def make_context(self, info_name, args, parent=None, **extra):
        if args and args[0] in self.subcommands:
            command = self.subcommands[args[0]]
            return command.make_context(f"{info_name} {args[0]}", list(args[1:]), parent=parent, **extra)
        return super().make_context(info_name, args, parent=parent, **extra)


@click.command(cls=_PrepareCommand)
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
@click.option(
    "--targets",
    help="csv: the score columns to keep, comma-separated, of mos, noi, col, dis, loud "
    "(default mos); an empty cell is 'not rated'.",
)
@click.option(
    "--target-range",
    "target_range",
    nargs=3,
    multiple=True,
    metavar="TARGET LOW HIGH",
    help="csv: the scale of one score column (repeatable; default: --mos-range for mos, 1 5 "
    "for noi, col, dis, loud); a row outside it is an error naming its line.",
)
@click.option("--strict", is_flag=True, help="Fail if any file is missing or unreadable.")
def prepare(corpus, source, output_dir, config_path, strict, targets, target_range, **options) -> None:
    """Converts a corpus into sharded TFRecords (16 kHz int16) plus manifest.json.

    \b
    CORPUS   SOURCE
    librispeech  the LibriSpeech folder or one subset folder (<speaker>/<chapter>/*.flac)
    chime3       the CHiME-3 backgrounds folder (*_<ENV>.CH<k>.wav) or one above it
    nisqa        NISQA_corpus_file.csv or <DB>/<DB>_file.csv
    folder       any folder of audio files
    csv          a CSV with columns path, mos[, condition]; paths relative to the CSV
                 (other score columns with --targets, e.g. --targets mos,noi)

    Resumable: rerun the same command after an interruption and finished shards are kept.
    Prints a summary of the manifest as JSON. `jsqa-tf prepare codec-bank CLEAN_DIR BANK_DIR`
    renders a prepared clean folder at a ladder of codec bitrates (see its --help).
    """
    from jsqa_tf.atomic import check_writable
    from jsqa_tf.config import PrepareConfig, from_dict, load_yaml
    from jsqa_tf.data.prepare import list_corpus
    from jsqa_tf.data.prepare import prepare as run_prepare
    from jsqa_tf.progress import prepare_callbacks

    check_writable(os.path.join(output_dir, "manifest.json"))
    settings = load_yaml(config_path) if config_path else {}
    settings.update(corpus=corpus, source=os.path.abspath(source))
    settings.update(given(options))  # every option is a PrepareConfig field
    if targets is not None or target_range:
        settings.update(_target_settings(corpus, targets, target_range, settings))
    config = from_dict(PrepareConfig, settings, where=config_path or "prepare")

    listing = list_corpus(config)
    if strict and listing.problems:
        first = listing.problems[0]
        raise JSQAError(
            f"--strict: {len(listing.problems)} problem file(s), e.g. {first.path}: {first.reason} "
            "(without --strict they are skipped and listed)"
        )
    with progress_bars() as progress:
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
    echo_json(summary)


def _target_settings(corpus: str, targets: str | None, target_range, settings: dict) -> dict:
    """PrepareConfig's targets and target_ranges from --targets and --target-range."""
    from jsqa_tf.ranges import MOS_RANGE, default_target_ranges

    if corpus != "csv":
        raise click.UsageError(
            "--targets and --target-range apply to a csv corpus (nisqa keeps every column)"
        )
    names = [name.strip() for name in (targets or "").split(",") if name.strip()] or list(
        settings.get("targets") or ["mos"]
    )
    ranges = {}
    for name, low, high in target_range:
        if name not in names:
            raise click.UsageError(f"--target-range {name}: not one of --targets {','.join(names)}")
        try:
            ranges[name] = [float(low), float(high)]
        except ValueError:
            raise click.UsageError(f"--target-range {name} {low} {high}: LOW and HIGH must be numbers")
    if not ranges:
        return {"targets": names}
    defaults = default_target_ranges(names, settings.get("mos_range") or MOS_RANGE)
    given = [ranges.get(name, list(default)) for name, default in zip(names, defaults, strict=True)]
    return {"targets": names, "target_ranges": given}


@click.command()
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
    echo_json(reports)
    problems = [problem for report in reports for problem in report["problems"]]
    for problem in problems:
        click.echo(f"damaged: {problem['file']}: {problem['reason']}", err=True)
    if problems:
        total = sum(report["num_shards"] for report in reports)
        raise JSQAError(
            f"{len(problems)} of {total} shard(s) damaged, e.g. {problems[0]['file']}: copy them again, "
            "or prepare the corpus again"
        )
    count = sum(r["num_shards"] for r in reports)
    if quick:
        click.echo(
            f"{count} shard(s) have the sizes manifest.json records; --quick checks sizes only, so it "
            "cannot vouch for their contents (without --quick each shard's SHA-256 is checked)",
            err=True,
        )
    else:
        click.echo(f"{count} shard(s) intact", err=True)


PAIR_KEYS = {
    "snr_range": "snr_range_db",
    "snr_window": "snr_window_db",
    "snr_window_low": "snr_window_low_db",
    "max_abs_delta": "max_abs_delta_db",
}
"""The SNR options' `PairSampling` fields."""

snr_options = option_group(
    click.option("--snr-range", nargs=2, type=float, help="Range the SNR window lies in, dB (default -3 9)."),
    click.option("--snr-window", type=float, help="Width of the window both SNRs come from, dB (default 6)."),
    click.option("--snr-window-low", type=float, help="Fix the window's low end (default: random per pair)."),
    click.option(
        "--max-abs-delta",
        type=float,
        help="Cap on |ΔSNR|, dB, at most the window (default: none; see `jnd curve --target-same`).",
    ),
)


def _share_text(share) -> str:
    return share if isinstance(share, str) else f"{share:.3f}"


@click.command()
@click.argument("clean_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("noise_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("output_dir", type=click.Path(file_okay=False))
@click.option("-n", "--num-pairs", default=64, show_default=True, help="Pairs to draw.")
@click.option("--split", default="train", show_default=True, help="Split of both prepared folders.")
@click.option("--crop-seconds", type=float, help="Length of each pair (default 4 s).")
@snr_options
@click.option(
    "--snr-placement",
    type=click.Choice(["uniform_window", "uniform_snr"]),
    help="Where the pairs' SNRs lie in the range: a uniformly placed window (default) or "
    "uniform single SNRs (README, jsqa-tf pairs).",
)
@click.option(
    "--families",
    help="Pair families, comma-separated: additive (default), codec, reverb, bandwidth "
    "(windows and weights: --config; docs/pretraining.md).",
)
@click.option("--codec-bank", help="The codec bank (jsqa-tf prepare codec-bank) the codec family reads.")
@click.option(
    "--noise-under-share",
    type=float,
    help="Share of the non-additive pairs with one noise at one SNR in both views (default 0).",
)
@click.option(
    "--jnd-list",
    type=click.Path(exists=True, dir_okay=False),
    help="CDPAM's labelled list (dataset_linear.txt): report each family's share of pairs "
    "listeners would judge the same.",
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
    clean_dir,
    noise_dir,
    output_dir,
    num_pairs,
    split,
    config_path,
    audio,
    tensorboard_dir,
    jnd_list,
    **options,
) -> None:
    """Draws JND pairs from prepared CLEAN_DIR speech and NOISE_DIR noise into OUTPUT_DIR.

    Each pair: one clean crop and one noise excerpt mixed at two SNRs drawn from one 6 dB
    window inside [-3, 9] dB (paper defaults; --max-abs-delta caps |ΔSNR|; --snr-placement
    chooses where the SNRs lie in the range). Writes pairs.csv, audio/*.wav, summary.json, the
    |ΔSNR| histogram (abs_delta_snr_histogram.png) and the single-SNR and |ΔSNR| distributions
    (snr_distributions.png); prints the summary as JSON.
    """
    from jsqa_tf.config import PairConfig, from_dict, load_yaml
    from jsqa_tf.data.pairs import check_pairs_memory, write_pairs
    from jsqa_tf.data.prepare import load_manifest
    from jsqa_tf.jnd_curve import family_curves

    settings = load_yaml(config_path) if config_path else {}
    settings.update(clean_dir=os.path.abspath(clean_dir), noise_dir=os.path.abspath(noise_dir), split=split)
    # Pairs are drawn at the rate the speech was prepared at (the noise must match it).
    settings.setdefault("sample_rate", load_manifest(clean_dir).get("sample_rate", 16_000))
    families, bank = options.pop("families"), options.pop("codec_bank")
    if families is not None:
        settings["families"] = [name.strip() for name in families.split(",") if name.strip()]
    if bank is not None:
        settings["codec_bank_dir"] = os.path.abspath(bank)
    config = from_dict(PairConfig, settings | given(options, PAIR_KEYS), where=config_path or "pairs")
    check_pairs_memory(config)  # before the progress bar: a refusal is one line
    with progress_bars() as progress:
        update = progress("drawing pairs", num_pairs)
        summary = write_pairs(
            config,
            output_dir,
            num_pairs,
            write_audio=audio,
            tensorboard_dir=tensorboard_dir,
            on_progress=update,
            human_curves=family_curves(jnd_list, config.family_counts) if jnd_list else None,
        )
    for family, block in summary["families"].items():
        click.echo(
            f"{family}: {block['count']} pairs, mean |Δ| {block['mean_abs_delta']:.3f} {block['unit']} "
            f"(max {block['max_abs_delta']:.3f}, window {block['window']:g})"
            + (
                f"; judged the same: {_share_text(block['share_judged_same'])}"
                if "share_judged_same" in block
                else ""
            ),
            err=True,
        )
    if "mean_abs_delta_db" in summary:
        click.echo(
            f"mean |ΔSNR| {summary['mean_abs_delta_db']:.3f} dB over the additive pairs "
            f"(expected {summary['expected_mean_abs_delta_db']:.3f})",
            err=True,
        )
    echo_json(
        {k: v for k, v in summary.items() if k != "config"} | {"output_dir": os.path.abspath(output_dir)}
    )
