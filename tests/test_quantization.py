"""The chunked copy converted to int8 computes the same function as the model, in float."""

import keras
import numpy as np
import pytest

from jsqa_tf.export import MOS_TOLERANCE, example_clips
from jsqa_tf.models import MOSRegressor, WaveformEncoder
from jsqa_tf.quantization import (
    CHUNK_FRAMES,
    MIN_CHUNK_FRAMES,
    ChunkedConv1D,
    bias_corrections,
    chunk_convolutions,
    chunk_plan,
    chunked_copy,
    conv_input_rates,
    int8_rounded,
)


@pytest.mark.parametrize(
    "config",
    [
        dict(kernel_size=15, padding="same"),
        dict(kernel_size=15, padding="valid", strides=2),  # the "stride" decimation's conv
        dict(kernel_size=4, padding="same"),  # even kernel: one more zero on the right
        dict(kernel_size=5, padding="causal", dilation_rate=2),
        dict(kernel_size=3, padding="same", strides=2),  # not chunked: runs as a plain Conv1D
    ],
)
def test_chunked_conv1d_equals_conv1d(config):
    plain = keras.layers.Conv1D(6, **config)
    chunked = ChunkedConv1D(chunk_frames=16, filters=6, **config)
    rng = np.random.default_rng(0)
    for length in (15, 16, 17, 100, 333):  # within one chunk, exactly one, one frame more, many
        x = rng.standard_normal((3, length, 4)).astype(np.float32)
        if not plain.built:
            plain.build(x.shape)
            chunked.build(x.shape)
            chunked.set_weights(plain.get_weights())
        expected = plain(x).numpy()
        np.testing.assert_allclose(chunked(x).numpy(), expected, atol=1e-5)


ALL_FOUR = ["block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2"]


def _small_model(decimation="stride", num_blocks=2):
    keras.utils.set_random_seed(0)
    sizes = dict(first_filters=8, num_blocks=num_blocks, layers_per_block=2, kernel_size=15, embedding_dim=16)
    encoder = WaveformEncoder(**sizes, decimation=decimation)
    return MOSRegressor(encoder, hidden_dims=(8,), embedding="contrastive")


@pytest.mark.parametrize("decimation", ["stride", "subsample"])
@pytest.mark.parametrize(
    "layers",
    [
        None,  # the rule: block1_conv2, block2_conv1, block2_conv2 (one run, through decimations)
        ALL_FOUR,
        ["block1_conv2", "block2_conv2"],  # two runs, a plain convolution between them
        ["block1_conv1"],  # a run of one, then plain to the end
    ],
)
@pytest.mark.parametrize("min_chunk_frames", [8, 32])  # chunks halved at each decimation / merged
def test_chunked_copy_keeps_the_scores(decimation, layers, min_chunk_frames):
    model = _small_model(decimation)
    copy = chunked_copy(model, chunk_frames=32, layers=layers, min_chunk_frames=min_chunk_frames)
    chunked = [name for name, entry in copy.plan.items() if entry["chunked"]]
    assert chunked == (layers or ["block1_conv2", "block2_conv1", "block2_conv2"])
    clips = example_clips((0.25, 1.3), seed=0)
    for clip in [*clips, clips[1][:-1], clips[1][:-37]]:  # odd lengths: frames past the end at each rate
        batch = np.stack([clip, 0.3 * clip[::-1]])
        embedding = copy.embed(batch).numpy()
        np.testing.assert_allclose(embedding, model.embed(batch).numpy(), atol=1e-5)
        np.testing.assert_allclose(copy.head(embedding).numpy()[:, 0], model(batch).numpy(), atol=1e-5)


def test_the_rule_chunks_every_quantized_convolution():
    """`jsqa` and `small`: every convolution but the first (one input channel: under 1,024
    weights, left in float by the converter); a rate threshold, when asked, leaves the slow ones."""
    from jsqa_tf.models import encoder_from_preset

    for preset, (blocks, per_block) in {"jsqa": (4, 4), "small": (4, 2)}.items():
        plan = chunk_plan(encoder_from_preset(preset))
        names = [f"block{b}_conv{i}" for b in range(1, blocks + 1) for i in range(1, per_block + 1)]
        assert [name for name, entry in plan.items() if entry["chunked"]] == names[1:], preset
        assert plan["block1_conv1"] == {"chunked": False, "input_rate_hz": 16000, "quantized": False}
        assert plan["block3_conv1"] == {"chunked": True, "input_rate_hz": 4000, "quantized": True}
    encoder = encoder_from_preset("small")
    assert conv_input_rates(encoder)["block2_conv2"] == 8000  # its ZeroPadding1D does not count
    faster = chunk_plan(encoder, min_rate_hz=8000)
    assert [name for name, entry in faster.items() if entry["chunked"]] == [
        "block1_conv2",
        "block2_conv1",
        "block2_conv2",
    ]
    assert chunk_plan(encoder_from_preset("student")) == {}  # no Conv1D: nothing chunked


def test_chunked_copy_records_its_choice():
    entry = chunked_copy(_small_model(), layers=["block1_conv2"]).contract_entry()
    assert entry["chunk_frames"] == CHUNK_FRAMES and "1024 weights" in entry["rule"]
    assert entry["min_chunk_frames"] == MIN_CHUNK_FRAMES
    assert [name for name, layer in entry["layers"].items() if layer["chunked"]] == ["block1_conv2"]
    assert entry["layers"]["block2_conv1"] == {"chunked": False, "input_rate_hz": 8000, "quantized": True}


def _op_counts(path):
    from ai_edge_litert.interpreter import Interpreter

    ops = [op["op_name"] for op in Interpreter(model_path=str(path))._get_ops_details()]
    return {name: ops.count(name) for name in set(ops)}


def test_a_run_of_chunked_convolutions_keeps_its_chunks(tmp_path):
    """Converted (float32, so that TFLite's result must equal Keras's): three chunked
    convolutions in one run, then plain ones, cost one PAD, one GATHER each, and one GATHER
    back to the plain layout; chunked one by one they would cost a PAD and two GATHERs each."""
    from jsqa_tf.export import _convert, save_serving_model
    from jsqa_tf.lite import LiteModel

    model = _small_model("stride", num_blocks=3)
    copy = chunked_copy(model, chunk_frames=32, layers=["block1_conv2", "block2_conv1", "block2_conv2"])
    assert copy.layers == ["block1_conv2", "block2_conv1", "block2_conv2"]  # block3's run plain
    save_serving_model(copy, str(tmp_path / "saved_model"), masked=False)  # converted: no masking
    path = tmp_path / "chunked.tflite"
    path.write_bytes(_convert(str(tmp_path / "saved_model"), "float32", None))
    counts = _op_counts(path)
    assert counts.get("GATHER") == 3 + 1, counts
    assert counts.get("PAD") == 1 + 1, counts  # the run's first conv; block3_conv2's ZeroPadding1D
    # Every size evaluated at resize: no dynamic tensor (its data would be null until run).
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], [2, 12345])
    interpreter.allocate_tensors()
    for op in interpreter._get_ops_details():
        for index in op["outputs"]:
            interpreter.get_tensor(index)  # ValueError "Tensor data is null" for a dynamic one
    int8_path = tmp_path / "int8.tflite"
    int8_path.write_bytes(_convert(str(tmp_path / "saved_model"), "int8", None))
    lite, int8 = LiteModel(str(path), num_threads=1), LiteModel(str(int8_path), num_threads=1)
    for clip in example_clips((0.25, 1.3, 2.0), seed=1):
        batch = np.stack([clip, 0.5 * clip[::-1]])
        np.testing.assert_allclose(lite.score(batch), model(batch).numpy(), atol=1e-4)
        np.testing.assert_allclose(int8.score(batch), model(batch).numpy(), atol=MOS_TOLERANCE["int8"])


def test_chunk_convolutions_copies_and_leaves_the_model_alone():
    inputs = keras.Input((None, 2))
    model = keras.Model(inputs, keras.layers.Conv1D(3, 5, padding="same", name="conv")(inputs))
    copy = chunk_convolutions(model, chunk_frames=8)
    assert type(model.get_layer("conv")) is keras.layers.Conv1D
    assert isinstance(copy.get_layer("conv"), ChunkedConv1D)
    x = np.random.default_rng(1).standard_normal((2, 50, 2)).astype(np.float32)
    np.testing.assert_allclose(copy(x).numpy(), model(x).numpy(), atol=1e-5)


def test_int8_rounded_is_symmetric_per_output_channel():
    kernel = np.random.default_rng(0).standard_normal((15, 4, 3)) * np.array([1e-3, 1.0, 50.0])
    rounded = int8_rounded(kernel)
    for channel in range(3):
        scale = np.abs(kernel[..., channel]).max() / 127
        steps = rounded[..., channel] / scale
        np.testing.assert_allclose(steps, np.round(steps), atol=1e-9)  # on its channel's grid
        assert np.isclose(np.abs(steps).max(), 127)  # the largest weight maps to +-127
        assert np.abs(rounded[..., channel] - kernel[..., channel]).max() <= scale / 2 + 1e-12


def test_bias_corrections_keep_each_convolutions_mean_output():
    """BatchNorm statistics from clips: on those clips, the int8-rounded kernel with the
    corrected bias gives the float convolution's mean output (per channel), where the rounded
    kernel alone shifts it."""
    from jsqa_tf.models.calibration import set_batch_norm_statistics

    model = _small_model()
    assert bias_corrections(model.encoder) == {}  # BatchNorms that never saw data say nothing
    rng = np.random.default_rng(1)
    clips = (rng.standard_normal((4, 16_000)) * np.linspace(0.05, 0.3, 4)[:, None]).astype(np.float32)
    set_batch_norm_statistics(model.encoder, clips)
    corrections = bias_corrections(model.encoder)
    assert sorted(corrections) == ["block1_conv2", "block2_conv1", "block2_conv2"]  # the quantized ones
    x = clips
    for layer in model.encoder.layers[1:]:
        if layer.name in corrections:
            plain = np.asarray(layer(x)).mean(axis=(0, 1))
            rounded = np.asarray(
                keras.ops.conv(
                    x,
                    int8_rounded(layer.kernel).astype(np.float32),
                    padding=layer.padding,
                    strides=layer.strides[0],
                )
            ) + np.asarray(layer.bias)
            shift = np.abs(rounded.mean(axis=(0, 1)) - plain).max()
            left = np.abs(rounded.mean(axis=(0, 1)) + corrections[layer.name] - plain).max()
            assert shift > 1e-4, layer.name  # the rounding does shift the mean
            assert left < 0.1 * shift, (layer.name, left, shift)
        x = layer(x)


def test_the_int8_copy_uses_the_corrected_biases():
    from jsqa_tf.models.calibration import set_batch_norm_statistics

    model = _small_model()
    clips = example_clips((0.5, 0.7), seed=0)
    set_batch_norm_statistics(model.encoder, np.stack([clips[0][:8000], clips[1][:8000]]))
    copy = chunked_copy(model, chunk_frames=32)
    assert copy.contract_entry()["bias_corrected"] == ["block1_conv2", "block2_conv1", "block2_conv2"]
    batch = np.stack([clips[0][:8000], clips[1][:8000]])
    moved = np.abs(copy.embed(batch).numpy() - model.embed(batch).numpy()).max()
    assert 0 < moved < 0.05  # in float the copy is off by the corrections alone
