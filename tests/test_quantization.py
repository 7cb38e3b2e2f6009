"""The chunked copy converted to int8 computes the same function as the model, in float."""

import keras
import numpy as np
import pytest

from jsqa_tf.export import example_clips
from jsqa_tf.models import MOSRegressor, WaveformEncoder
from jsqa_tf.quantization import ChunkedConv1D, chunk_convolutions, chunked_copy


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


@pytest.mark.parametrize("decimation", ["stride", "subsample"])
def test_chunked_copy_keeps_the_scores(decimation):
    keras.utils.set_random_seed(0)
    sizes = dict(first_filters=8, num_blocks=2, layers_per_block=2, kernel_size=15, embedding_dim=16)
    encoder = WaveformEncoder(**sizes, decimation=decimation)
    model = MOSRegressor(encoder, hidden_dims=(8,), embedding="contrastive")
    copy = chunked_copy(model, chunk_frames=64)
    assert sum(isinstance(layer, ChunkedConv1D) for layer in copy.encoder.layers) == 4
    for clip in example_clips((0.25, 1.3), seed=0):
        batch = np.stack([clip, 0.3 * clip[::-1]])
        embedding = copy.embed(batch).numpy()
        np.testing.assert_allclose(embedding, model.embed(batch).numpy(), atol=1e-5)
        np.testing.assert_allclose(copy.head(embedding).numpy()[:, 0], model(batch).numpy(), atol=1e-5)


def test_chunk_convolutions_copies_and_leaves_the_model_alone():
    inputs = keras.Input((None, 2))
    model = keras.Model(inputs, keras.layers.Conv1D(3, 5, padding="same", name="conv")(inputs))
    copy = chunk_convolutions(model, chunk_frames=8)
    assert type(model.get_layer("conv")) is keras.layers.Conv1D
    assert isinstance(copy.get_layer("conv"), ChunkedConv1D)
    x = np.random.default_rng(1).standard_normal((2, 50, 2)).astype(np.float32)
    np.testing.assert_allclose(copy(x).numpy(), model(x).numpy(), atol=1e-5)
