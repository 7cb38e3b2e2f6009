"""Training-step throughput of contrastive pretraining, per encoder preset and precision.

    python benchmarks/bench_train.py [--presets tiny,small] [--precisions float32,mixed_bfloat16]
                                     [--pairs 8] [--crop-seconds 4] [--jit-compile] [--json]

One step = the pretrainer's train step on 8 JND pairs (16 clips) of 4 s: SNR mixing on the
device, encoder forward and backward over both views, NT-Xent, Adam. Inputs are random arrays
already in memory (the input pipeline is measured by bench_data.py / bench_pairs.py), rotated
among three batches. Reported per configuration: ms per step (median), clips/s, audio-s/s and
achieved GFLOP/s against the analytic count: 2 FLOPs per multiply-accumulate × 3 (forward and
backward) × the encoder's MACs per second of audio × seconds of audio per step.

Runs under any Keras backend: KERAS_BACKEND=jax on a GPU machine needs no TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from jsqa_tf.models import ContrastivePretrainer, ProjectionHead, WaveformEncoder  # noqa: E402


def device_name() -> str:
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return f"{device.platform}:{getattr(device, 'device_kind', '')}"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return "gpu" if gpus else "cpu"
    return backend


def batches(pairs: int, samples: int, count: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [
        {
            "clean": (0.1 * rng.standard_normal((pairs, samples))).astype("float32"),
            "noise": (0.1 * rng.standard_normal((pairs, samples))).astype("float32"),
            "snr_db": rng.uniform(-3, 9, (pairs, 2)).astype("float32"),
        }
        for _ in range(count)
    ]


def measure(preset, precision, pairs, crop_seconds, steps, warmup, min_seconds, jit_compile):
    keras.mixed_precision.set_global_policy(precision)
    try:
        keras.utils.set_random_seed(0)
        encoder = WaveformEncoder.from_preset(preset)
        model = ContrastivePretrainer(encoder, ProjectionHead(encoder.contrastive_dim))
        model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit_compile)
        data = batches(pairs, int(crop_seconds * 16_000))
        for i in range(warmup):
            model.train_on_batch(data[i % len(data)])
        times = []
        started = time.perf_counter()
        while len(times) < steps or (time.perf_counter() - started < min_seconds and len(times) < 10 * steps):
            begin = time.perf_counter()
            logs = model.train_on_batch(data[len(times) % len(data)], return_dict=True)
            float(logs["loss"])  # wait for the device
            times.append(time.perf_counter() - begin)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    step = statistics.median(times)
    clips = 2 * pairs
    flops_per_step = 2 * 3 * encoder.macs_per_second() * crop_seconds * clips
    return {
        "preset": preset,
        "precision": precision,
        "backend": keras.backend.backend(),
        "device": device_name(),
        "jit_compile": model.jit_compile,
        "pairs_per_step": pairs,
        "crop_seconds": crop_seconds,
        "ms_per_step": round(1000 * step, 2),
        "clips_per_second": round(clips / step, 2),
        "audio_seconds_per_second": round(clips * crop_seconds / step, 2),
        "gflops": round(flops_per_step / step / 1e9, 1),
        "steps_timed": len(times),
        "loss": float(logs["loss"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="tiny,small")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--crop-seconds", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=5, help="timed steps (at least)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--min-seconds", type=float, default=3.0, help="keep timing up to this long")
    parser.add_argument(
        "--jit-compile",
        choices=["auto", "on", "off"],
        default="auto",
        help="XLA: auto is Keras's choice (JAX: on; TensorFlow: on a GPU only)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON list")
    args = parser.parse_args()

    results = []
    for preset in args.presets.split(","):
        for precision in args.precisions.split(","):
            result = measure(
                preset,
                precision,
                args.pairs,
                args.crop_seconds,
                args.steps,
                args.warmup,
                args.min_seconds,
                args.jit_compile,
            )
            results.append(result)
            if not args.json:
                print(
                    f"{preset:>6} {precision:>15} {result['backend']:>10} {result['device']:>12}: "
                    f"{result['ms_per_step']:9.1f} ms/step  {result['clips_per_second']:8.1f} clips/s  "
                    f"{result['audio_seconds_per_second']:8.1f} audio-s/s  {result['gflops']:9.1f} GFLOP/s",
                    flush=True,
                )
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
