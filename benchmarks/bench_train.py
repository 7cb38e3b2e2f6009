"""Training-step throughput of both stages, per encoder preset and precision.

    python benchmarks/bench_train.py [--stages pretrain,finetune] [--presets tiny,small]
                                     [--precisions float32,mixed_bfloat16] [--pairs 8]
                                     [--crop-seconds 4] [--files 8] [--file-seconds 8]
                                     [--jit-compile auto|on|off] [--json [PATH]]

The models are the ones training builds, from the library's builders and default configs
(`jsqa_tf.training.pretrain.build_pretrainer`, `jsqa_tf.training.finetune.build_regressor`
and `compile_regressor`), with the preset and precision given.
pretrain: the pretrainer's train step on 8 JND pairs (16 clips) of 4 s: SNR mixing on the
device, encoder forward and backward over both views, projection head, NT-Xent, Adam.
finetune: the MOS regressor's train step on 8 whole files of 8 s (NISQA's lengths are
~6-12 s), given as a padded batch with its valid lengths (the masked path fine-tuning runs),
encoder + the paper's 256-128-64 head forward and backward, MSE, Adam. It also prints the
time of one epoch of NISQA_TRAIN_SIM (10,000 files) at that step time.

Inputs are random arrays already in memory (the input pipeline is measured by bench_data.py /
bench_pairs.py), rotated among three batches. After `--warmup` steps (the first compiles),
steps are timed for at least `--steps` and `--min-seconds` (at most 10 x `--steps`).
Reported per configuration: ms per step (median), clips/s, audio-s/s and achieved GFLOP/s
against the analytic count: 2 FLOPs per multiply-accumulate x 3 (forward and backward) x the
encoder's MACs per second of audio x seconds of audio per step.

Runs under any Keras backend: KERAS_BACKEND=jax on a GPU machine needs no TensorFlow.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _common  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from jsqa_tf.config import (  # noqa: E402
    EncoderConfig,
    FinetuneConfig,
    FinetuneTrainingConfig,
    MOSModelConfig,
    PretrainConfig,
    PretrainTrainingConfig,
)
from jsqa_tf.training.finetune import build_regressor, compile_regressor  # noqa: E402
from jsqa_tf.training.pretrain import build_pretrainer  # noqa: E402

NISQA_TRAIN_SIM_FILES = 10_000


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
            "num_valid_samples": np.full(pairs, samples, "int32"),
        }
        for _ in range(count)
    ]


def file_batches(files: int, samples: int, count: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [
        (
            {
                "waveform": (0.1 * rng.standard_normal((files, samples))).astype("float32"),
                "num_valid_samples": np.full(files, samples, "int32"),
            },
            rng.uniform(1, 5, files).astype("float32"),
        )
        for _ in range(count)
    ]


def build(stage: str, preset: str, jit_compile):
    """The compiled model of a stage, as training builds it from a config with this preset."""
    jit = None if jit_compile == "auto" else jit_compile
    if stage == "pretrain":
        training = PretrainTrainingConfig(jit_compile=jit)
        return build_pretrainer(PretrainConfig("", model=EncoderConfig(preset=preset), training=training))
    training = FinetuneTrainingConfig(jit_compile=jit)
    config = FinetuneConfig(model=MOSModelConfig(preset=preset), training=training)
    model = build_regressor(config)
    compile_regressor(model, config, frozen=False)
    return model


def measure(stage, preset, precision, clips, seconds, steps, warmup, min_seconds, jit_compile):
    """clips: pairs (pretrain) or files (finetune) per step; seconds: of each."""
    keras.mixed_precision.set_global_policy(precision)
    try:
        keras.utils.set_random_seed(0)
        model = build(stage, preset, jit_compile)
        encoder = model.encoder
        samples = int(seconds * 16_000)
        if stage == "pretrain":
            data = [(batch,) for batch in batches(clips, samples)]
        else:
            data = file_batches(clips, samples)
        calls, logs = [0], {}

        def train_step():
            logs.update(model.train_on_batch(*data[calls[0] % len(data)], return_dict=True))
            calls[0] += 1
            return float(logs["loss"])  # wait for the device

        window = _common.time_window(
            train_step, min_seconds, warmup_calls=warmup, min_calls=steps, max_calls=10 * steps
        )
    finally:
        keras.mixed_precision.set_global_policy("float32")
    step = window.median_call_seconds()
    pairs, crop_seconds = (clips, seconds) if stage == "pretrain" else (None, seconds)
    clips = 2 * clips if stage == "pretrain" else clips
    flops_per_step = 2 * 3 * encoder.macs_per_second() * crop_seconds * clips
    result = {
        "stage": stage,
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
        "steps_timed": window.calls,
        "loss": float(logs["loss"]),
    }
    if stage == "finetune":
        epoch_steps = -(-NISQA_TRAIN_SIM_FILES // clips)
        result["nisqa_train_sim_epoch_seconds"] = round(epoch_steps * step, 1)
    return result


def line(result: dict) -> str:
    epoch = result.get("nisqa_train_sim_epoch_seconds")
    text = (
        f"{result['stage']:>8} {result['preset']:>6} {result['precision']:>15} {result['backend']:>10} "
        f"{result['device']:>12}: {result['ms_per_step']:9.1f} ms/step  {result['clips_per_second']:8.1f} "
        f"clips/s  {result['audio_seconds_per_second']:8.1f} audio-s/s  {result['gflops']:9.1f} GFLOP/s"
    )
    return text + (f"  NISQA_TRAIN_SIM epoch {epoch:.0f} s" if epoch else "")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", default="pretrain,finetune", help="comma-separated: pretrain, finetune")
    parser.add_argument("--presets", default="tiny,small", help="comma-separated encoder presets")
    parser.add_argument(
        "--precisions", default="float32,mixed_bfloat16", help="comma-separated Keras dtype policies"
    )
    parser.add_argument("--pairs", type=int, default=8, help="pretraining: JND pairs per step")
    parser.add_argument("--crop-seconds", type=float, default=4.0, help="pretraining: seconds a crop")
    parser.add_argument("--files", type=int, default=8, help="fine-tuning: files per step")
    parser.add_argument("--file-seconds", type=float, default=8.0, help="fine-tuning: seconds a file")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (at least)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--min-seconds", type=float, default=3.0, help="keep timing up to this long")
    parser.add_argument(
        "--jit-compile",
        choices=["auto", "on", "off"],
        default="auto",
        help="XLA: auto is Keras's choice (JAX: on; TensorFlow: on a GPU only)",
    )
    parser.add_argument("--json", **_common.JSON_OPTION)
    args = parser.parse_args(argv)
    _common.check_json_path(parser, args.json)
    facts = _common.RunFacts(__file__, argv)

    results = []
    for stage in args.stages.split(","):
        clips, seconds = (
            (args.pairs, args.crop_seconds) if stage == "pretrain" else (args.files, args.file_seconds)
        )
        for preset in args.presets.split(","):
            for precision in args.precisions.split(","):
                result = measure(
                    stage,
                    preset,
                    precision,
                    clips,
                    seconds,
                    args.steps,
                    args.warmup,
                    args.min_seconds,
                    {"auto": "auto", "on": True, "off": False}[args.jit_compile],
                )
                results.append(result)
                if args.json != "-":
                    print(line(result), flush=True)
    return _common.report(facts, {"settings": _common.settings(args), "rows": results}, [], args.json)


if __name__ == "__main__":
    main()
