import keras
import numpy as np
import pytest

from jsqa_tf.models import ProjectionHead, WaveformEncoder


def trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize("preset,count,dim", [("cdpam", 26_065_920, 1024), ("jsqa", 22_132_224, 512)])
def test_paper_presets_have_exact_parameter_counts(preset, count, dim):
    encoder = WaveformEncoder.from_preset(preset)
    assert trainable(encoder) == count
    assert encoder.output_shape == (None, dim) and encoder.contrastive_dim == dim // 2
    assert encoder.total_decimation == 16


def test_cost_of_the_paper_encoder():
    # ~58 GMAC per second of 16 kHz audio with stride-2 decimation (CDPAM's layout).
    assert WaveformEncoder.from_preset("cdpam").macs_per_second() == pytest.approx(58.0e9, rel=0.01)
    assert WaveformEncoder.from_preset("jsqa").macs_per_second() == pytest.approx(54.1e9, rel=0.01)


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
