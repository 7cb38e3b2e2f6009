"""The on-device student (issue 9) through the existing export path: builtin TFLite ops only,
int8 within 0.05 MOS of Keras float32 on demo audio, and `jsqa_tf.lite` / `jsqa-tf predict`
unchanged."""

import json
import os

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from jsqa_tf.audio import read_audio, write_audio
from jsqa_tf.cli import main
from jsqa_tf.data.corpora import read_nisqa
from jsqa_tf.export import check_parity, example_clips, keras_scorer
from jsqa_tf.lite import LiteModel
from jsqa_tf.models import MOSRegressor, StudentEncoder, load_mos_regressor


def demo_files(tiny_demo) -> list[np.ndarray]:
    return [read_audio(record.path) for record in read_nisqa(tiny_demo["nisqa"]).records]


@pytest.fixture(scope="module")
def student_keras(tmp_path_factory, tiny_demo) -> str:
    """The `student` preset (the chosen design, full size), "calibrated" as bench_infer.py does:
    random convolutions, BatchNorm statistics of the training clips, the MOS head fitted on
    their embeddings (louder clip -> higher MOS: 0.5 s crops of the demo files at random
    levels), so its outputs spread over the scale. (A few end-to-end steps leave it saturated.)"""
    keras.utils.set_random_seed(0)
    model = MOSRegressor(
        StudentEncoder.from_preset("student", name="encoder"), hidden_dims=(16, 8), name="mos_regressor"
    )
    rng = np.random.default_rng(0)
    gain = rng.uniform(0.02, 1.0, (64, 1)).astype(np.float32)
    files = demo_files(tiny_demo)
    starts = rng.integers(0, 16000, len(gain))
    clips = np.stack([files[i % len(files)][s : s + 8000] for i, s in enumerate(starts)]) * gain
    batch_norms = [x for x in model.encoder.layers if isinstance(x, keras.layers.BatchNormalization)]
    for layer in batch_norms:
        layer.momentum = 0.0  # the moving statistics become this batch's
    model.encoder(clips, training=True)
    for layer in batch_norms:
        layer.momentum = model.encoder.batch_norm_momentum
    model.head.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    model.head.fit(model.embed(clips), 1.0 + 4.0 * gain, batch_size=16, epochs=100, verbose=0)
    path = tmp_path_factory.mktemp("student") / "student.keras"
    model.save(path)
    return str(path)


@pytest.fixture(scope="module")
def student_export(tmp_path_factory, student_keras) -> dict:
    """`jsqa-tf export` of the student with float32 and int8 TFLite and `--check` (the SavedModel
    through TF Serving's loader and every TFLite file against Keras, 0.25 s to 10 s clips)."""
    output_dir = tmp_path_factory.mktemp("saved_models")
    result = CliRunner().invoke(
        main,
        [
            "export",
            student_keras,
            "--name",
            "student",
            "--output-dir",
            str(output_dir),
            "--tflite",
            "float32",
            "--tflite",
            "int8",
            "--check",
        ],
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_student_tflite_has_builtin_ops_only_and_variable_length(student_export):
    from ai_edge_litert.interpreter import Interpreter

    for quantization in ("float32", "int8"):
        interpreter = Interpreter(model_path=student_export["tflite"][quantization]["path"])
        ops = {op["op_name"] for op in interpreter._get_ops_details()}
        assert {"RFFT2D", "DEPTHWISE_CONV_2D", "CONV_2D", "LOG"} <= ops, ops
        assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), ops
        assert list(interpreter.get_input_details()[0]["shape_signature"]) == [-1, -1]
    # int8: the front end (mel blocks under 1,024 weights) and the stem stay float; the
    # quantized weights are the wide pointwise convs' and the head's
    interpreter = Interpreter(model_path=student_export["tflite"]["int8"]["path"])
    quantized = [t["name"] for t in interpreter.get_tensor_details() if t["dtype"] == np.int8]
    assert any("pointwise" in name for name in quantized), quantized
    assert not any("log_mel" in name or "stem" in name for name in quantized), quantized
    mel_weights = [
        t for t in interpreter.get_tensor_details() if "log_mel" in t["name"] and "MatMul" in t["name"]
    ]
    assert mel_weights and all(t["dtype"] == np.float32 for t in mel_weights)
    parity = student_export["parity"]["max_abs_diff_mos"]
    assert parity["saved_model"] <= 1e-5 and parity["float32"] <= 1e-4 and parity["int8"] <= 0.05
    info = json.loads(open(student_export["tflite"]["int8"]["path"][: -len(".tflite")] + ".json").read())
    assert info["encoder"]["class"] == "StudentEncoder" and info["encoder"]["front_end"] == "log_mel"
    assert student_export["tflite"]["int8"]["size_bytes"] < 300_000


def test_student_int8_is_within_0_05_mos_of_keras_float32_on_demo_audio(
    student_keras, student_export, tiny_demo
):
    model = load_mos_regressor(student_keras)
    # The demo files at several levels (this model maps level to MOS): scores over the scale.
    gains = (1.0, 0.3, 0.1, 0.03)
    clips = [audio * gains[i % len(gains)] for i, audio in enumerate(demo_files(tiny_demo))]
    report = check_parity(
        keras_scorer(model), {"int8": LiteModel(student_export["tflite"]["int8"]["path"]).score}, clips
    )
    assert report.max_abs_diff_mos["int8"] <= 0.05, report.per_length
    assert np.ptp(list(report.reference_mos.values())) > 1.0, report.reference_mos  # not saturated


def test_lite_and_predict_score_the_student_unchanged(student_keras, student_export, tmp_path):
    audio = example_clips([12.0], seed=3)[0]
    write_audio(tmp_path / "call.wav", audio)
    path = student_export["tflite"]["int8"]["path"]
    scored = LiteModel(path).score_file(tmp_path / "call.wav")
    assert scored["num_windows"] == 2 and 1 <= scored["mos"] <= 5

    result = CliRunner().invoke(
        main, ["predict", str(tmp_path / "call.wav"), "--model", path, "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows[0]["mos"] == pytest.approx(scored["mos"], abs=1e-4)
    # the .keras file through predict scores the same windows within the int8 tolerance
    result = CliRunner().invoke(
        main, ["predict", str(tmp_path / "call.wav"), "--model", student_keras, "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["mos"] == pytest.approx(scored["mos"], abs=0.05)
    assert os.path.basename(path) == "student-int8.tflite"
