"""Inference speed and MOS error of every form of the model, per preset, in one run.

    python benchmarks/bench_infer.py [--presets jsqa,small,student] [--batches 1,16] [--threads 2]
                                     [--clip-seconds 10] [--model runs/demo] [--peers]
                                     [--int8-unchunked] [--formats keras,tflite_int8]
                                     [--rounds 3] [--json]

For each preset: Keras (float32, the model called in a tf.function), the exported SavedModel
(its `serving_default`), and TFLite float32 / float16 / int8 (dynamic range) in LiteRT, all
with `--threads` CPU threads, on batches of 1 and 16 clips of 10 s. Reported per row:
`realtime_factor` (seconds of audio scored per second of wall time), `size_bytes` (the .keras
file, the SavedModel folder, the .tflite file), `max_abs_diff_mos` against Keras float32 on
the same clips, and the model's `num_parameters` and `gmac_per_second` (multiply-accumulates
per second of 16 kHz audio, the encoder's `macs_per_second`). Presets are `WaveformEncoder`'s
(jsqa, cdpam, small, tiny) and the on-device student's (`StudentEncoder`: student,
student-waveform, student-tiny). `--int8-unchunked` adds int8 converted from the SavedModel as
it is (one dynamic-range scale per clip, as before `jsqa_tf.quantization`): the row to compare
with. `--formats` keeps only the named forms (Keras, the reference, always); `--rounds N` times
every form N times, in turn, and quotes the median (`realtime_factor_rounds`: each round's).

Weights. MOS differences mean something only where the outputs are not saturated, so the
models are not left random: the `jsqa` and `small` encoders keep random convolution weights
(training them takes far more than a CPU run), but their BatchNorm statistics are set from one
batch of demo audio and the MOS head is fitted to the demo corpus's MOS labels on their
embeddings ("calibrated"). That makes activations and outputs realistic in range, which is what
quantization error depends on; it is not a trained quality model. `--model` (default
`runs/demo`, what `jsqa-tf train --config pipelines/demo.yaml` writes) adds the rows of that
trained model, with its own preset name, when it exists; a trained `jsqa` comes from
`fit_jsqa_jax.py` (a GPU run under JAX) and is passed as `--model jsqa_demo.keras`.

Clips: the demo corpus's NISQA-like files (synthetic speech with known degradations), each
looped to 10 s. `--peers` adds, when installed in this environment, DNSMOS (`speechmos`,
ONNX Runtime) and NISQA (`nisqa`, PyTorch; weights from `--nisqa-weights`) scored on the same
clips, one at a time, so that ratios hold across machines.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from jsqa_tf.audio import SAMPLE_RATE, read_audio  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TFLITE_FORMATS = ("float32", "float16", "int8")
FORMS = ("keras", "saved_model", *(f"tflite_{q}" for q in TFLITE_FORMATS), "tflite_int8_unchunked")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--presets", default="jsqa,small,student", help="Encoder presets (calibrated weights)."
    )
    parser.add_argument("--batches", default="1,16", help="Batch sizes.")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for TF and LiteRT.")
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    parser.add_argument("--min-seconds", type=float, default=3.0, help="Time each row at least this long.")
    parser.add_argument("--model", default=os.path.join("runs", "demo"), help="A trained run or .keras file.")
    parser.add_argument("--peers", action="store_true", help="Also DNSMOS and NISQA, where installed.")
    parser.add_argument(
        "--nisqa-weights",
        default=os.path.join(REPO, "..", "shared", "data", "peers", "nisqa.tar"),
        help="NISQA's nisqa.tar (its weights are not in the nisqa package).",
    )
    parser.add_argument(
        "--int8-unchunked", action="store_true", help="Also int8 converted without the chunked copy (before)."
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="Time every form this many times, in turn, and quote the median (a noisy machine).",
    )
    parser.add_argument(
        "--formats", default="", help="Only these forms, e.g. keras,tflite_int8 (default: all)."
    )
    parser.add_argument("--json", action="store_true", help="Print the rows as one JSON list.")
    args = parser.parse_args(argv)
    unknown = sorted(set(named_forms(args.formats)) - set(FORMS))
    if unknown:
        parser.error(f"--formats: unknown {', '.join(unknown)}; one of {', '.join(FORMS)}")
    args.int8_unchunked = args.int8_unchunked or "tflite_int8_unchunked" in named_forms(args.formats)
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, not {args.rounds}")
    return args


def named_forms(formats: str) -> list[str]:
    """The forms a `--formats` value names."""
    return [f for f in formats.split(",") if f]


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- data ----------------------------------------------------------------------------------------


def demo_data(workdir: str, clip_seconds: float, num_clips: int = 16):
    """(clips [num_clips, samples] from the val files, train crops [n, 2 s], their MOS)."""
    from jsqa_tf.data.corpora import read_nisqa
    from jsqa_tf.data.demo import demo_paths, make_demo_corpus

    make_demo_corpus(os.path.join(workdir, "demo"), seed=0)
    corpus = read_nisqa(demo_paths(os.path.join(workdir, "demo"))["nisqa"])
    val = [r for r in corpus.records if "VAL" in r.database]
    train = [r for r in corpus.records if "VAL" not in r.database]
    clip_samples = int(clip_seconds * SAMPLE_RATE)
    clips = np.stack([np.resize(read_audio(val[i % len(val)].path), clip_samples) for i in range(num_clips)])
    crop = 2 * SAMPLE_RATE
    crops = []
    for record in train:
        audio = read_audio(record.path)
        start = max(0, (len(audio) - crop) // 2)
        crops.append(np.resize(audio[start : start + crop], crop))
    mos = np.array([r.mos for r in train], dtype=np.float32)
    return clips.astype(np.float32), np.stack(crops).astype(np.float32), mos


# --- models ----------------------------------------------------------------------------------------


def calibrated_model(preset: str, crops: np.ndarray, mos: np.ndarray):
    """Random convolutions, BatchNorm statistics of one demo batch, head fitted to demo MOS."""
    import keras

    from jsqa_tf.models import MOSRegressor, encoder_from_preset

    keras.utils.set_random_seed(0)
    model = MOSRegressor(encoder_from_preset(preset, name="encoder"), name="mos_regressor")
    batch_norms = [
        layer for layer in model.encoder.layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    for layer in batch_norms:
        layer.momentum = 0.0  # the moving statistics become this batch's
    model.encoder(crops[:16], training=True)
    for layer in batch_norms:
        layer.momentum = model.encoder.batch_norm_momentum
    embeddings = np.concatenate([model.embed(crops[i : i + 8]).numpy() for i in range(0, len(crops), 8)])
    model.head.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse")
    model.head.fit(embeddings, mos[:, None], batch_size=16, epochs=300, verbose=0)
    fitted = model.head.predict(embeddings, verbose=0)[:, 0]
    log(
        f"{preset}: head fitted on {len(mos)} demo crops, RMSE {np.sqrt(np.mean((fitted - mos) ** 2)):.3f}, "
        f"outputs {fitted.min():.2f}..{fitted.max():.2f}"
    )
    return model


def preset_of(encoder) -> str:
    """The preset an encoder was built from (every argument equal to the preset's value or, if
    the preset does not set it, to the default), or "custom"."""
    import inspect

    from jsqa_tf.models import PRESETS, STUDENT_PRESETS, StudentEncoder

    presets = STUDENT_PRESETS if isinstance(encoder, StudentEncoder) else PRESETS
    parameters = inspect.signature(type(encoder).__init__).parameters
    defaults = {k: p.default for k, p in parameters.items() if p.default is not inspect.Parameter.empty}
    defaults["contrastive_dim"] = None  # None means half the embedding
    for name, preset in presets.items():
        expected = {**defaults, **preset}
        expected["contrastive_dim"] = expected["contrastive_dim"] or expected["embedding_dim"] // 2
        normal = lambda v: tuple(v) if isinstance(v, list | tuple) else v  # noqa: E731
        if all(normal(getattr(encoder, k)) == normal(v) for k, v in expected.items()):
            return name
    return "custom"


class LiteScorer:
    """A TFLite model's score function whose interpreter is made on the first call and dropped
    by `release()`: at batch 16 × 10 s each `jsqa` interpreter holds GBs of tensors, and
    keeping every form's at once held 17 GB of a 23 GB machine."""

    def __init__(self, path: str, threads: int):
        self.path, self.threads, self.model = path, threads, None

    def __call__(self, waveform):
        from jsqa_tf.lite import LiteModel

        self.model = self.model or LiteModel(self.path, num_threads=self.threads)
        return self.model.score(waveform)

    def release(self):
        self.model = None


def folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def forms(model, workdir: str, threads: int, int8_unchunked: bool = False, only: tuple = ()) -> dict:
    """name -> (score function float32 [b, n] -> MOS [b], size in bytes) for every form (or
    for those in `only`; Keras float32, the reference, always)."""
    import tensorflow as tf

    from jsqa_tf.export import convert_tflite, save_serving_model

    os.makedirs(workdir, exist_ok=True)
    keras_path = os.path.join(workdir, "model.keras")
    model.save(keras_path)
    keras_fn = tf.function(
        lambda waveform: model(waveform, training=False),
        input_signature=[tf.TensorSpec([None, None], tf.float32)],
    )
    saved_model_dir = os.path.join(workdir, "saved_model")
    save_serving_model(model, saved_model_dir)
    loaded = tf.saved_model.load(saved_model_dir)

    def saved_model_score(x, loaded=loaded):  # holds `loaded`: its signature needs its variables
        return loaded.signatures["serving_default"](waveform=tf.constant(x))["mos"].numpy()

    result = {
        "keras": (lambda x: keras_fn(x).numpy(), os.path.getsize(keras_path)),
        "saved_model": (saved_model_score, folder_bytes(saved_model_dir)),
    }
    if only:
        result = {name: form for name, form in result.items() if name == "keras" or name in only}
    for quantization in TFLITE_FORMATS:
        if only and f"tflite_{quantization}" not in only:
            continue
        log(f"  converting to TFLite {quantization}")
        path = os.path.join(workdir, f"model-{quantization}.tflite")
        with open(path, "wb") as stream:
            stream.write(convert_tflite(saved_model_dir, quantization, model=model))
        result[f"tflite_{quantization}"] = (LiteScorer(path, threads), os.path.getsize(path))
    # int8 as converted before jsqa_tf.quantization: one scale per clip
    if int8_unchunked and (not only or "tflite_int8_unchunked" in only):
        path = os.path.join(workdir, "model-int8-unchunked.tflite")
        with open(path, "wb") as stream:
            stream.write(convert_tflite(saved_model_dir, "int8"))
        result["tflite_int8_unchunked"] = (LiteScorer(path, threads), os.path.getsize(path))
    return result


# --- timing ---------------------------------------------------------------------------------------------


def time_scoring(score, batch: np.ndarray, min_seconds: float) -> tuple[float, np.ndarray]:
    """(audio seconds per wall second, the MOS of the batch); one untimed warm-up call first."""
    score(batch[:1, :SAMPLE_RATE])
    runs, start = 0, time.perf_counter()
    while True:
        mos = score(batch)
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            break
    return runs * batch.size / SAMPLE_RATE / elapsed, np.asarray(mos, dtype=np.float64).reshape(-1)


def bench_model(label: str, weights: str, model, clips, args, workdir) -> list[dict]:
    log(f"{label}: exporting")
    only = tuple(named_forms(args.formats))
    scorers = forms(model, os.path.join(workdir, label), args.threads, args.int8_unchunked, only)
    rows = []
    for batch_size in [int(b) for b in args.batches.split(",")]:
        batch = clips[:batch_size]
        timings = {name: [] for name in scorers}
        for _ in range(args.rounds):  # forms in turn, so a load change touches all alike
            for name, (score, _) in scorers.items():
                rtf, mos = time_scoring(score, batch, args.min_seconds)
                getattr(score, "release", lambda: None)()
                timings[name].append((rtf, mos))
        reference = timings["keras"][0][1]
        for name, (_, size) in scorers.items():
            rtfs = [rtf for rtf, _ in timings[name]]
            rtf, mos = float(np.median(rtfs)), timings[name][0][1]
            row = {
                "format": name,
                "preset": label,
                "batch": batch_size,
                "threads": args.threads,
                "realtime_factor": round(rtf, 2),
                "realtime_factor_rounds": [round(r, 2) for r in rtfs],
                "size_bytes": size,
                "max_abs_diff_mos": float(np.max(np.abs(mos - reference))),
                "weights": weights,
                "mos_range": [round(float(mos.min()), 3), round(float(mos.max()), 3)],
                "num_parameters": int(model.count_params()),
                "gmac_per_second": round(model.encoder.macs_per_second() / 1e9, 5),
            }
            log(
                f"  {name:15s} batch {batch_size:2d}: {rtf:8.1f}x real time, {size / 1e6:7.2f} MB, "
                f"max |dMOS| {row['max_abs_diff_mos']:.2e}"
                + (f" (rounds: {', '.join(f'{r:.1f}' for r in rtfs)})" if len(rtfs) > 1 else "")
            )
            rows.append(row)
    return rows


# --- peers -------------------------------------------------------------------------------------------------


def peer_rows(clips: np.ndarray, args, workdir: str) -> list[dict]:
    """DNSMOS and NISQA on the same clips, one clip at a time, where their packages are installed."""
    rows = []
    try:
        from speechmos import dnsmos
    except ImportError as error:
        log(f"peers: DNSMOS skipped (speechmos not importable: {error})")
    else:
        score = lambda x: np.array([dnsmos.run(clip, sr=SAMPLE_RATE)["ovrl_mos"] for clip in x])  # noqa: E731
        rtf, mos = time_scoring(score, clips[:1], args.min_seconds)
        folder = os.path.join(os.path.dirname(dnsmos.__file__), "dnsmos_models")
        size = sum(os.path.getsize(os.path.join(folder, f)) for f in ("sig_bak_ovr.onnx", "model_v8.onnx"))
        rows.append(_peer_row("dnsmos_onnx", rtf, size, mos, args))
    try:
        from nisqa.NISQA_model import nisqaModel
    except ImportError as error:
        log(f"peers: NISQA skipped (nisqa not importable: {error})")
    else:
        if not os.path.isfile(args.nisqa_weights):
            log(f"peers: NISQA skipped (no weights at {args.nisqa_weights})")
        else:
            rows.append(_nisqa_row(nisqaModel, clips, args, workdir))
    return rows


def _nisqa_row(nisqa_model, clips, args, workdir) -> dict:
    import torch

    from jsqa_tf.audio import write_wav

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Empty filters detected")  # NISQA's mel bank at 48 kHz
    folder = os.path.join(workdir, "nisqa_clips")
    os.makedirs(folder, exist_ok=True)
    write_wav(os.path.join(folder, "clip.wav"), clips[0])
    with contextlib.redirect_stdout(io.StringIO()):  # NISQA prints its tables: keep stdout JSON
        model = nisqa_model(
            {
                "mode": "predict_file",
                "pretrained_model": args.nisqa_weights,
                "deg": os.path.join(folder, "clip.wav"),
                "output_dir": None,
                "ms_channel": None,
                "tr_bs_val": 1,
                "tr_num_workers": 0,
                "tr_parallel": False,
            }
        )

    def score(_batch):
        with contextlib.redirect_stdout(io.StringIO()):
            return model.predict()["mos_pred"].to_numpy()

    rtf, mos = time_scoring(score, clips[:1], args.min_seconds)  # reads, resamples and scores the file
    return _peer_row("nisqa_torch", rtf, os.path.getsize(args.nisqa_weights), mos, args)


def _peer_row(name, rtf, size, mos, args) -> dict:
    log(f"  {name:15s} batch  1: {rtf:8.1f}x real time, {size / 1e6:7.2f} MB, MOS {mos[0]:.2f}")
    return {
        "format": name,
        "preset": "peer",
        "batch": 1,
        "threads": args.threads,
        "realtime_factor": round(rtf, 2),
        "size_bytes": size,
        "max_abs_diff_mos": None,
        "weights": "published",
        "mos_range": [round(float(mos.min()), 3), round(float(mos.max()), 3)],
    }


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_infer-") as workdir:
        log("writing the demo corpus")
        clips, crops, mos = demo_data(workdir, args.clip_seconds)
        for preset in [p for p in args.presets.split(",") if p]:
            model = calibrated_model(preset, crops, mos)
            rows += bench_model(preset, "calibrated", model, clips, args, workdir)
        if os.path.exists(args.model):
            from jsqa_tf.models import load_mos_regressor

            model = load_mos_regressor(args.model)
            preset = preset_of(model.encoder)
            rows += bench_model(preset, f"trained ({args.model})", model, clips, args, workdir)
        else:
            log(f"no trained model at {args.model}: its rows are skipped")
        if args.peers:
            rows += peer_rows(clips, args, workdir)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for row in rows:
            print(
                f"{row['preset']:16s} {row['format']:15s} batch {row['batch']:2d}  "
                f"{row['realtime_factor']:8.1f}x  {row['size_bytes'] / 1e6:8.2f} MB  "
                f"max|dMOS| {row['max_abs_diff_mos'] if row['max_abs_diff_mos'] is not None else '-'}"
                + (
                    f"  {row['num_parameters']:,} params, {row['gmac_per_second']:g} GMAC/s"
                    if "num_parameters" in row
                    else ""
                )
            )
    return rows


if __name__ == "__main__":
    from jsqa_tf.errors import JSQAError

    try:
        main()
    except JSQAError as error:  # a bad --model: one line naming the file
        sys.exit(f"error: {error}")
