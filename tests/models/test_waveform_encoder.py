import keras
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from jsqa_tf.models import ProjectionHead, WaveformEncoder


def trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


# The paper states both "512-d embeddings" and "~26 M trainable parameters"; no one layout has
# both: `jsqa` keeps the width (22.1 M), `cdpam` the count (26.07 M, 1024-d).
@pytest.mark.parametrize("preset,count,dim", [("cdpam", 26_065_920, 1024), ("jsqa", 22_132_224, 512)])
def test_cdpam_layout_presets_have_exact_parameter_counts(preset, count, dim):
    encoder = WaveformEncoder.from_preset(preset)
    assert trainable(encoder) == count
    assert encoder.output_shape == (None, dim) and encoder.contrastive_dim == dim // 2
    assert encoder.total_decimation == 16
    assert (encoder.decimation, encoder.batch_norm_epsilon) == ("subsample", 1e-5)  # CDPAM's numerics
    assert (
        trainable(WaveformEncoder.from_preset(preset, decimation="stride", batch_norm_epsilon=1e-3)) == count
    )


def conv_macs_from_layers(encoder, num_samples):
    """Multiply-accumulates of the encoder's convolutions on `num_samples` of audio, from its
    built layers: each Conv1D's output length (traced symbolically) x its kernel's size
    (taps x input channels x filters). BatchNorm, activations and pooling are not counted."""
    convs = [layer for layer in encoder.layers if isinstance(layer, keras.layers.Conv1D)]
    probe = keras.Model(encoder.inputs, [layer.output for layer in convs])
    outputs = probe.compute_output_spec(keras.KerasTensor((1, num_samples)))
    return sum(
        out.shape[1] * int(np.prod(layer.kernel.shape)) for out, layer in zip(outputs, convs, strict=True)
    )


@pytest.mark.parametrize(
    "preset, overrides",
    [
        ("cdpam", {}),  # every block's last conv at the full rate, then subsampled (CDPAM's)
        ("cdpam", {"decimation": "stride"}),  # that conv computes every second output only
        ("jsqa", {}),
        ("jsqa", {"decimation": "stride"}),
        ("tiny", {}),
        ("tiny", {"num_blocks": 3, "layers_per_block": 3, "growth": 3, "kernel_size": 5}),
        ("tiny", {"decimation": "subsample", "first_filters": 5, "embedding_dim": 7}),
    ],
    ids=["cdpam", "cdpam-stride", "jsqa", "jsqa-stride", "tiny", "tiny-3x3-growth3", "tiny-subsample-odd"],
)
def test_cost_per_second_equals_the_layers_cost(preset, overrides):
    encoder = WaveformEncoder.from_preset(preset, **overrides)
    assert encoder.macs_per_second() == conv_macs_from_layers(encoder, 16_000)
    assert encoder.macs_per_second(8_000) == conv_macs_from_layers(encoder, 8_000)


def test_variable_length_input_and_every_dimension_configurable():
    encoder = WaveformEncoder(
        first_filters=4,
        num_blocks=3,
        layers_per_block=2,
        growth=3,
        kernel_size=5,
        embedding_dim=20,
        contrastive_dim=5,
    )
    for length in (800, 1601, 16000):
        assert encoder(np.zeros((2, length), "float32")).shape == (2, 20)
    conv_widths = [layer.filters for layer in encoder.layers if isinstance(layer, keras.layers.Conv1D)]
    assert conv_widths == [4, 12, 12, 36, 36, 20]
    with pytest.raises(ValueError, match="odd"):
        WaveformEncoder(kernel_size=4)
    with pytest.raises(ValueError, match="unknown preset"):
        WaveformEncoder.from_preset("huge")


def test_stride_decimation_equals_cdpam_subsampling_at_inference():
    rng = np.random.default_rng(0)
    strided = WaveformEncoder.from_preset("tiny")
    literal = WaveformEncoder.from_preset("tiny", decimation="subsample")
    literal.set_weights(strided.get_weights())
    x = rng.standard_normal((3, 3001)).astype("float32")
    np.testing.assert_allclose(np.asarray(strided(x)), np.asarray(literal(x)), atol=1e-6)


def cdpam_channels(n_layers, nefilters):
    """(in, out) channels of CDPAM's `base_encoder`, by its own rule: doubled at every 4th conv."""
    pairs, nchan = [], nefilters
    for i in range(n_layers):
        chin = 1 if i == 0 else nchan
        if (i + 1) % 4 == 0:
            nchan *= 2
        pairs.append((chin, nchan))
    return pairs


def cdpam_forward(x, convs, norms, *, training, eps=1e-5, momentum=0.1, slope=0.1):
    """CDPAM's `base_encoder.forward` in NumPy (float64), from cdpam/models.py: per layer
    Conv1d(padding=k//2) -> BatchNorm1d -> leaky_relu(0.1), `x[:, :, ::2]` after every 4th,
    then the mean over time. `convs`: (weight [out, in, k], bias) in PyTorch's layout; `norms`:
    dicts of gamma, beta, running_mean, running_var, whose running statistics training updates
    as PyTorch does (momentum 0.1, the unbiased batch variance)."""
    x = np.asarray(x, np.float64)[:, None, :]
    for i, ((weight, bias), norm) in enumerate(zip(convs, norms, strict=True)):
        half = weight.shape[2] // 2
        windows = sliding_window_view(np.pad(x, ((0, 0), (0, 0), (half, half))), weight.shape[2], axis=2)
        y = np.einsum("nctk,ock->not", windows, weight) + bias[None, :, None]
        if training:
            mean, var = y.mean(axis=(0, 2)), y.var(axis=(0, 2))
            count = y.shape[0] * y.shape[2]
            norm["running_mean"] = (1 - momentum) * norm["running_mean"] + momentum * mean
            norm["running_var"] = (1 - momentum) * norm["running_var"] + momentum * var * count / (count - 1)
        else:
            mean, var = norm["running_mean"], norm["running_var"]
        y = (y - mean[None, :, None]) / np.sqrt(var[None, :, None] + eps)
        y = y * norm["gamma"][None, :, None] + norm["beta"][None, :, None]
        x = np.where(y >= 0, y, slope * y)
        if (i + 1) % 4 == 0:
            x = x[:, :, ::2]
    return x.sum(axis=2) / x.shape[2]


def random_cdpam_weights(rng, n_layers, nefilters, kernel_size=15):
    convs, norms = [], []
    for chin, chout in cdpam_channels(n_layers, nefilters):
        bound = 1 / np.sqrt(chin * kernel_size)  # PyTorch's default Conv1d initialisation range
        convs.append(
            (rng.uniform(-bound, bound, (chout, chin, kernel_size)), rng.uniform(-bound, bound, chout))
        )
        norms.append(
            {
                "gamma": rng.uniform(0.5, 1.5, chout),
                "beta": rng.normal(0, 0.1, chout),
                "running_mean": np.zeros(chout),
                "running_var": np.ones(chout),
            }
        )
    # Moving statistics of a plausible size: those of a quiet calibration batch (momentum 1).
    calibration = 0.01 * rng.standard_normal((4, 1200))
    cdpam_forward(calibration, convs, norms, training=True, momentum=1.0)
    return convs, norms


def load_cdpam_weights(encoder, convs, norms):
    conv_layers = [layer for layer in encoder.layers if isinstance(layer, keras.layers.Conv1D)]
    norm_layers = [layer for layer in encoder.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer, (weight, bias) in zip(conv_layers, convs, strict=True):
        layer.set_weights([weight.transpose(2, 1, 0), bias])  # [out, in, k] -> Keras's [k, in, out]
    for layer, norm in zip(norm_layers, norms, strict=True):
        layer.set_weights([norm[key] for key in ("gamma", "beta", "running_mean", "running_var")])
    return norm_layers


def test_the_cdpam_preset_computes_cdpam_forward_pass_in_training_and_inference():
    """Against an independent NumPy port of CDPAM's encoder, on a small width (8 layers, 4 -> 16
    channels): inference (moving statistics), training (batch statistics, and the moving
    statistics it updates), epsilon 1e-5; stride decimation matches at inference only."""
    rng = np.random.default_rng(0)
    convs, norms = random_cdpam_weights(rng, n_layers=8, nefilters=4)
    encoder = WaveformEncoder.from_preset("cdpam", first_filters=4, num_blocks=2, embedding_dim=16)
    norm_layers = load_cdpam_weights(encoder, convs, norms)
    x = (0.01 * rng.standard_normal((3, 1001))).astype("float32")  # quiet, odd length

    inference = cdpam_forward(x, convs, [dict(n) for n in norms], training=False)
    np.testing.assert_allclose(np.asarray(encoder(x, training=False)), inference, rtol=1e-4, atol=1e-6)

    updated = [dict(n) for n in norms]
    training = cdpam_forward(x, convs, updated, training=True)
    np.testing.assert_allclose(np.asarray(encoder(x, training=True)), training, rtol=1e-4, atol=1e-6)
    for layer, norm in zip(norm_layers, updated, strict=True):
        np.testing.assert_allclose(np.asarray(layer.moving_mean), norm["running_mean"], rtol=1e-4, atol=1e-9)
        # Keras updates the moving variance with the biased batch variance, PyTorch with the
        # unbiased one: a factor n / (n - 1) on the update, n = batch x time (>= 3 x 126 here).
        np.testing.assert_allclose(np.asarray(layer.moving_variance), norm["running_var"], rtol=3e-3)

    # The port is sensitive to what the preset fixes: Keras's epsilon would miss it by far ...
    keras_eps = cdpam_forward(x, convs, [dict(n) for n in norms], training=True, eps=1e-3)
    assert np.max(np.abs(keras_eps - training)) / np.max(np.abs(training)) > 0.01
    # ... and so would the stride-2 decimation in training, though not at inference.
    strided = WaveformEncoder.from_preset(
        "cdpam", first_filters=4, num_blocks=2, embedding_dim=16, decimation="stride"
    )
    load_cdpam_weights(strided, convs, norms)
    np.testing.assert_allclose(np.asarray(strided(x, training=False)), inference, rtol=1e-4, atol=1e-6)
    relative = np.abs(np.asarray(strided(x, training=True)) - training) / np.abs(training).max()
    assert relative.max() > 0.01


def test_keras_files_round_trip_with_safe_mode(tmp_path):
    encoder = WaveformEncoder.from_preset("tiny", name="encoder")
    head = ProjectionHead(encoder.contrastive_dim, dropout=0.2)
    x = np.random.default_rng(1).standard_normal((2, 2000)).astype("float32")
    for model, inputs in ((encoder, x), (head, np.asarray(encoder(x))[:, : encoder.contrastive_dim])):
        path = tmp_path / f"{model.name}.keras"
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        assert type(loaded) is type(model) and loaded.get_config() == model.get_config()
        np.testing.assert_array_equal(np.asarray(loaded(inputs)), np.asarray(model(inputs)))
    assert head.output_shape == (None, encoder.contrastive_dim // 4)  # halved twice
    # A file saved before batch_norm_epsilon was an argument loads with the epsilon it trained with.
    older = {
        k: v for k, v in WaveformEncoder.from_preset("tiny").get_config().items() if k != "batch_norm_epsilon"
    }
    assert WaveformEncoder.from_config(older).get_layer("block1_conv1_bn").epsilon == 1e-3
