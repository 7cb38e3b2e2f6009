"""Inference speed and MOS error of every form of the model, per preset, in one run.

    python benchmarks/bench_infer.py [--presets jsqa,small,student] [--batches 1,16] [--threads 2]
                                     [--clip-seconds 10] [--model runs/demo] [--peers]
                                     [--int8-unchunked] [--formats keras,tflite_int8]
                                     [--rounds 3] [--demo-dir DIR] [--json [PATH]]

For each preset: the model saved as a `.keras` file and exported by the library
(`jsqa_tf.export.export_model`: the SavedModel and TFLite float32 / float16 / int8, dynamic
range, as `jsqa-tf export` writes them), each form opened by `predict`'s backends
(`jsqa_tf.predict.open_backend`: Keras float32, the SavedModel's `serving_default`, TFLite in
LiteRT) with `--threads` CPU threads and scored as `predict` scores files
(`jsqa_lite.scoring.score_files`), on batches of 1 and 16 clips of 10 s, each form timed for
`--min-seconds` after one untimed call. Reported per row: `realtime_factor` (seconds of audio
scored per second of wall time), `size_bytes` (the .keras file, the SavedModel folder without
`assets.extra`, the .tflite file), `max_abs_diff_mos` against Keras float32 on
the same clips, and the model's `num_parameters` and `gmac_per_second` (multiply-accumulates
per second of 16 kHz audio, the encoder's `macs_per_second`). Presets are `WaveformEncoder`'s
(jsqa, cdpam, small, tiny) and the on-device student's (`StudentEncoder`: student,
student-waveform, student-tiny). `--int8-unchunked` adds int8 converted from the SavedModel as
it is (one dynamic-range scale per clip, without `jsqa_tf.quantization`'s chunks): the row to
compare with. `--formats` keeps only the named forms (Keras, the reference, always);
`--rounds N` times every form N times, in turn, and quotes the median
(`realtime_factor_rounds`: each round's).

Weights. MOS differences mean something only where the outputs are not saturated, so the
models are not left random: the `jsqa` and `small` encoders keep random convolution weights
(training them takes far more than a CPU run), but their BatchNorm statistics are set from one
batch of demo audio and the MOS head is fitted to the demo corpus's MOS labels on their
embeddings ("calibrated", `jsqa_tf.models.calibration`). That makes activations and outputs
realistic in range, which is what quantization error depends on; it is not a trained quality
model. `--model` (default `runs/demo`, what `jsqa-tf train --config pipelines/demo.yaml`
writes) adds the rows of that trained model, with its own preset name, when it exists; a
trained `jsqa` comes from `fit_jsqa_jax.py` (a GPU run under JAX) and is passed as
`--model jsqa_demo.keras`.

Clips: the demo corpus's NISQA-like files (synthetic speech with known degradations), each
looped to 10 s; the corpus is written to a temporary folder, or read from `--demo-dir`.
`--peers` adds, when installed in this environment, DNSMOS (`speechmos`, ONNX Runtime) and
NISQA (`nisqa`, PyTorch; weights from `--nisqa-weights`) scored on the same clips, one at a
time, so that ratios hold across machines.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import os
import sys
import tempfile
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _common  # noqa: E402
import numpy as np  # noqa: E402

from jsqa_lite.contract import SAMPLE_RATE  # noqa: E402

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
        "--int8-unchunked", action="store_true", help="Also int8 converted without the chunked copy."
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
    parser.add_argument(
        "--demo-dir",
        help="A demo corpus (`jsqa-tf demo-data DIR`; written there when absent; default: a temporary one).",
    )
    parser.add_argument("--json", **_common.JSON_OPTION)
    args = parser.parse_args(argv)
    _common.check_json_path(parser, args.json)
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


def demo_data(paths: dict, clip_seconds: float, num_clips: int = 16):
    """(clips [num_clips, samples] from the val files, train crops [n, 2 s], their MOS)."""
    files = _common.demo_mos_files(paths)
    clip_samples = int(clip_seconds * SAMPLE_RATE)
    val = [audio for audio, _ in files["val"]]
    clips = np.stack([np.resize(val[i % len(val)], clip_samples) for i in range(num_clips)])
    crop = 2 * SAMPLE_RATE
    crops = []
    for audio, _ in files["train"]:
        start = max(0, (len(audio) - crop) // 2)
        crops.append(np.resize(audio[start : start + crop], crop))
    mos = np.array([mos for _, mos in files["train"]], dtype=np.float32)
    return clips.astype(np.float32), np.stack(crops).astype(np.float32), mos


# --- models ----------------------------------------------------------------------------------------


def calibrated_model(preset: str, crops: np.ndarray, mos: np.ndarray):
    """Random convolutions, BatchNorm statistics of 16 demo crops, head fitted to demo MOS."""
    model, fitted = _common.calibrated_model(preset, crops, mos, batch_norm_clips=crops[:16])
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


def folder_bytes(path: str, skip: tuple[str, ...] = ()) -> int:
    return sum(
        os.path.getsize(os.path.join(folder, name))
        for folder, subfolders, names in os.walk(path)
        if not any(part in skip for part in os.path.relpath(folder, path).split(os.sep))
        for name in names
    )


def forms(keras_path: str, label: str, workdir: str, args) -> dict:
    """name -> (open: () -> a `predict` backend, size in bytes) for every form named by
    `--formats` (Keras float32, the reference, always): the `.keras` file, and what
    `jsqa_tf.export.export_model` writes from it (the SavedModel, TFLite files)."""
    from jsqa_tf.export import convert_tflite, export_model
    from jsqa_tf.predict import open_backend

    only = named_forms(args.formats)
    wanted = [name for name in FORMS if name == "keras" or not only or name in only]
    if not args.int8_unchunked:
        wanted = [name for name in wanted if name != "tflite_int8_unchunked"]
    result = {"keras": (lambda: open_backend(keras_path, args.threads), os.path.getsize(keras_path))}
    if wanted == ["keras"]:
        return result
    quantizations = [q for q in TFLITE_FORMATS if f"tflite_{q}" in wanted]
    summary = export_model(
        keras_path,
        label,
        os.path.join(workdir, "saved_models"),
        tflite=quantizations,
        on_step=lambda text: log(f"  {text}"),
    )
    saved_model = summary["saved_model"]
    if "saved_model" in wanted:  # without assets.extra (TF Serving's warm-up requests, the contract)
        size = folder_bytes(saved_model, skip=("assets.extra",))
        result["saved_model"] = (lambda: open_backend(saved_model, args.threads), size)
    for quantization, tflite in summary["tflite"].items():
        opener = lambda path=tflite["path"]: open_backend(path, args.threads)  # noqa: E731
        result[f"tflite_{quantization}"] = (opener, tflite["size_bytes"])
    if "tflite_int8_unchunked" in wanted:  # int8 converted from the SavedModel as it is: one scale per clip
        log("  converting to TFLite int8 without the chunked copy")
        path = os.path.join(workdir, f"{label}-int8-unchunked.tflite")
        with open(path, "wb") as stream:
            stream.write(convert_tflite(saved_model, "int8"))
        result["tflite_int8_unchunked"] = (lambda: open_backend(path, args.threads), os.path.getsize(path))
    return result


# --- timing ---------------------------------------------------------------------------------------------


def score_clips(backend, clips: np.ndarray, batch_size: int) -> np.ndarray:
    """The clips' MOS as `predict` scores them (`jsqa_lite.scoring.score_files`: one window
    per clip, `batch_size` windows a call)."""
    from jsqa_lite.scoring import score_files

    scores = list(
        score_files(
            enumerate(clips),
            lambda batch, _: backend.score(batch),
            window_samples=clips.shape[1],
            masks_padding=False,
            batch_size=batch_size,
        )
    )
    failed = [score.error for score in scores if not score.ok]
    if failed:
        raise RuntimeError(f"{backend.kind}: {failed[0]}")
    return np.array([score.mos for score in scores])


def time_scoring(open_backend, batch: np.ndarray, min_seconds: float) -> tuple[float, np.ndarray]:
    """(audio seconds per wall second, the MOS of the batch) over a window of `min_seconds`
    after one untimed call. The backend is opened here and dropped after: at batch 16 x 10 s a
    `jsqa` TFLite interpreter holds GBs of tensors, and every form's at once held 17 GB of a
    23 GB machine."""
    backend, scores = open_backend(), []

    def score():
        scores.append(score_clips(backend, batch, len(batch)))

    window = _common.time_window(score, min_seconds, warmup_calls=1)
    backend = None
    gc.collect()
    return window.per_second(batch.size / SAMPLE_RATE), scores[-1]


def bench_model(label: str, weights: str, model, keras_path: str, clips, args, workdir) -> list[dict]:
    log(f"{label}: exporting")
    scorers = forms(keras_path, label, os.path.join(workdir, label), args)
    rows = []
    for batch_size in [int(b) for b in args.batches.split(",")]:
        batch = clips[:batch_size]
        timings = {name: [] for name in scorers}
        for _ in range(args.rounds):  # forms in turn, so a load change touches all alike
            for name, (opener, _) in scorers.items():
                timings[name].append(time_scoring(opener, batch, args.min_seconds))
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


class PeerBackend:
    """A peer's score function as a `predict` backend."""

    def __init__(self, kind: str, score):
        self.kind, self.score = kind, score


def peer_rows(clips: np.ndarray, args, workdir: str) -> list[dict]:
    """DNSMOS and NISQA on the same clips, one clip at a time, where their packages are installed."""
    rows = []
    try:
        from speechmos import dnsmos
    except ImportError as error:
        log(f"peers: DNSMOS skipped (speechmos not importable: {error})")
    else:
        score = lambda x: np.array([dnsmos.run(clip, sr=SAMPLE_RATE)["ovrl_mos"] for clip in x])  # noqa: E731
        rtf, mos = time_scoring(lambda: PeerBackend("dnsmos", score), clips[:1], args.min_seconds)
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

    # reads, resamples and scores the file
    rtf, mos = time_scoring(lambda: PeerBackend("nisqa", score), clips[:1], args.min_seconds)
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


def main(argv=None) -> dict:
    args = parse_args(argv)
    facts = _common.RunFacts(__file__, argv)
    import tensorflow as tf

    from jsqa_tf.models import find_model_file, load_mos_regressor

    try:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow ran in this process before main() (a test): its pools stay
        log("TensorFlow is initialised already: its thread pools are kept as they are")
    tf_threads = {
        "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
    }
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_infer-") as workdir:
        log("reading the demo corpus" if args.demo_dir else "writing the demo corpus")
        paths = _common.demo_corpus(args.demo_dir or os.path.join(workdir, "demo"))
        clips, crops, mos = demo_data(paths, args.clip_seconds)
        for index, preset in enumerate(p for p in args.presets.split(",") if p):
            model = calibrated_model(preset, crops, mos)
            folder = os.path.join(workdir, f"{index}-{preset}")
            keras_path = os.path.join(folder, "model.keras")
            os.makedirs(folder)
            model.save(keras_path)
            rows += bench_model(preset, "calibrated", model, keras_path, clips, args, folder)
        if args.model and os.path.exists(args.model):
            keras_path = find_model_file(args.model)
            model = load_mos_regressor(keras_path)
            preset = preset_of(model.encoder)
            folder = os.path.join(workdir, f"trained-{preset}")
            rows += bench_model(preset, f"trained ({args.model})", model, keras_path, clips, args, folder)
        else:
            log(f"no trained model at {args.model!r}: its rows are skipped")
        if args.peers:
            rows += peer_rows(clips, args, workdir)
    lines = [
        f"{row['preset']:16s} {row['format']:15s} batch {row['batch']:2d}  "
        f"{row['realtime_factor']:8.1f}x  {row['size_bytes'] / 1e6:8.2f} MB  "
        f"max|dMOS| {row['max_abs_diff_mos'] if row['max_abs_diff_mos'] is not None else '-'}"
        + (
            f"  {row['num_parameters']:,} params, {row['gmac_per_second']:g} GMAC/s"
            if "num_parameters" in row
            else ""
        )
        for row in rows
    ]
    figures = {"settings": _common.settings(args), "tensorflow_threads": tf_threads, "rows": rows}
    return _common.report(facts, figures, lines, args.json)


if __name__ == "__main__":
    from jsqa_tf.errors import JSQAError

    try:
        main()
    except JSQAError as error:  # a bad --model: one line naming the file
        sys.exit(f"error: {error}")
