"""Trains the full `jsqa` MOS model on demo audio on a GPU under JAX: trained weights to
measure int8 error on (`bench_infer.py --model`).

    # here: the training data (demo corpora, int16), < 64 MiB (`--small`: a quick check's)
    python benchmarks/fit_jsqa_jax.py data --out .device/jsqa_data.npz
    # on a GPU machine with JAX and Keras (no TensorFlow needed), the weights as float16 parts
    KERAS_BACKEND=jax python benchmarks/fit_jsqa_jax.py fit --data .device/jsqa_data.npz --out OUT
    # here: the parts -> a float32 .keras file
    python benchmarks/fit_jsqa_jax.py assemble --weights OUT --out jsqa_demo.keras

Why: quantization error means something only on trained weights (random ones saturate the
sigmoid or sit in its middle), and the 22 M-parameter `jsqa` encoder (~58 GMAC a second of
audio) trains far too slowly on a CPU. This is a benchmark fixture, not a quality model:
`jsqa` trained from scratch (no contrastive pretraining) with the MSE of `MOSRegressor` on
random 3 s crops of the demo corpus's synthetic NISQA-like files (labels from a formula of
known degradations, README) under mixed bfloat16, Adam. Train: a second demo corpus (seed 1,
`--extra-files` files) and the demo's own train files (seed 0, 44 files); validation: the
demo's val files (seed 0, 16 files of other speakers), the files `bench_infer.py` scores.
Weights come back as float16 (a GPU machine returns at most 16 MiB a file, 64 MiB in all; the
float32 weights are 88 MB), so the assembled model is the trained one rounded to float16.

The model and its loss are the library's: `MOSRegressor(encoder_from_preset(preset))`, trained
by Keras's `fit` with the regressor's own loss (MSE) and scored with `jsqa_tf.metrics`. `fit`
writes `fit.json` (the figures, the run's facts: machine with its GPU, date, command; the
history) into OUT last, and with `--json PATH` the same figures without the history. Nothing
this script imports needs TensorFlow (the `fit` step runs where there is none).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time
import zipfile

import _common
import numpy as np

from jsqa_lite.contract import SAMPLE_RATE
from jsqa_tf import atomic

PART_BYTES = 15 * 2**20


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    steps = parser.add_subparsers(dest="step", required=True)
    data = steps.add_parser("data", help="Write the training data (needs the package's audio reader).")
    data.add_argument("--out", required=True)
    data.add_argument("--extra-files", type=int, default=200, help="Files of the seed-1 demo corpus.")
    data.add_argument("--small", action="store_true", help="Both demo corpora at the small demo's sizes.")
    fit = steps.add_parser("fit", help="Train under KERAS_BACKEND=jax; write float16 weight parts.")
    fit.add_argument("--data", required=True)
    fit.add_argument("--out", required=True)
    fit.add_argument("--minutes", type=float, default=4.0, help="Training time (after compiling).")
    fit.add_argument("--batch-size", type=int, default=32)
    fit.add_argument("--crop-seconds", type=float, default=3.0)
    fit.add_argument("--learning-rate", type=float, default=2e-4)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--preset", default="jsqa", help="Encoder preset (`tiny` for a quick CPU check).")
    fit.add_argument("--steps-per-epoch", type=int, default=32)
    fit.add_argument("--json", **_common.JSON_OPTION)
    assemble = steps.add_parser("assemble", help="float16 weight parts -> a float32 .keras file.")
    assemble.add_argument("--weights", required=True, help="The folder `fit` wrote.")
    assemble.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.step == "fit":
        _common.check_json_path(fit, args.json)
    return args


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def build_model(preset: str = "jsqa"):
    from jsqa_tf.models import MOSRegressor, encoder_from_preset

    return MOSRegressor(encoder_from_preset(preset))


# --- data (here) ----------------------------------------------------------------------------------


def write_data(out: str, extra_files: int, small: bool = False) -> None:
    from jsqa_tf.data.demo import SMALL_DEMO, make_demo_corpus

    sizes = SMALL_DEMO if small else {}
    with tempfile.TemporaryDirectory() as workdir:
        splits = {"train": [], "val": []}
        for seed, num_files in ((0, SMALL_DEMO["num_mos_files"] if small else 60), (1, extra_files)):
            root = os.path.join(workdir, f"demo{seed}")
            files = _common.demo_mos_files(
                make_demo_corpus(root, seed=seed, **{**sizes, "num_mos_files": num_files})
            )
            splits["train"] += files["train"]
            splits["val" if seed == 0 else "train"] += files["val"]
        arrays = {}
        for split, files in splits.items():
            pcm = [np.round(np.clip(audio, -1, 32767 / 32768) * 32768).astype(np.int16) for audio, _ in files]
            arrays[f"{split}_pcm"] = np.concatenate(pcm)
            arrays[f"{split}_lengths"] = np.array([len(p) for p in pcm], np.int64)
            arrays[f"{split}_mos"] = np.array([mos for _, mos in files], np.float32)
            log(f"{split}: {len(files)} files, {sum(len(p) for p in pcm) / SAMPLE_RATE:.0f} s")
    with atomic.atomic_path(out) as temp:
        np.savez(temp, **arrays)
    log(f"wrote {out} ({os.path.getsize(out) / 2**20:.1f} MiB)")


def load_split(data, split):
    pcm, lengths = data[f"{split}_pcm"], data[f"{split}_lengths"]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    files = [pcm[s : s + n].astype(np.float32) / 32768.0 for s, n in zip(starts, lengths, strict=True)]
    return files, data[f"{split}_mos"]


def padded(files):
    """The masked batch input: waveforms zero-padded to the longest, and their lengths."""
    from jsqa_lite.scoring import pad_batch

    waveform, lengths = pad_batch(files)
    return {"waveform": waveform, "num_valid_samples": lengths}


def scores(predicted, labels) -> dict:
    from jsqa_tf import metrics

    return {
        "pcc": metrics.pcc(labels, predicted),
        "rmse": metrics.rmse(labels, predicted),
        "mos_range": [float(predicted.min()), float(predicted.max())],
    }


def load_npz(path: str):
    """An .npz `data` or `fit` wrote, or exit with one line naming the file."""
    if not zipfile.is_zipfile(path):
        sys.exit(f"{path}: missing, or not an .npz archive")
    try:
        return np.load(path)
    except (OSError, ValueError) as error:
        sys.exit(f"{path}: cannot read it ({error})")


# --- fit (GPU, JAX) -------------------------------------------------------------------------------


def fit(args, facts: _common.RunFacts) -> dict:
    import keras

    keras.config.set_dtype_policy("mixed_bfloat16")
    data = load_npz(args.data)
    if any(f"{split}_pcm" not in data.files for split in ("train", "val")):
        sys.exit(f"{args.data}: not written by `fit_jsqa_jax.py data` (no train_pcm / val_pcm)")
    train, train_mos = load_split(data, "train")
    val, val_mos = load_split(data, "val")
    crop = int(args.crop_seconds * SAMPLE_RATE)
    if min(len(f) for f in train) < crop:
        sys.exit(f"{args.data}: a training file is shorter than the {args.crop_seconds} s crop")
    rng = np.random.default_rng(args.seed)
    keras.utils.set_random_seed(args.seed)
    model = build_model(args.preset)
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate))
    log(f"backend {keras.backend.backend()}, devices {__import__('jax').devices()}")
    val_inputs = padded(val)

    def epoch_crops():
        picks = rng.integers(len(train), size=args.steps_per_epoch * args.batch_size)
        x = np.stack([_crop(train[i], crop, rng) for i in picks])
        return x, train_mos[picks]

    history, epoch, started, budget = [], 0, None, args.minutes * 60
    while started is None or time.time() - started < budget:
        x, y = epoch_crops()
        if started is not None and time.time() - started > 0.7 * budget:
            model.optimizer.learning_rate = args.learning_rate / 10
        t0 = time.time()
        logs = model.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0).history
        seconds = time.time() - t0
        if started is None:  # the first epoch compiles; the budget counts from its end
            started = time.time()
        epoch += 1
        line = {"epoch": epoch, "rmse": round(logs["rmse"][-1], 4), "seconds": round(seconds, 2)}
        if epoch % 10 == 0:
            line["val"] = scores(np.asarray(model.predict(val_inputs, batch_size=16, verbose=0)), val_mos)
        history.append(line)
        log(json.dumps(line))
    timed = [h["seconds"] for h in history[1:]] or [history[0]["seconds"]]  # the first compiles
    clips_per_second = args.steps_per_epoch * args.batch_size / np.median(timed)
    final = scores(np.asarray(model.predict(val_inputs, batch_size=16, verbose=0)), val_mos)
    log(f"final val ({len(val)} whole files): {final}")
    log(f"{clips_per_second:.0f} clips of {args.crop_seconds} s a second")
    os.makedirs(args.out, exist_ok=True)
    save_parts([np.asarray(w) for w in model.get_weights()], args.out)
    summary = {"epochs": epoch, "clips_per_second": clips_per_second, "val": final}
    summary["args"] = _common.settings(args)
    # Last: a fit.json means every part is whole (`assemble` reads it first).
    atomic.write_json(os.path.join(args.out, "fit.json"), facts.as_dict() | summary | {"history": history})
    return _common.report(facts, summary, [], args.json)


def _crop(audio, crop, rng):
    offset = rng.integers(len(audio) - crop + 1)
    return audio[offset : offset + crop]


def save_parts(weights, out: str) -> None:
    """The weights as float16, in .npz parts of at most ~15 MiB (key: the weight's index)."""
    parts = [{}]
    for index, weight in enumerate(weights):
        if parts[-1] and sum(w.nbytes for w in parts[-1].values()) + weight.size * 2 > PART_BYTES:
            parts.append({})
        parts[-1][f"w{index:04d}"] = weight.astype(np.float16)
    for number, part in enumerate(parts):
        with atomic.atomic_path(os.path.join(out, f"weights{number}.npz")) as temp:
            np.savez(temp, **part)


# --- assemble (here) ------------------------------------------------------------------------------


def assemble(args) -> None:
    summary = os.path.join(args.weights, "fit.json")
    try:
        with open(summary) as f:
            model = build_model(json.load(f)["args"]["preset"])
    except (OSError, ValueError, KeyError) as error:
        sys.exit(f"{summary}: not a summary `fit` wrote ({error!r})")
    loaded = {}
    for path in sorted(glob.glob(os.path.join(args.weights, "weights*.npz"))):
        with load_npz(path) as part:
            loaded.update({key: part[key] for key in part.files})
    weights = [loaded[key].astype(np.float32) for key in sorted(loaded)]
    if len(weights) != len(model.get_weights()):
        sys.exit(f"{args.weights}: {len(weights)} weights, the jsqa model has {len(model.get_weights())}")
    try:
        model.set_weights(weights)
    except ValueError as error:
        sys.exit(f"{args.weights}: the weights do not fit the model fit.json names ({error})")
    with atomic.atomic_path(args.out) as temp:
        model.save(temp)
    log(f"wrote {args.out}")


def main(argv=None) -> dict | None:
    args = parse_args(argv)
    if args.step == "data":
        write_data(args.out, args.extra_files, args.small)
    elif args.step == "fit":
        return fit(args, _common.RunFacts(__file__, argv))
    else:
        assemble(args)
    return None


if __name__ == "__main__":
    main()
