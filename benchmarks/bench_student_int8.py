"""Dynamic-range int8 error of student designs on demo audio at several levels, over seeds.

    python benchmarks/bench_student_int8.py [--presets student,student-w512,student-waveform]
                                            [--seeds 0,1,2] [--json]

For each preset and seed: a "calibrated" model as `tests/test_student_export.py` builds it
(random convolutions, BatchNorm statistics of 64 random 0.5 s crops of the demo files at random
levels, MOS head fitted on their embeddings to louder -> higher MOS), exported through
`jsqa_tf.export` (SavedModel -> TFLite int8), then the 6 demo files at 4 levels (0, -10, -20,
-30 dB) scored by Keras float32 and by the int8 model in LiteRT. Reported: max and median
|dMOS|, the max relative error of the embedding (||e_int8 - e|| / ||e||: the encoder's own
share, which the head then amplifies) and the MOS range. Not timed: run it alone or not.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

GAINS = (1.0, 0.3, 0.1, 0.03)


def calibrated_student(preset: str, files: list[np.ndarray], seed: int):
    import keras

    from jsqa_tf.models import MOSRegressor, encoder_from_preset

    keras.utils.set_random_seed(seed)
    model = MOSRegressor(
        encoder_from_preset(preset, name="encoder"), hidden_dims=(16, 8), name="mos_regressor"
    )
    rng = np.random.default_rng(seed)
    gain = rng.uniform(0.02, 1.0, (64, 1)).astype(np.float32)
    starts = rng.integers(0, 16000, len(gain))
    clips = np.stack([files[i % len(files)][s : s + 8000] for i, s in enumerate(starts)]) * gain
    batch_norms = [x for x in model.encoder.layers if isinstance(x, keras.layers.BatchNormalization)]
    for layer in batch_norms:
        layer.momentum = 0.0
    model.encoder(clips, training=True)
    for layer in batch_norms:
        layer.momentum = model.encoder.batch_norm_momentum
    model.head.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    model.head.fit(model.embed(clips), 1.0 + 4.0 * gain, batch_size=16, epochs=100, verbose=0)
    return model


def int8_errors(model, clips: list[np.ndarray], workdir: str) -> dict:
    from jsqa_tf.export import convert_tflite, save_serving_model
    from jsqa_tf.lite import LiteModel

    with contextlib.redirect_stdout(io.StringIO()):
        save_serving_model(model, os.path.join(workdir, "saved_model"))
        tflite = convert_tflite(os.path.join(workdir, "saved_model"), "int8")
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


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="student,student-w512,student-waveform")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from jsqa_tf.audio import read_audio
    from jsqa_tf.data.corpora import read_nisqa
    from jsqa_tf.data.demo import SMALL_DEMO, make_demo_corpus

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_student_int8-") as workdir:
        paths = make_demo_corpus(os.path.join(workdir, "demo"), seed=0, **SMALL_DEMO)
        files = [read_audio(record.path) for record in read_nisqa(paths["nisqa"]).records]
        clips = [audio * gain for audio in files for gain in GAINS]
        for preset in [p for p in args.presets.split(",") if p]:
            for seed in [int(s) for s in args.seeds.split(",")]:
                model = calibrated_student(preset, files, seed)
                row = {"preset": preset, "seed": seed} | int8_errors(
                    model, clips, os.path.join(workdir, f"{preset}-{seed}")
                )
                print(json.dumps(row), file=sys.stderr, flush=True)
                rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
