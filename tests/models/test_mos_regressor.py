"""MOSRegressor: bounded output, exact scores of padded batches, saving, the optimizer."""

import keras
import numpy as np
import pytest

from jsqa_tf.errors import ModelError
from jsqa_tf.models import MOSHead, MOSRegressor, ScaledSigmoid, WaveformEncoder, load_mos_regressor
from jsqa_tf.training.optimizer import ScaledAdam


def tiny_regressor(**kwargs):
    encoder = WaveformEncoder.from_preset("tiny", name="encoder")
    return MOSRegressor(encoder, hidden_dims=(16, 8), name="mos_regressor", **kwargs)


def test_output_is_always_within_the_mos_scale():
    assert np.allclose(
        np.asarray(ScaledSigmoid(1, 5)(np.array([[-1e4], [0.0], [1e4]], "float32"))), [[1], [3], [5]]
    )
    model = tiny_regressor()
    model.head.get_layer("score").bias.assign([1e3])  # saturate upwards
    rng = np.random.default_rng(0)
    loud = rng.standard_normal((3, 4000)).astype("float32") * 100
    for waveform in (loud, np.zeros((2, 4000), "float32"), rng.standard_normal((1, 16)).astype("float32")):
        mos = np.asarray(model(waveform))
        assert mos.shape == (len(waveform),) and np.all((mos >= 1.0) & (mos <= 5.0))
    model.head.get_layer("score").bias.assign([-1e3])
    assert np.all(np.asarray(model(loud)) >= 1.0)


def test_head_widths_and_embedding_choice():
    assert MOSHead(512).count_params() == 512 * 256 + 256 + 256 * 128 + 128 + 128 * 64 + 64 + 64 + 1
    full, contrastive = tiny_regressor(), tiny_regressor(embedding="contrastive")
    assert (full.embedding_width, contrastive.embedding_width) == (32, 16)
    x = np.random.default_rng(1).standard_normal((2, 3000)).astype("float32")
    assert np.asarray(contrastive.embed(x)).shape == (2, 16)
    with pytest.raises(ValueError, match="embedding"):
        tiny_regressor(embedding="half")


@pytest.mark.parametrize("decimation", ["stride", "subsample"])
def test_a_files_score_does_not_change_when_batched_with_a_longer_file(decimation):
    encoder = WaveformEncoder.from_preset("tiny", decimation=decimation, name="encoder")
    model = MOSRegressor(encoder, hidden_dims=(16, 8))
    rng = np.random.default_rng(2)
    short, long = (rng.standard_normal(n).astype("float32") * 0.1 for n in (3001, 8000))
    alone = float(np.asarray(model(short[None]))[0])
    batch = np.zeros((2, 8000), "float32")
    batch[0, :3001], batch[1] = short, long
    masked = np.asarray(model({"waveform": batch, "num_valid_samples": np.array([3001, 8000])}))
    assert masked[0] == pytest.approx(alone, abs=1e-5)
    assert masked[1] == pytest.approx(float(np.asarray(model(long[None]))[0]), abs=1e-5)
    # without the lengths the padding changes the embedding (what the mask is for)
    plain = np.asarray(model.embed(batch))[0]
    assert np.max(np.abs(plain - np.asarray(model.embed(short[None]))[0])) > 1e-4


def test_keras_file_round_trips_with_safe_mode_and_loads_from_a_run_folder(tmp_path):
    model = tiny_regressor(dropout=0.1)
    x = np.random.default_rng(3).standard_normal((2, 2500)).astype("float32")
    (tmp_path / "run").mkdir()
    model.save(tmp_path / "run" / "model.keras")
    for path in (tmp_path / "run", tmp_path / "run" / "model.keras"):
        loaded = load_mos_regressor(path)
        assert loaded.get_config() == model.get_config()
        np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))
    loaded = keras.saving.load_model(tmp_path / "run" / "model.keras", safe_mode=True)
    assert isinstance(loaded, MOSRegressor)


def test_loading_errors_name_the_file(tmp_path):
    with pytest.raises(ModelError, match="no trained model here"):
        load_mos_regressor(tmp_path)
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="broken.keras.*not a Keras model file"):
        load_mos_regressor(tmp_path / "broken.keras")
    WaveformEncoder.from_preset("tiny").save(tmp_path / "encoder.keras")
    with pytest.raises(ModelError, match="not a MOSRegressor"):
        load_mos_regressor(tmp_path / "encoder.keras")
    with pytest.raises(ModelError, match="model not found"):
        load_mos_regressor(tmp_path / "missing.keras")


def test_scaled_adam_steps_the_scaled_group_at_its_own_rate():
    def one_step(scale, decay=0.0):
        keras.utils.set_random_seed(0)
        model = tiny_regressor()
        optimizer = ScaledAdam(1e-2, model.encoder.trainable_variables, scale, decoupled_weight_decay=decay)
        model.compile(optimizer=optimizer)
        before = [np.asarray(v) for v in model.trainable_variables]
        x = np.random.default_rng(4).standard_normal((4, 2000)).astype("float32")
        model.train_on_batch(x, np.array([1.5, 2.0, 4.0, 4.5], "float32"))
        return model, [np.asarray(v) - b for v, b in zip(model.trainable_variables, before, strict=True)]

    model, full = one_step(1.0)
    _, tenth = one_step(0.1)
    _, frozen = one_step(0.0)
    encoder_ids = {id(v) for v in model.encoder.trainable_variables}
    for variable, a, b, c in zip(model.trainable_variables, full, tenth, frozen, strict=True):
        if id(variable) in encoder_ids:
            np.testing.assert_allclose(b, 0.1 * a, rtol=1e-4, atol=1e-9)  # Adam's first step: lr * sign
            assert not np.any(c)
        else:
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-9)
    _, decayed = one_step(0.0, decay=0.5)
    kernel = [d for v, d in zip(model.trainable_variables, decayed, strict=True) if id(v) in encoder_ids]
    assert not any(np.any(d) for d in kernel)  # the encoder's rate is 0: no decay either
