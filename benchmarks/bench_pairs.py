"""JND pair sampler throughput, each input stream alone, and the cost of mixing.

    python benchmarks/bench_pairs.py [--clean-dir DIR --noise-dir DIR] [--corpus-dir DIR] [--seconds 5]
                                     [--json [PATH]]

`--clean-dir` and `--noise-dir` are folders written by `jsqa-tf prepare` (LibriSpeech and
CHiME-3). Without them the script writes and prepares a realistic corpus in a temporary
folder: `--clean-hours` (2) of 3-15 s clean files in `--clean-shards` (5) shards and
`--noise-files` (16) noise recordings of `--noise-seconds` (60) in one shard, cut (looped,
at random offsets and levels) from the audio files in `--speech-source` / `--noise-source`
(e.g. a few LibriSpeech utterances and CHiME-3 backgrounds), or from speech and noise made by
the demo corpus's synthesisers without them. `--corpus-dir` keeps the corpus
(`clean/shards`, `noise/shards`) for the next run, which reuses it as it is.

Streams, each a fresh pipeline, timed in turn for `--rounds` rounds (medians quoted):
    pairs   `make_pair_dataset`: (clean, noise, snr_db, num_valid_samples) batches of 8 pairs of 4 s
    clean   the clean stream alone (random crops of different utterances)
    noise   the noise stream alone (excerpts of different noise files), from the in-memory
            noise bank, or read as records with `--noise-bank-max-mb 0`
    pairs-records, noise-records   the same with the noise read as records (the fallback
            above `noise_bank_max_mb`), for a side-by-side comparison in one run
    pairs-one-crop, clean-one-crop   the same with one clean crop per utterance per epoch
            (`max_crops_per_file=1`, the sampler before issue 13's several crops a record)
Each round reads every stream once, in turn, so that a drifting load (another job on the
machine) hits each alike; ratios are medians of the per-round ratios, the fair comparison on a
loaded machine. The 1-min load average is recorded with each window.
Each is read for `--warmup-seconds` first (tf.data buffers a fast pipeline's output while it
warms up, which a short window would count), then for a window of `--seconds`; CPU time is
the whole process's (all tf.data threads) over the window.

Pair families (`--families additive,codec,reverb,bandwidth`): each family's pairs alone
(`family-<name>`: the sampler with that family only) and all of them mixed (`families`: one
batch holds an equal share of each, `PairSampling.family_counts`), each a `make_pair_dataset`
stream of `(clean_a, clean_b, noise, snr_db, num_valid)` batches: the reverb and bandwidth
views rendered in the pipeline, the codec views read from a codec bank (`--codec-bank`, or
rendered here from `--codec-bank-hours` of the clean corpus, kept in `--corpus-dir`/bank).
With `--families` and no `--streams`, only those streams are timed.

Units: a pair is one clean crop and one noise excerpt of `crop_seconds` each.
`clean_audio_seconds_per_second` = pairs/s x crop_seconds (one stream; the noise stream
delivers as much again); `mixed_views_audio_seconds_per_second` = 2 x that: the two mixed
views per pair that the encoder receives, which is `bench_train.py`'s audio_seconds_per_second.
Mixing (`mix_pair`, both views) is timed on one batch inside a tf.function, as in a train step.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _common  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from jsqa_tf.config import NOISE_BANK_MAX_MB, PairConfig  # noqa: E402
from jsqa_tf.data.noise_bank import load_noise_bank  # noqa: E402
from jsqa_tf.data.pairs import clean_stream, make_pair_dataset, noise_stream  # noqa: E402
from jsqa_tf.mixing import mix_pair  # noqa: E402
from jsqa_tf.ranges import PAIR_FAMILIES  # noqa: E402

STREAM_KEYS = {  # stream: (JSON key of its rate, of its CPU time per item)
    "pairs": ("pairs_per_second", "cpu_ms_per_pair"),
    "clean": ("clean_crops_per_second", "cpu_ms_per_clean_crop"),
    "noise": ("noise_crops_per_second", "cpu_ms_per_noise_crop"),
    "pairs-records": ("pairs_per_second_noise_from_records", "cpu_ms_per_pair_noise_from_records"),
    "noise-records": ("noise_crops_per_second_from_records", "cpu_ms_per_noise_crop_from_records"),
    "pairs-one-crop": ("pairs_per_second_one_crop_per_utterance", "cpu_ms_per_pair_one_crop_per_utterance"),
    "clean-one-crop": (
        "clean_crops_per_second_one_crop_per_utterance",
        "cpu_ms_per_clean_crop_one_crop_per_utterance",
    ),
}
RATIOS = {  # JSON key: (stream, the stream it is compared with in the same rounds)
    "pairs_ratio_vs_one_crop": ("pairs", "pairs-one-crop"),
    "clean_ratio_vs_one_crop": ("clean", "clean-one-crop"),
}


def make_corpus(folder: str, args: argparse.Namespace) -> tuple[str, str]:
    """Writes and prepares the clean and noise corpora; returns (clean_dir, noise_dir). A
    folder that holds them already (`--corpus-dir` of an earlier run) is reused as it is."""
    rng = np.random.default_rng(0)

    def sources(folder, kind, longest_seconds):
        if folder:
            return lambda: _common.audio_sources(folder)
        return lambda: _common.synthetic_sources(kind, rng, seconds=min(20.0, longest_seconds))

    clean_dir = _common.write_prepared_corpus(
        os.path.join(folder, "clean"),
        sources(args.speech_source, "speech", 15.0),
        rng,
        total_seconds=args.clean_hours * 3600,
        file_seconds=(3.0, 15.0),
        num_shards=args.clean_shards,
    )
    noise_dir = _common.write_prepared_corpus(
        os.path.join(folder, "noise"),
        sources(args.noise_source, "noise", args.noise_seconds),
        rng,
        num_files=args.noise_files,
        file_seconds=(args.noise_seconds, args.noise_seconds),
    )
    return clean_dir, noise_dir


def family_streams(config: PairConfig, names: list[str], bank_dir: str | None) -> dict:
    """{stream name: a builder of its pipeline} for each family alone and all mixed."""
    settings = {"codec_bank_dir": bank_dir, "codec_window_octaves": 3.22}

    configs = {f"family-{name}": dataclasses.replace(config, families=(name,), **settings) for name in names}
    configs["families"] = dataclasses.replace(config, families=tuple(names), **settings)
    return {stream: functools.partial(make_pair_dataset, drawn) for stream, drawn in configs.items()}


def codec_bank(clean_dir: str, folder: str, hours: float) -> str:
    """A codec bank of the clean corpus's first `hours` (the default ladder), in `folder`/bank;
    one rendered there before is reused as it is."""
    from jsqa_tf.data.codec_bank import render_codec_bank

    bank_dir = os.path.join(folder, "bank")
    if not os.path.exists(os.path.join(bank_dir, "manifest.json")):
        render_codec_bank(clean_dir, bank_dir, max_hours=hours, num_workers=os.cpu_count() or 1)
    return bank_dir


def time_mixing(config: PairConfig, repeats: int) -> tuple[float, float]:
    """ms per `mix_pair` call on one batch: in a tf.function (as in a train step), and eager."""
    clean, noise, snr_db, num_valid = next(iter(make_pair_dataset(config)))

    def mix(c, n, s, v):
        return mix_pair(c, n, s, num_valid_samples=v, prevent_clipping=True)

    results = []
    for function in (tf.function(mix), mix):
        window = _common.time_window(
            lambda f=function: float(f(clean, noise, snr_db, num_valid)[0][0, 0]),
            0.0,
            warmup_calls=5,
            min_calls=repeats,
        )
        results.append(1000 * window.seconds / window.calls)
    return results[0], results[1]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clean-dir", help="prepared clean speech (default: write a corpus)")
    parser.add_argument("--noise-dir", help="prepared noise (default: write a corpus)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--pairs-per-batch", type=int, default=8)
    parser.add_argument("--crop-seconds", type=float, default=4.0)
    parser.add_argument(
        "--noise-bank-max-mb",
        type=float,
        default=NOISE_BANK_MAX_MB,
        help="0 reads the noise records for every excerpt (the fallback)",
    )
    parser.add_argument(
        "--streams",
        help="comma-separated: " + ", ".join(STREAM_KEYS) + " (default: pairs, pairs-one-crop, clean, "
        "clean-one-crop, noise; with --families, only the families' streams)",
    )
    parser.add_argument(
        "--families",
        help="comma-separated pair families to time alone and mixed: " + ", ".join(PAIR_FAMILIES),
    )
    parser.add_argument("--codec-bank", help="a codec bank of the clean corpus (default: render one)")
    parser.add_argument(
        "--codec-bank-hours", type=float, default=0.25, help="hours of the clean corpus a rendered bank holds"
    )
    parser.add_argument(
        "--corpus-dir",
        help="write the corpus here, or reuse the one an earlier run wrote (default: a temporary folder)",
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="timed window per stream and round")
    parser.add_argument("--warmup-seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=100, help="mix_pair calls timed")
    parser.add_argument("--clean-hours", type=float, default=2.0)
    parser.add_argument("--clean-shards", type=int, default=5)
    parser.add_argument("--noise-files", type=int, default=16)
    parser.add_argument("--noise-seconds", type=float, default=60.0)
    parser.add_argument("--speech-source", help="folder of speech audio to cut the clean files from")
    parser.add_argument("--noise-source", help="folder of noise audio to cut the noise files from")
    parser.add_argument("--json", **_common.JSON_OPTION)
    args = parser.parse_args(argv)
    if bool(args.clean_dir) != bool(args.noise_dir):
        parser.error("give both --clean-dir and --noise-dir, or neither")
    if args.corpus_dir and os.path.exists(args.corpus_dir) and not os.path.isdir(args.corpus_dir):
        parser.error(f"--corpus-dir {args.corpus_dir}: not a folder")
    names = [name.strip() for name in (args.families or "").split(",") if name.strip()]
    if args.families is not None and (not names or set(names) - set(PAIR_FAMILIES)):
        parser.error(f"--families takes {', '.join(PAIR_FAMILIES)}")
    default_streams = "" if names else "pairs,pairs-one-crop,clean,clean-one-crop,noise"
    streams = [name.strip() for name in (args.streams or default_streams).split(",") if name.strip()]
    if (not streams and not names) or set(streams) - set(STREAM_KEYS):
        parser.error(f"--streams takes {', '.join(STREAM_KEYS)}")
    if args.codec_bank and not os.path.isdir(args.codec_bank):
        parser.error(f"--codec-bank {args.codec_bank}: not a folder")

    _common.check_json_path(parser, args.json)
    facts = _common.RunFacts(__file__, argv)
    with tempfile.TemporaryDirectory(prefix="bench_pairs-") as scratch:
        if args.clean_dir:
            clean_dir, noise_dir, corpus = args.clean_dir, args.noise_dir, "given"
        else:
            clean_dir, noise_dir = make_corpus(args.corpus_dir or scratch, args)
            corpus = (
                f"written: {args.clean_hours:g} h of 3-15 s clean files in {args.clean_shards} shards "
                f"({'cut from ' + args.speech_source if args.speech_source else 'synthetic'}), "
                f"{args.noise_files} x {args.noise_seconds:g} s noise "
                f"({'cut from ' + args.noise_source if args.noise_source else 'synthetic'})"
            )
        sampling = _common.settings(args, "split", "crop_seconds", "pairs_per_batch", "noise_bank_max_mb")
        config = PairConfig(clean_dir, noise_dir, **sampling)
        bank = load_noise_bank(noise_dir, args.split, config.crop_samples, max_mb=args.noise_bank_max_mb)
        records = dataclasses.replace(config, noise_bank_max_mb=0.0)
        one_crop = dataclasses.replace(config, max_crops_per_file=1)
        builders = {
            "pairs": lambda: make_pair_dataset(config),
            "clean": lambda: clean_stream(config, config.seed).prefetch(tf.data.AUTOTUNE),
            "noise": lambda: noise_stream(config, config.seed + 1, bank=bank).prefetch(tf.data.AUTOTUNE),
            "pairs-records": lambda: make_pair_dataset(records),
            "noise-records": lambda: noise_stream(records, config.seed + 1).prefetch(tf.data.AUTOTUNE),
            "pairs-one-crop": lambda: make_pair_dataset(one_crop),
            "clean-one-crop": lambda: clean_stream(one_crop, config.seed).prefetch(tf.data.AUTOTUNE),
        }
        bank_dir = None
        if "codec" in names:
            bank_dir = args.codec_bank or codec_bank(
                clean_dir, args.corpus_dir or scratch, args.codec_bank_hours
            )
        if names:
            builders |= family_streams(config, names, bank_dir)
            streams += [*(f"family-{name}" for name in names), "families"]
        rates = {name: [] for name in streams}
        for _ in range(args.rounds):  # streams in turn, so that drifting load hits each alike
            for name in streams:
                window = _common.read_rate(
                    builders[name](), config.pairs_per_batch, args.seconds, args.warmup_seconds
                )
                rates[name].append(
                    {
                        "per_second": window.per_second(config.pairs_per_batch),
                        "cpu_ms": window.cpu_ms_per_item(config.pairs_per_batch),
                        "load": window.load_average_1min,
                    }
                )
        mix_ms, mix_eager_ms = time_mixing(config, args.repeats)

    result = {
        "crop_seconds": config.crop_seconds,
        "pairs_per_batch": config.pairs_per_batch,
        "noise_source": "bank" if bank is not None else "records",
        "noise_bank_mb": round(bank.nbytes / 1e6, 1) if bank is not None else None,
    }
    family_keys = {
        f"family-{name}": (f"{name}_pairs_per_second", f"cpu_ms_per_{name}_pair") for name in names
    }
    family_keys["families"] = ("families_mixed_pairs_per_second", "cpu_ms_per_families_mixed_pair")
    for name, runs in rates.items():
        per_second = _common.summary([run["per_second"] for run in runs])
        rate_key, cpu_key = {**STREAM_KEYS, **family_keys}[name]
        result[rate_key] = per_second["median"]
        result[f"{rate_key}_range"] = [per_second["min"], per_second["max"]]
        result[cpu_key] = _common.summary([run["cpu_ms"] for run in runs], 3)["median"]
        result[f"{rate_key}_load_average_1min"] = [round(run["load"], 2) for run in runs]
    for key, (name, other) in RATIOS.items():
        if name in rates and other in rates:
            ratios = [
                a["per_second"] / b["per_second"] for a, b in zip(rates[name], rates[other], strict=True)
            ]
            cpu = [a["cpu_ms"] / b["cpu_ms"] for a, b in zip(rates[name], rates[other], strict=True)]
            result[key] = _common.summary(ratios, 3)
            result[key.replace("ratio", "cpu_ratio")] = _common.summary(cpu, 3)
    if names:
        result["families"] = names
        result["family_counts"] = dataclasses.replace(
            config, families=tuple(names), codec_bank_dir=bank_dir
        ).family_counts
        result["codec_bank"] = bank_dir
    if "pairs" in rates:
        pairs = result["pairs_per_second"]
        result["clean_audio_seconds_per_second"] = round(pairs * config.crop_seconds, 1)
        result["mixed_views_audio_seconds_per_second"] = round(2 * pairs * config.crop_seconds, 1)
    if {"clean", "noise"} <= set(rates):
        result["slower_stream"] = min(("clean", "noise"), key=lambda n: result[f"{n}_crops_per_second"])
    result.update(
        {
            "mix_ms_per_batch": round(mix_ms, 3),
            "mix_ms_per_batch_eager": round(mix_eager_ms, 3),
            "window_seconds": args.seconds,
            "warmup_seconds": args.warmup_seconds,
            "rounds": args.rounds,
            "cpu_count": os.cpu_count(),
            "corpus": corpus,
        }
    )
    lines = []
    if "pairs" in rates:
        r = result
        lines.append(
            f"pair sampler: {r['pairs_per_second']:,.0f} pairs/s of {config.crop_seconds:g} s "
            f"(range {r['pairs_per_second_range'][0]:,.0f}-{r['pairs_per_second_range'][1]:,.0f}; "
            f"{r['cpu_ms_per_pair']:.3f} CPU-ms a pair) = {r['clean_audio_seconds_per_second']:,.0f} "
            f"s of clean speech per s (and as much noise) = {r['mixed_views_audio_seconds_per_second']:,.0f} "
            f"s of mixed views per s (bench_train's unit)"
        )
    for key, (name, other) in RATIOS.items():
        if key in result:
            r, cpu = result[key], result[key.replace("ratio", "cpu_ratio")]
            lines.append(
                f"{name} / {other} (same rounds, alternating): {r['median']:.2f}x the rate "
                f"(rounds {r['min']:.2f}-{r['max']:.2f}), {cpu['median']:.2f}x the CPU an item"
            )
    for name in ("clean", "noise"):
        if name in rates:
            lines.append(
                f"{name} stream alone: {result[f'{name}_crops_per_second']:,.0f} crops/s "
                f"({result[f'cpu_ms_per_{name}_crop']:.3f} CPU-ms a crop)"
                + (f", noise from {result['noise_source']}" if name == "noise" else "")
            )
    for name, (rate_key, cpu_key) in STREAM_KEYS.items():
        if name.endswith("-one-crop") and name in rates:
            what = "pairs" if name.startswith("pairs") else "clean crops"
            lines.append(
                f"{name} (one crop per utterance an epoch): {result[rate_key]:,.0f} {what}/s "
                f"({result[cpu_key]:.3f} CPU-ms each)"
            )
        if name.endswith("-records") and name in rates:
            what = "pairs" if name.startswith("pairs") else "noise crops"
            lines.append(
                f"{name} (noise read as records, the fallback): {result[rate_key]:,.0f} {what}/s "
                f"({result[cpu_key]:.3f} CPU-ms each)"
            )
    for name in rates:
        if name in family_keys:
            rate_key, cpu_key = family_keys[name]
            what = "all families mixed " + str(result["family_counts"]) if name == "families" else name[7:]
            low, high = result[f"{rate_key}_range"]
            lines.append(
                f"{what}: {result[rate_key]:,.0f} pairs/s of {config.crop_seconds:g} s (range {low:,.0f}-"
                f"{high:,.0f}; {result[cpu_key]:.3f} CPU-ms a pair)"
            )
    lines.append(
        f"mix_pair: {mix_ms:.2f} ms per batch in a tf.function ({mix_eager_ms:.2f} ms eager); "
        f"{result['cpu_count']} cores, 1-min load average {facts.load_start:.2f} -> "
        f"{os.getloadavg()[0]:.2f}; {args.rounds} rounds of {args.seconds:g} s windows, medians"
    )
    lines.append(
        "1-min load at each window: "
        + "; ".join(
            f"{name} {result[{**STREAM_KEYS, **family_keys}[name][0] + '_load_average_1min']}"
            for name in rates
        )
    )
    return _common.report(facts, result, lines, args.json)


if __name__ == "__main__":
    main()
