"""Where the int8 model's MOS error comes from, clip by clip: the int8 weights, and what the bias
correction takes back.

    python benchmarks/bench_int8_error.py [--preset jsqa] [--clip-seconds 10] [--demo-dir DIR]
                                          [--head-epochs 300] [--json [PATH]]

The model and clips are `bench_infer.py`'s: a calibrated preset (random convolutions, BatchNorm
statistics of 16 demo crops, a head fitted to the demo MOS labels) and the 16 demo val clips
looped to 10 s. Each clip's MOS, against Keras float32, from:
    int8                     the TFLite int8 file `export` writes (chunked, bias-corrected)
    int8_uncorrected         the same conversion without the bias correction
    int8_weights             Keras float32 with every quantized convolution's kernel rounded as
                             the converter rounds it (`jsqa_tf.quantization.int8_rounded`): the
                             int8 weights alone, activations in float
    int8_weights_corrected   the same with the corrected biases
The demo clips and labels are synthetic and the weights untrained: this measures the
conversion's arithmetic, not quality on real speech.
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _common  # noqa: E402
import bench_infer  # noqa: E402
import numpy as np  # noqa: E402


def rounded_copy(keras_path: str, folder: str, corrected: bool) -> str:
    """A `.keras` copy of the model with int8-rounded kernels (and corrected biases)."""
    from jsqa_tf.models import load_mos_regressor
    from jsqa_tf.quantization import bias_corrections, chunk_plan, int8_rounded

    model = load_mos_regressor(keras_path)
    corrections = bias_corrections(model.encoder) if corrected else {}
    for name, entry in chunk_plan(model.encoder).items():
        if entry["quantized"]:
            layer = model.encoder.get_layer(name)
            layer.kernel.assign(int8_rounded(layer.kernel).astype(np.float32))
            if name in corrections:
                layer.bias.assign(layer.bias + corrections[name])
    path = os.path.join(folder, f"weights-{'corrected' if corrected else 'rounded'}.keras")
    model.save(path)
    return path


def int8_file(keras_path: str, folder: str, corrected: bool) -> str:
    from jsqa_tf.export import convert_tflite, save_serving_model
    from jsqa_tf.models import load_mos_regressor

    model = load_mos_regressor(keras_path)
    saved_model = os.path.join(folder, "saved_model")
    if not os.path.exists(saved_model):
        save_serving_model(model, saved_model)
    path = os.path.join(folder, f"int8-{'corrected' if corrected else 'uncorrected'}.tflite")
    with open(path, "wb") as stream:
        stream.write(convert_tflite(saved_model, "int8", model=model, bias_correction=corrected))
    return path


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="jsqa", help="an encoder preset (calibrated weights)")
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--head-epochs", type=int, default=300, help="epochs of the calibrated head's fit")
    parser.add_argument("--demo-dir", help="a demo corpus (written there when absent; default: temporary)")
    parser.add_argument("--json", **_common.JSON_OPTION)
    args = parser.parse_args(argv)
    _common.check_json_path(parser, args.json)
    from jsqa_tf.models import PRESETS, STUDENT_PRESETS

    if args.clip_seconds < 0.25:
        parser.error(f"--clip-seconds must be >= 0.25 (the shortest clip scored), not {args.clip_seconds}")
    if args.head_epochs < 0:
        parser.error(f"--head-epochs must be >= 0, not {args.head_epochs}")
    if args.preset not in {**PRESETS, **STUDENT_PRESETS}:
        parser.error(f"--preset: unknown {args.preset!r}; one of {', '.join({**PRESETS, **STUDENT_PRESETS})}")
    facts = _common.RunFacts(__file__, argv)
    from jsqa_tf.predict import open_backend

    with tempfile.TemporaryDirectory(prefix="bench_int8_error-") as workdir:
        paths = _common.demo_corpus(args.demo_dir or os.path.join(workdir, "demo"))
        clips, crops, mos = bench_infer.demo_data(paths, args.clip_seconds)
        keras_path = os.path.join(workdir, "model.keras")
        model, _ = _common.calibrated_model(
            args.preset, crops, mos, batch_norm_clips=crops[:16], epochs=args.head_epochs
        )  # as `bench_infer.calibrated_model`, with `--head-epochs`
        model.save(keras_path)
        forms = {
            "keras": keras_path,
            "int8": int8_file(keras_path, workdir, corrected=True),
            "int8_uncorrected": int8_file(keras_path, workdir, corrected=False),
            "int8_weights": rounded_copy(keras_path, workdir, corrected=False),
            "int8_weights_corrected": rounded_copy(keras_path, workdir, corrected=True),
        }
        scores = {}
        for name, path in forms.items():
            bench_infer.log(f"scoring {name}")
            backend = open_backend(path, args.threads)
            scores[name] = np.concatenate(
                [bench_infer.score_clips(backend, clips[i : i + 4], 4) for i in range(0, len(clips), 4)]
            )
    reference = scores["keras"]
    differences = {name: scores[name] - reference for name in forms if name != "keras"}
    level = 10 * np.log10(np.mean(clips.astype(np.float64) ** 2, axis=1) + 1e-12)
    rows = [
        {
            "clip": i,
            "level_dbfs": round(float(level[i]), 1),
            "keras_mos": round(float(reference[i]), 4),
            **{name: round(float(d[i]), 4) for name, d in differences.items()},
        }
        for i in range(len(clips))
    ]
    summary = {name: round(float(np.max(np.abs(d))), 4) for name, d in differences.items()}
    header = f"{'clip':>4} {'dBFS':>6} {'keras':>6} " + " ".join(f"{name:>22}" for name in differences)
    lines = [header] + [
        f"{row['clip']:4d} {row['level_dbfs']:6.1f} {row['keras_mos']:6.3f} "
        + " ".join(f"{row[name]:+22.4f}" for name in differences)
        for row in rows
    ]
    lines.append("max |dMOS| " + ", ".join(f"{name} {value:.4f}" for name, value in summary.items()))
    figures = {
        "settings": _common.settings(args),
        "data": "the demo corpus's 16 val clips looped to 10 s; calibrated (untrained) weights",
        "max_abs_diff_mos": summary,
        "clips": rows,
    }
    return _common.report(facts, figures, lines, args.json)


if __name__ == "__main__":
    import sys

    from jsqa_tf.errors import JSQAError

    try:
        main()
    except JSQAError as error:  # e.g. a --demo-dir that is not a demo corpus: one line naming it
        sys.exit(f"error: {error}")
