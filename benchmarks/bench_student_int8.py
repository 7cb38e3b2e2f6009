"""Dynamic-range int8 error of student designs on demo audio at several levels, over seeds.

    python benchmarks/bench_student_int8.py [--presets student,student-w512,student-waveform]
                                            [--seeds 0,1,2] [--int8-unchunked] [--head-epochs 100]
                                            [--demo-dir DIR]
                                            [--json [PATH]]

For each preset and seed: a "calibrated" model (`jsqa_tf.models.calibration`: random
convolutions, BatchNorm statistics of 64 random 0.5 s crops of the demo files at random levels,
a 16-8 MOS head fitted on their embeddings to louder -> higher MOS, `--head-epochs` epochs), converted by
`jsqa_tf.export` (SavedModel -> TFLite int8, the chunked copy `jsqa-tf export` writes; with
`--int8-unchunked`, converted from the SavedModel as it is, one activation scale per clip),
then the 6 files of the small demo corpus (or of `--demo-dir`) at 4 levels (0, -10, -20,
-30 dB) scored by Keras float32 and by the int8 model in LiteRT (`jsqa_lite.LiteModel`).
Reported: max and median |dMOS|, the max relative error of the embedding
(||e_int8 - e|| / ||e||: the encoder's own share, which the head then amplifies) and the MOS
range. Not timed: run it alone or not.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _common  # noqa: E402
import numpy as np  # noqa: E402

GAINS = (1.0, 0.3, 0.1, 0.03)
LEVELS_DB = [round(20 * float(np.log10(gain)), 1) for gain in GAINS]


def calibrated_student(preset: str, files: list[np.ndarray], seed: int, epochs: int = 100):
    rng = np.random.default_rng(seed)
    gain = rng.uniform(0.02, 1.0, (64, 1)).astype(np.float32)
    starts = rng.integers(0, 16000, len(gain))
    clips = np.stack([files[i % len(files)][s : s + 8000] for i, s in enumerate(starts)]) * gain
    model, _ = _common.calibrated_model(
        preset, clips, 1.0 + 4.0 * gain, seed=seed, hidden_dims=(16, 8), epochs=epochs, learning_rate=1e-2
    )
    return model


def int8_errors(model, clips: list[np.ndarray], workdir: str, chunked: bool = True) -> dict:
    from jsqa_tf.export import convert_tflite, save_serving_model
    from jsqa_tf.lite import LiteModel

    with contextlib.redirect_stdout(io.StringIO()):
        save_serving_model(model, os.path.join(workdir, "saved_model"))
        tflite = convert_tflite(
            os.path.join(workdir, "saved_model"), "int8", model=model if chunked else None
        )
    path = os.path.join(workdir, "int8.tflite")
    with open(path, "wb") as stream:
        stream.write(tflite)
    lite = LiteModel(path)
    diffs, relative, reference = [], [], []
    for clip in clips:
        embedding, mos = np.asarray(model.embed(clip[None])), float(np.asarray(model(clip[None]))[0])
        outputs = lite.outputs(clip[None])
        diffs.append(abs(float(np.asarray(outputs["mos"]).reshape(-1)[0]) - mos))
        relative.append(float(np.linalg.norm(outputs["embedding"] - embedding) / np.linalg.norm(embedding)))
        reference.append(mos)
    return {
        "max_abs_diff_mos": round(max(diffs), 4),
        "median_abs_diff_mos": round(float(np.median(diffs)), 4),
        "max_embedding_relative_error": round(max(relative), 4),
        "mos_range": [round(min(reference), 2), round(max(reference), 2)],
        "size_bytes": os.path.getsize(path),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="student,student-w512,student-waveform")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument(
        "--int8-unchunked", action="store_true", help="int8 converted without the chunked copy"
    )
    parser.add_argument("--head-epochs", type=int, default=100, help="epochs of the calibrated head's fit")
    parser.add_argument("--demo-dir", help="a demo corpus (default: the small demo, in a temporary folder)")
    parser.add_argument("--json", **_common.JSON_OPTION)
    args = parser.parse_args(argv)
    _common.check_json_path(parser, args.json)
    facts = _common.RunFacts(__file__, argv)

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_student_int8-") as workdir:
        paths = _common.demo_corpus(args.demo_dir or os.path.join(workdir, "demo"), small=True)
        by_split = _common.demo_mos_files(paths)
        files = [audio for audio, _ in by_split["train"] + by_split["val"]]
        clips = [audio * gain for audio in files for gain in GAINS]
        for preset in [p for p in args.presets.split(",") if p]:
            for seed in [int(s) for s in args.seeds.split(",")]:
                model = calibrated_student(preset, files, seed, args.head_epochs)
                folder = os.path.join(workdir, f"{preset}-{seed}")
                row = {"preset": preset, "seed": seed} | int8_errors(
                    model, clips, folder, chunked=not args.int8_unchunked
                )
                if args.json != "-":
                    print(json.dumps(row), flush=True)
                rows.append(row)
    figures = {
        "settings": _common.settings(args),
        "levels_db": LEVELS_DB,
        "num_clips": len(clips),
        "rows": rows,
    }
    return _common.report(facts, figures, [], args.json)


if __name__ == "__main__":
    main()
