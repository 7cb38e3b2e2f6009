"""JND pair sampler throughput and the cost of mixing, timed separately.

    python benchmarks/bench_pairs.py [CLEAN_DIR NOISE_DIR] [--batches 200] [--json]

CLEAN_DIR and NOISE_DIR are folders written by `jsqa-tf prepare` (LibriSpeech and CHiME-3);
without them the built-in demo corpus is written and prepared in a temporary folder. The
sampler yields (clean, noise, snr_db, num_valid_samples) batches of 8 pairs of 4 s (paper settings); mixing
(`mix_pair`, both views) is timed on one such batch inside a tf.function, as in a train step.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from jsqa_tf.config import PairConfig  # noqa: E402
from jsqa_tf.data.pairs import make_pair_dataset  # noqa: E402
from jsqa_tf.mixing import mix_pair  # noqa: E402
from jsqa_tf.training import demo_shards  # noqa: E402


def time_sampler(config: PairConfig, batches: int, warmup: int) -> float:
    iterator = iter(make_pair_dataset(config))
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        clean, *_ = next(iterator)
        float(clean[0, 0])  # touch the data
    return batches * config.pairs_per_batch / (time.perf_counter() - start)


def time_mixing(config: PairConfig, repeats: int) -> tuple[float, float]:
    clean, noise, snr_db, num_valid = next(iter(make_pair_dataset(config)))

    def mix(c, n, s, v):
        return mix_pair(c, n, s, num_valid_samples=v, prevent_clipping=True)

    results = []
    for function in (tf.function(mix), mix):
        for _ in range(5):
            float(function(clean, noise, snr_db, num_valid)[0][0, 0])
        start = time.perf_counter()
        for _ in range(repeats):
            float(function(clean, noise, snr_db, num_valid)[0][0, 0])
        results.append(1000 * (time.perf_counter() - start) / repeats)
    return results[0], results[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="*", help="CLEAN_DIR NOISE_DIR (default: the demo corpus)")
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if len(args.dirs) not in (0, 2):
        parser.error("give both CLEAN_DIR and NOISE_DIR, or neither")

    with tempfile.TemporaryDirectory(prefix="bench_pairs-") as scratch:
        clean_dir, noise_dir = args.dirs or demo_shards(scratch)
        config = PairConfig(clean_dir, noise_dir)
        pairs_per_second = time_sampler(config, args.batches, args.warmup)
        mix_ms, mix_eager_ms = time_mixing(config, args.repeats)
    result = {
        "pairs_per_second": round(pairs_per_second, 1),
        "audio_seconds_per_second": round(pairs_per_second * config.crop_seconds, 1),
        "mix_ms_per_batch": round(mix_ms, 3),
        "mix_ms_per_batch_eager": round(mix_eager_ms, 3),
        "pairs_per_batch": config.pairs_per_batch,
        "crop_seconds": config.crop_seconds,
        "cpu_count": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"pair sampler: {result['pairs_per_second']:,.0f} pairs/s "
            f"({result['audio_seconds_per_second']:,.0f} audio-s/s of clean + noise); "
            f"mix_pair: {mix_ms:.2f} ms per batch of {config.pairs_per_batch} x {config.crop_seconds:g} s "
            f"in a tf.function ({mix_eager_ms:.2f} ms eager), {result['cpu_count']} cores"
        )


if __name__ == "__main__":
    main()
