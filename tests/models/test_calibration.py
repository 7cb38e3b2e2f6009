"""calibrate: BatchNorm statistics of a batch, a head fitted to targets, the model left usable."""

import keras
import numpy as np
import pytest

from jsqa_tf.export import example_clips
from jsqa_tf.models import MOSRegressor, encoder_from_preset
from jsqa_tf.models.calibration import calibrate, set_batch_norm_statistics


def _clips(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    gain = np.random.default_rng(seed).uniform(0.05, 1.0, count).astype(np.float32)
    return np.stack(example_clips([0.5] * count, seed=seed)) * gain[:, None], gain


@pytest.mark.parametrize("preset", ["tiny", "student-tiny"])
def test_batch_norm_statistics_are_the_batch_s(preset):
    """With moving statistics equal to the batch's, inference mode normalises that batch
    exactly as training mode does; the layers' momentum is left as it was."""
    keras.utils.set_random_seed(0)
    encoder = encoder_from_preset(preset, name="encoder")
    clips, _ = _clips(8)
    before = np.asarray(encoder(clips, training=False))
    assert set_batch_norm_statistics(encoder, clips) >= 4
    inference = np.asarray(encoder(clips, training=False))
    assert not np.allclose(inference, before, atol=1e-3)
    np.testing.assert_allclose(inference, np.asarray(encoder(clips, training=True)), rtol=1e-3, atol=1e-4)
    momenta = {
        layer.momentum for layer in encoder.layers if isinstance(layer, keras.layers.BatchNormalization)
    }
    assert momenta == {encoder.batch_norm_momentum}


def test_calibrate_fits_the_head_to_the_targets():
    keras.utils.set_random_seed(0)
    model = MOSRegressor(encoder_from_preset("tiny", name="encoder"), hidden_dims=(16, 8))
    clips, gain = _clips(32)
    targets = 1.0 + 4.0 * gain
    untrained = np.asarray(model(clips))
    fitted = calibrate(model, clips, targets, epochs=20, learning_rate=1e-2)
    np.testing.assert_allclose(fitted, np.asarray(model(clips)), atol=1e-4)  # what the model gives
    assert np.corrcoef(fitted, targets)[0, 1] > 0.9 > abs(np.corrcoef(untrained, targets)[0, 1])
    assert np.sqrt(np.mean((fitted - targets) ** 2)) < 0.5 * np.std(targets)
    with pytest.raises(ValueError, match="3 clips but 2 targets"):
        calibrate(model, clips[:3], targets[:2])
