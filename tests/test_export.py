"""Export: the SavedModel through TF Serving's loader and wire format, versions, TFLite parity."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from tensorflow_serving.apis import prediction_log_pb2

from jsqa_lite.contract import CONTRACT_FILE, MIN_SAMPLES
from jsqa_tf.cli import main
from jsqa_tf.errors import ModelError
from jsqa_tf.export import (
    MOS_TOLERANCE,
    WARMUP_FILE,
    check_parity,
    check_tflite_size,
    convert_tflite,
    example_clips,
    export_model,
    keras_scorer,
    serving_scorer,
    tflite_scorer,
)
from jsqa_tf.models import load_mos_regressor

# Several real lengths: the minimum, short, typical and long (speech-like, noisy).
CLIPS_SECONDS = (MIN_SAMPLES / 16000, 1.0, 3.7, 10.0)


@pytest.fixture(scope="module")
def model(tiny_mos_keras):
    return load_mos_regressor(tiny_mos_keras)


@pytest.fixture(scope="module")
def clips():
    return example_clips(CLIPS_SECONDS, seed=11)


def test_the_fixture_model_is_not_saturated(model, clips):
    mos = [float(model(clip[None])[0]) for clip in clips]
    assert all(1.2 < m < 4.8 for m in mos) and np.ptp(mos) > 0.05, mos


def test_saved_model_through_v1_loader_and_predict_request_matches_keras(model, clips, tiny_export):
    version_dir = tiny_export["saved_model"]
    assert os.path.basename(version_dir) == "1"
    # The variables are stored once: about the size of the float32 weights.
    assert tiny_export["variables_bytes"] < 1.25 * tiny_export["weights_bytes"] + 8192

    serve, close = serving_scorer(version_dir, "tiny")
    try:
        report = check_parity(keras_scorer(model), {"saved_model": serve}, clips)
    finally:
        close()
    assert report.max_abs_diff_mos["saved_model"] <= 1e-5
    assert set(report.per_length["saved_model"]) == {f"{s:g}" for s in CLIPS_SECONDS}


def test_signature_batch_outputs_in_the_v1_loader(model, tiny_export):
    batch = np.stack([clip[:16000] for clip in example_clips([1.0] * 3, seed=2)])
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], tiny_export["saved_model"])
        signature = meta_graph.signature_def["serving_default"]
        assert signature.method_name == "tensorflow/serving/predict"
        assert list(signature.inputs) == ["waveform"] and set(signature.outputs) == {"mos", "embedding"}
        outputs = session.run(
            {name: info.name for name, info in signature.outputs.items()},
            {signature.inputs["waveform"].name: batch},
        )
    assert outputs["mos"].shape == (3,) and outputs["embedding"].shape == (3, model.embedding_width)
    np.testing.assert_allclose(outputs["mos"], model(batch).numpy(), atol=1e-5)
    np.testing.assert_allclose(outputs["embedding"], model.embed(batch).numpy(), atol=1e-5)


def test_the_masked_signature_scores_padded_rows_of_any_length_as_if_alone(model, clips, tiny_export):
    serve, close = serving_scorer(tiny_export["saved_model"], "tiny", masked=True)
    try:  # each clip padded to whole seconds beside a loud noise row one second longer
        report = check_parity(keras_scorer(model), {"saved_model_masked": serve}, clips)
    finally:
        close()
    assert report.max_abs_diff_mos["saved_model_masked"] <= MOS_TOLERANCE["saved_model_masked"]
    # Several files of different lengths in one request of the v1 loader.
    loaded = tf.saved_model.load(tiny_export["saved_model"])
    lengths = [len(clip) for clip in clips]
    batch = np.zeros((len(clips), max(lengths)), np.float32)
    for row, clip in enumerate(clips):
        batch[row, : len(clip)] = clip
    outputs = loaded.signatures["serving_masked"](
        waveform=tf.constant(batch), num_valid_samples=tf.constant(lengths, tf.int32)
    )
    alone = [float(model(clip[None])[0]) for clip in clips]
    np.testing.assert_allclose(outputs["mos"].numpy(), alone, atol=1e-5)
    assert outputs["embedding"].shape == (len(clips), model.embedding_width)
    info = json.loads(open(os.path.join(tiny_export["saved_model"], "assets.extra", CONTRACT_FILE)).read())
    assert info["masked_signature"]["name"] == "serving_masked"
    assert info["masked_signature"]["inputs"]["num_valid_samples"]["dtype"] == "int32"


def test_warmup_requests_and_contract(tiny_export):
    extra = os.path.join(tiny_export["saved_model"], "assets.extra")
    records = list(tf.data.TFRecordDataset(os.path.join(extra, WARMUP_FILE)).as_numpy_iterator())
    assert records
    for record in records:
        request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
        assert request.model_spec.name == "tiny" and request.model_spec.signature_name == "serving_default"
        assert tf.make_ndarray(request.inputs["waveform"]).dtype == np.float32
    info = json.loads(open(os.path.join(extra, CONTRACT_FILE)).read())
    assert info["input"]["sample_rate"] == 16000 and info["input"]["min_samples"] == MIN_SAMPLES
    assert info["outputs"]["mos"]["range"] == [1.0, 5.0]


@pytest.mark.parametrize("quantization", ["float32", "float16", "int8"])
def test_tflite_parity_on_several_lengths(model, clips, tiny_export, quantization):
    path = tiny_export["tflite"][quantization]["path"]
    report = check_parity(keras_scorer(model), {quantization: tflite_scorer(path)}, clips)
    assert report.max_abs_diff_mos[quantization] <= MOS_TOLERANCE[quantization]
    # The contract beside the model.
    info = json.loads(open(path[: -len(".tflite")] + ".json").read())
    assert info["quantization"] == quantization and info["input"]["min_samples"] == MIN_SAMPLES
    assert info["versions"]["tensorflow"] == tf.__version__ and info["source"].endswith("tiny.keras")
    assert info["size_bytes"] == os.path.getsize(path)
    # int8 records which convolutions run in chunks (the tiny preset: kernel 7, so only block2's
    # convolutions have >= 1,024 weights, and only they are chunked).
    chunks = info.get("int8_chunks")
    if quantization == "int8":
        chosen = [name for name, layer in chunks["layers"].items() if layer["chunked"]]
        assert chosen == ["block2_conv1", "block2_conv2"] and chunks["chunk_frames"] == 256, chunks
        unquantized = {"chunked": False, "input_rate_hz": 16000, "quantized": False}
        assert chunks["layers"]["block1_conv2"] == unquantized
    else:
        assert chunks is None


@pytest.mark.parametrize("form", sorted(MOS_TOLERANCE))
def test_parity_holds_each_form_to_its_tolerance(form):
    clips = example_clips((MIN_SAMPLES / 16000, 1.0))
    tolerance = MOS_TOLERANCE[form]

    def reference(waveform):
        return np.array([3.0 + float(np.std(waveform))])

    def off_by(difference):
        return {form: lambda waveform: reference(waveform) + difference}

    report = check_parity(reference, off_by(0.9 * tolerance), clips)
    assert report.max_abs_diff_mos[form] == pytest.approx(0.9 * tolerance)
    with pytest.raises(ModelError, match=f"{form}.*tolerance {tolerance:g}"):
        check_parity(reference, off_by(-1.1 * tolerance), clips)
    check_parity(reference, off_by(1.1 * tolerance), clips, tolerances={form: None})  # finite only


def test_tflite_uses_builtin_ops_and_variable_length(tiny_export):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=tiny_export["tflite"]["int8"]["path"])
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert "CONV_2D" in ops and not any(op.startswith("Flex") for op in ops), ops
    assert "GATHER" in ops, ops  # int8 is converted from the chunked copy (jsqa_tf.quantization)
    assert list(interpreter.get_input_details()[0]["shape_signature"]) == [-1, -1]


def test_tflite_int8_tensors_are_static(tiny_export):
    """Every tensor of the int8 model has its size once the input is resized: none is dynamic
    (allocated apart, never reused; XNNPACK skips the ops that read them)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_path=tiny_export["tflite"]["int8"]["path"],
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], [2, 12345])
    interpreter.allocate_tensors()
    for op in interpreter._get_ops_details():
        for index in op["outputs"]:
            interpreter.get_tensor(index)  # ValueError "Tensor data is null" for a dynamic one


def test_tflite_sizes_follow_the_quantization(tiny_export):
    sizes = {q: tiny_export["tflite"][q]["size_bytes"] for q in ("float32", "float16", "int8")}
    assert sizes["float32"] > sizes["float16"] > 0.5 * tiny_export["weights_bytes"]
    # The chunked int8 graph carries ~4 KB of ops and tensors per convolution: on this tiny model
    # (4 convolutions, 30 KB of float16 weights) more than int8 saves; on `jsqa` 0.2 % of the file.
    assert 0.25 * tiny_export["weights_bytes"] < sizes["int8"] < sizes["float16"] + 5000 * 4


def _burst_model():
    """An encoder with every conv but the first quantized (kernel >= 1024 weights), BatchNorm
    statistics of speech-like clips, and a linear head fitted to 16 clips (steep, as a head
    fitted to few labels is)."""
    import keras

    from jsqa_tf.models import MOSRegressor, WaveformEncoder

    keras.utils.set_random_seed(0)
    encoder = WaveformEncoder(first_filters=16, num_blocks=3, layers_per_block=2, embedding_dim=64)
    model = MOSRegressor(encoder, hidden_dims=())
    gain = np.random.default_rng(0).uniform(0.05, 1.0, 16).astype(np.float32)
    train = np.stack(example_clips([1.0] * 16, seed=3)) * gain[:, None]
    batch_norms = [layer for layer in encoder.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in batch_norms:
        layer.momentum = 0.0
    encoder(train, training=True)
    for layer in batch_norms:
        layer.momentum = encoder.batch_norm_momentum
    features = np.concatenate([model.embed(train).numpy(), np.ones((16, 1))], axis=1)
    weights = np.linalg.lstsq(features, np.log(gain / (1.05 - gain)), rcond=1e-3)[0].astype(np.float32)
    model.head.get_layer("score").set_weights([weights[:-1, None], weights[-1:]])
    return model


def test_int8_holds_a_quiet_clip_with_a_loud_burst(tmp_path):
    """Dynamic-range int8 quantizes a conv's input with one scale per batch row: unchunked,
    a 10 ms burst sets the scale for the whole clip and the quiet speech around it is rounded
    to a few levels. The converted chunked copy gives each 256 frames their own scale in the
    convolutions `chunk_plan` picks (all but the first, which stays float)."""
    from jsqa_tf.export import save_serving_model
    from jsqa_tf.quantization import chunked_copy

    model = _burst_model()
    names = ["block1_conv2", "block2_conv1", "block2_conv2", "block3_conv1", "block3_conv2"]
    assert chunked_copy(model).layers == names
    clips = []
    for seconds in (3.0, 4.0):
        quiet = 0.1 * example_clips((seconds,), seed=5)[0]
        burst = np.concatenate([quiet, quiet[:8000]])  # another length: `check_parity` keys by length
        start = len(burst) // 3  # 10 ms of full-scale noise
        burst[start : start + 160] = 0.9 * np.sign(np.random.default_rng(1).standard_normal(160))
        clips += [quiet, burst]
    saved_model_dir = str(tmp_path / "saved_model")
    save_serving_model(model, saved_model_dir)
    scorers = {}
    for name, source in (("int8", model), ("unchunked", None)):
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(convert_tflite(saved_model_dir, "int8", model=source))
        scorers[name] = tflite_scorer(str(path))
    report = check_parity(keras_scorer(model), scorers, clips, tolerances={"unchunked": None})
    assert report.max_abs_diff_mos["int8"] <= MOS_TOLERANCE["int8"], report.per_length
    # What the chunks fix (a clip without a burst is within tolerance either way).
    assert report.max_abs_diff_mos["unchunked"] > 0.25, report.per_length
    assert max(report.per_length["unchunked"][f"{s:g}"] for s in (3.0, 4.0)) < MOS_TOLERANCE["int8"]


def test_int8_full_integer_with_representative_data(model, clips, tiny_export, tmp_path):
    calibration = example_clips([2.0] * 8, seed=3)
    data = convert_tflite(tiny_export["saved_model"], "int8-full", lambda: (c[None] for c in calibration))
    path = tmp_path / "full.tflite"
    path.write_bytes(data)
    check_tflite_size(str(path), model, "int8-full")
    report = check_parity(keras_scorer(model), {"int8-full": tflite_scorer(str(path))}, clips)
    assert report.max_abs_diff_mos["int8-full"] <= MOS_TOLERANCE["int8-full"], report.per_length


def test_the_checks_catch_the_known_traps(model, tiny_export, tmp_path):
    # `tf.saved_model.save` of a module that tracks the Keras model converts to a NaN model.
    class Tracked(tf.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            self.serve = tf.function(
                lambda waveform: {"mos": model(waveform)},
                input_signature=[tf.TensorSpec([None, None], tf.float32, name="waveform")],
            )

    module = Tracked()
    tf.saved_model.save(
        module, str(tmp_path / "trap"), {"serving_default": module.serve.get_concrete_function()}
    )
    (tmp_path / "trap.tflite").write_bytes(convert_tflite(tmp_path / "trap", "float32"))
    with pytest.raises(ModelError, match="finite MOS"):
        check_parity(keras_scorer(model), {"float32": tflite_scorer(str(tmp_path / "trap.tflite"))})
    # An empty or truncated model is far smaller than its weights.
    (tmp_path / "empty.tflite").write_bytes(
        open(tiny_export["tflite"]["float32"]["path"], "rb").read()[:2000]
    )
    with pytest.raises(ModelError, match="lost the model"):
        check_tflite_size(str(tmp_path / "empty.tflite"), model, "float32")
    # A difference above tolerance.
    with pytest.raises(ModelError, match="tolerance"):
        check_parity(keras_scorer(model), {"int8": lambda w: keras_scorer(model)(w) + 0.1})


def test_versions_increment_and_never_overwrite(tiny_mos_keras, tmp_path):
    first = export_model(tiny_mos_keras, "m", tmp_path)
    pb = os.path.join(first["saved_model"], "saved_model.pb")
    before = (os.path.getmtime(pb), open(pb, "rb").read())
    os.makedirs(tmp_path / "m" / "7")  # a later version from elsewhere: the next export takes 8
    second = export_model(tiny_mos_keras, "m", tmp_path)
    assert (first["version"], second["version"]) == (1, 8)
    assert (os.path.getmtime(pb), open(pb, "rb").read()) == before
    assert sorted(os.listdir(tmp_path / "m")) == ["1", "7", "8"]  # no temporary folder left


def test_an_export_that_fails_midway_leaves_nothing(tiny_mos_keras, tmp_path, monkeypatch):
    import jsqa_tf.export as export

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export, "write_warmup_requests", crash)
    with pytest.raises(RuntimeError):
        export_model(tiny_mos_keras, "m", tmp_path)
    assert os.listdir(tmp_path / "m") == []


KILLED_BEFORE_PUBLISHING = """
import os, signal, sys
import jsqa_tf.export

def killed(temp_dir, base_path):  # replaces the rename that publishes the version
    if os.path.isfile(os.path.join(temp_dir, "saved_model.pb")):
        os.kill(os.getpid(), signal.SIGKILL)  # as `kill -9`: no finally, no atexit

jsqa_tf.export._publish = killed
from jsqa_tf.cli import main
main(sys.argv[1:])
"""


def test_a_killed_export_leaves_no_version_folder(tiny_mos_keras, tmp_path):
    """`jsqa-tf export` killed at a fixed point: all is written, the version not yet renamed."""
    base = tmp_path / "m"
    command = [sys.executable, "-c", KILLED_BEFORE_PUBLISHING, "export", tiny_mos_keras, "--name", "m"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run(
        [*command, "--output-dir", str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    names = os.listdir(base)
    assert not [n for n in names if n.isdigit()], names  # TF Serving sees no version at all
    incomplete = [n for n in names if n.startswith(".incomplete-")]
    assert len(incomplete) == 1 and (base / incomplete[0] / "saved_model" / "saved_model.pb").is_file()
    # The next export cleans the dead one's folder up and takes version 1.
    assert export_model(tiny_mos_keras, "m", tmp_path)["version"] == 1
    assert os.listdir(base) == ["1"]


def test_cli_export_with_check(tiny_mos_keras, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "export",
            tiny_mos_keras,
            "--name",
            "tiny",
            "--output-dir",
            str(tmp_path),
            "--tflite",
            "float16",
            "--check",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["version"] == 1 and summary["parity"]["max_abs_diff_mos"]["saved_model"] <= 1e-5
    assert summary["parity"]["max_abs_diff_mos"]["saved_model_masked"] <= 1e-5
    assert summary["parity"]["max_abs_diff_mos"]["float16"] <= 1e-2
    assert os.path.isfile(summary["tflite"]["float16"]["path"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["{tmp}/missing.keras", "--name", "x"], "model not found"),
        (["{tmp}", "--name", "x"], "no trained model here"),
        (["{model}", "--name", "a/b"], "not a valid model name"),
        (["{model}", "--name", "x", "--tflite", "int8-full"], "needs --representative-data"),
        (["{bad}", "--name", "x"], "not a Keras model file"),
    ],
)
def test_cli_export_bad_input_is_one_line(tiny_mos_keras, tmp_path, args, message):
    (tmp_path / "bad.keras").write_bytes(b"not a zip")
    paths = {"tmp": tmp_path, "model": tiny_mos_keras, "bad": tmp_path / "bad.keras"}
    args = [a.format(**paths) for a in args] + ["--output-dir", str(tmp_path / "out")]
    result = CliRunner().invoke(main, ["export", *args])
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert len(errors) == 1 and message in errors[0], result.output
    assert not (tmp_path / "out").exists()


def test_representative_data_comes_from_prepared_shards(tiny_demo, tmp_path):
    from jsqa_tf.export import shard_clips

    shards = tmp_path / "shards"
    result = CliRunner().invoke(main, ["prepare", "nisqa", tiny_demo["nisqa"], str(shards), "-j", "0"])
    assert result.exit_code == 0, result.output
    clips = list(shard_clips(shards, num_clips=3, seconds=1.0)())
    assert len(clips) == 3 and all(c.shape == (1, 16000) and c.dtype == np.float32 for c in clips)
    assert all(0 < np.abs(c).max() <= 1 for c in clips)


def test_cli_export_to_an_unwritable_place_is_one_line(tiny_mos_keras):
    result = CliRunner().invoke(main, ["export", tiny_mos_keras, "--name", "x", "--output-dir", "/proc/nope"])
    assert result.exit_code == 1 and "cannot write the export here" in result.output
    assert "Traceback" not in result.output


def test_a_failed_check_publishes_nothing(tiny_mos_keras, tmp_path, monkeypatch):
    import jsqa_tf.export as export

    monkeypatch.setitem(export.MOS_TOLERANCE, "int8", 0.0)  # no int8 model can pass this
    with pytest.raises(ModelError, match="tolerance 0"):
        export_model(tiny_mos_keras, "m", tmp_path, tflite=("int8",), check=True)
    assert os.listdir(tmp_path / "m") == []
