"""Read rate of the tf.data pipeline from prepared shards, in seconds of audio per second.

    python benchmarks/bench_data.py [DATA_DIR] [--seconds 5] [--rounds 3] [--json [PATH]]

DATA_DIR is a folder written by `jsqa-tf prepare`. Without it, the script writes a corpus of
LibriSpeech-like lengths (10-16 s files, `--hours` of audio, in shards of ~300 s), cut from
speech made by the demo corpus's synthesiser, to a temporary folder, prepares it with
`jsqa_tf.data.prepare`, and reads that. The pipeline is the training one
(`jsqa_tf.data.pipeline.make_dataset`): shuffled shard order, interleave, shuffle buffer,
random 4 s crops, batch 16, prefetch.

Each of `--rounds` rounds builds the pipeline afresh, reads it for `--warmup-seconds`, then
times a window of `--seconds` (as `bench_pairs.py` does: tf.data buffers a fast pipeline's
output while it warms up, which a window of a fixed few hundred batches would count); the
median is quoted, with the range and the CPU time per clip (the whole process's).

Target: >= 2,000 audio-seconds per second on 2 CPU cores; one H100 training the full encoder
in bf16 consumes ~1,600.
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _common  # noqa: E402
import numpy as np  # noqa: E402

SHARD_SECONDS = 300.0


def make_shards(folder: str, hours: float, seed: int = 0) -> str:
    """Writes ~`hours` of 10-16 s speech-like files and prepares them; returns the shard folder."""
    rng = np.random.default_rng(seed)
    return _common.write_prepared_corpus(
        folder,
        lambda: _common.synthetic_sources("speech", rng, seconds=16.0),
        rng,
        total_seconds=hours * 3600,
        file_seconds=(10.0, 16.0),
        num_shards=max(1, round(hours * 3600 / SHARD_SECONDS)),
    )


def measure(data_dir: str, args) -> dict:
    from jsqa_tf.data.pipeline import make_dataset

    crop_samples = int(args.crop_seconds * _common.SAMPLE_RATE)
    windows = []
    for _ in range(args.rounds):
        dataset = make_dataset(data_dir, crop_samples=crop_samples, batch_size=args.batch_size, seed=0)
        windows.append(_common.read_rate(dataset, args.batch_size, args.seconds, args.warmup_seconds))
    audio = _common.summary([w.per_second(args.batch_size * args.crop_seconds) for w in windows])
    cpu_ms = _common.summary([w.cpu_ms_per_item(args.batch_size) for w in windows], 3)
    return {
        "audio_seconds_per_second": audio["median"],
        "audio_seconds_per_second_range": [audio["min"], audio["max"]],
        "clips_per_second": _common.summary([w.per_second(args.batch_size) for w in windows])["median"],
        "cpu_ms_per_clip": cpu_ms["median"],
        "batches_per_window": [w.calls for w in windows],
        "load_average_1min_per_window": [round(w.load_average_1min, 2) for w in windows],
        "batch_size": args.batch_size,
        "crop_seconds": args.crop_seconds,
        "window_seconds": args.seconds,
        "warmup_seconds": args.warmup_seconds,
        "rounds": args.rounds,
        "cpu_count": os.cpu_count(),
        "data_dir": os.path.abspath(data_dir) if args.data_dir else None,
        "corpus": "given" if args.data_dir else f"written: {args.hours:g} h of 10-16 s synthetic speech",
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", nargs="?", help="a prepared folder (default: synthesise one)")
    parser.add_argument("--seconds", type=float, default=5.0, help="timed window per round")
    parser.add_argument("--warmup-seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--crop-seconds", type=float, default=4.0)
    parser.add_argument("--hours", type=float, default=0.5, help="size of the synthetic corpus")
    parser.add_argument("--json", **_common.JSON_OPTION)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0:
        parser.error("--rounds must be >= 1 and --seconds > 0")
    _common.check_json_path(parser, args.json)
    facts = _common.RunFacts(__file__, argv)

    with tempfile.TemporaryDirectory(prefix="bench_data-") as scratch:
        data_dir = args.data_dir or make_shards(scratch, args.hours)
        result = measure(data_dir, args)
    r = result
    line = (
        f"tf.data read rate: {r['audio_seconds_per_second']:,.0f} audio-s/s (rounds "
        f"{r['audio_seconds_per_second_range'][0]:,.0f}-{r['audio_seconds_per_second_range'][1]:,.0f}; "
        f"{r['clips_per_second']:,.0f} clips/s of {args.crop_seconds:g} s, batch {args.batch_size}, "
        f"{r['cpu_ms_per_clip']:.3f} CPU-ms a clip, {r['cpu_count']} cores; target >= 2,000); "
        f"{args.rounds} rounds of {args.seconds:g} s windows, medians; 1-min load at each window: "
        f"{r['load_average_1min_per_window']}"
    )
    return _common.report(facts, result, [line], args.json)


if __name__ == "__main__":
    main()
