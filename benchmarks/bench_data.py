"""Read rate of the tf.data pipeline from prepared shards, in seconds of audio per second.

    python benchmarks/bench_data.py [DATA_DIR] [--batches 300] [--json]

DATA_DIR is a folder written by `jsqa-tf prepare`. Without it, the script writes a corpus of
LibriSpeech-like lengths (10-16 s files, `--hours` of audio) to a temporary folder, prepares
it with `jsqa_tf.data.prepare`, and reads that. The pipeline is the training one: shuffled
shard order, interleave, shuffle buffer, random 4 s crops, batch 16, prefetch.

Target (issue 2): >= 2,000 audio-seconds per second on 2 CPU cores; one H100 training the full
encoder in bf16 consumes ~1,600.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from jsqa_tf.audio import write_wav  # noqa: E402
from jsqa_tf.config import PrepareConfig  # noqa: E402
from jsqa_tf.data.prepare import prepare  # noqa: E402


def make_shards(folder: str, hours: float, seed: int = 0) -> str:
    """Writes ~`hours` of 10-16 s noise files and prepares them; returns the shard folder."""
    rng = np.random.default_rng(seed)
    audio_dir = os.path.join(folder, "audio")
    total = 0.0
    index = 0
    while total < hours * 3600:
        seconds = rng.uniform(10, 16)
        samples = 0.1 * rng.standard_normal(int(seconds * 16000))
        write_wav(os.path.join(audio_dir, f"{index:05d}.wav"), samples)
        total += seconds
        index += 1
    out = os.path.join(folder, "shards")
    config = PrepareConfig(corpus="folder", source=audio_dir, shard_seconds=300.0, num_workers=2)
    prepare(config, out)
    return out


def measure(data_dir: str, batches: int, batch_size: int, crop_seconds: float, warmup: int) -> dict:
    from jsqa_tf.data.pipeline import make_dataset

    crop_samples = int(crop_seconds * 16000)
    dataset = make_dataset(data_dir, crop_samples=crop_samples, batch_size=batch_size, seed=0)
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    checksum = 0.0
    for _ in range(batches):
        batch = next(iterator)
        checksum += float(batch["audio"][0, 0])  # touch the data, as a train step would
    elapsed = time.perf_counter() - start
    clips = batches * batch_size
    return {
        "audio_seconds_per_second": round(clips * crop_seconds / elapsed, 1),
        "clips_per_second": round(clips / elapsed, 1),
        "batches": batches,
        "batch_size": batch_size,
        "crop_seconds": crop_seconds,
        "elapsed_seconds": round(elapsed, 3),
        "cpu_count": os.cpu_count(),
        "data_dir": os.path.abspath(data_dir),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", nargs="?", help="a prepared folder (default: synthesise one)")
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--crop-seconds", type=float, default=4.0)
    parser.add_argument("--hours", type=float, default=0.5, help="size of the synthetic corpus")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_data-") as scratch:
        data_dir = args.data_dir or make_shards(scratch, args.hours)
        result = measure(data_dir, args.batches, args.batch_size, args.crop_seconds, args.warmup)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"tf.data read rate: {result['audio_seconds_per_second']:,.0f} audio-s/s "
            f"({result['clips_per_second']:,.0f} clips/s of {args.crop_seconds:g} s, batch "
            f"{args.batch_size}, {result['cpu_count']} cores; target >= 2,000)",
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
