"""StudentEncoder: the log-mel front end against NumPy, shapes, masked batches, saving, cost."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from jsqa_tf.models import (
    PRESETS,
    STUDENT_PRESETS,
    LogMelSpectrogram,
    MOSRegressor,
    StudentEncoder,
    WaveformEncoder,
    encoder_from_preset,
)
from jsqa_tf.models.student_encoder import MIN_ELEMENTS_QUANTIZED, mel_chunks, mel_matrix

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Toy sizes of both front ends (the chosen log-mel one and the measured waveform one).
TOY = {
    "log_mel": dict(num_mel_bins=24, stem_filters=4, block_filters=(8, 8), block_strides=(2, 1)),
    "waveform": dict(
        front_end="waveform", stem_filters=4, block_filters=(8, 8), block_strides=(2, 2), embedding_dim=12
    ),
}


def speech_like(rng, num_samples):
    t = np.arange(num_samples) / 16000
    tone = np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return (0.3 * tone + 0.01 * rng.standard_normal(num_samples)).astype("float32")


def test_the_presets_and_their_size():
    student = StudentEncoder.from_preset("student")
    assert student.output_shape == (None, 128) and student.contrastive_dim == 64
    assert student.count_params() < 100_000  # ~54 k: the size of an on-device model
    assert set(STUDENT_PRESETS) >= {"student", "student-tiny"}
    assert not set(STUDENT_PRESETS) & set(PRESETS)
    assert isinstance(encoder_from_preset("tiny"), WaveformEncoder)
    tiny = encoder_from_preset("student-tiny", name="encoder", embedding_dim=16)
    assert isinstance(tiny, StudentEncoder) and tiny.name == "encoder" and tiny.embedding_dim == 16
    with pytest.raises(ValueError, match="jsqa.*student-tiny"):
        encoder_from_preset("huge")
    with pytest.raises(ValueError, match="front_end"):
        StudentEncoder(front_end="cqt")


def test_variable_length_input_down_to_the_minimum():
    for front_end, toy in TOY.items():
        encoder = StudentEncoder(**toy)
        for length in (4000, 4001, 16000, 33333):
            out = np.asarray(encoder(np.zeros((2, length), "float32")))
            assert out.shape == (2, encoder.embedding_dim) and np.all(np.isfinite(out)), front_end


def test_mel_blocks_stay_under_the_quantizer_threshold_and_rebuild_the_matrix():
    matrix = mel_matrix(48, 512, 16000, 20.0, 8000.0)
    assert matrix.shape == (257, 48) and np.all(matrix.max(axis=0) > 0.3)  # no empty band
    rebuilt = np.zeros_like(matrix)
    chunks = mel_chunks(matrix)
    band = 0
    for start, end, weights in chunks:
        assert weights.size < MIN_ELEMENTS_QUANTIZED
        rebuilt[start:end, band : band + weights.shape[1]] = weights
        band += weights.shape[1]
    np.testing.assert_array_equal(rebuilt, matrix)
    with pytest.raises(ValueError, match="covers no FFT bin"):
        mel_chunks(mel_matrix(128, 128, 16000, 0.0, 8000.0))


def test_log_mel_equals_a_numpy_stft():
    rng = np.random.default_rng(0)
    x = speech_like(rng, 5000)[None]
    layer = LogMelSpectrogram(num_mel_bins=40, window_samples=256, hop_samples=160, log_offset=1e-6)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(256) / 256)  # periodic Hann
    padded = np.pad(x[0].astype(np.float64), (0, 256 - 160))
    frames = np.stack([padded[i * 160 : i * 160 + 256] for i in range(5000 // 160)])
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2
    expected = np.log(power @ mel_matrix(40, 256, 16000, 20.0, 8000.0) + 1e-6)
    got = np.asarray(layer(x))[0]
    assert got.shape == (31, 40)  # n // hop frames
    np.testing.assert_allclose(got, expected, atol=2e-3)


@pytest.mark.parametrize("front_end", ["log_mel", "waveform"])
def test_a_files_embedding_does_not_change_when_batched_with_a_longer_file(front_end):
    keras.utils.set_random_seed(0)
    encoder = StudentEncoder(**TOY[front_end])
    # BatchNorm statistics away from (0, 1), so a wrong mask shows
    for layer in encoder.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma, beta + 0.3, mean + 0.2, var * 0.5])
    rng = np.random.default_rng(2)
    lengths = (4001, 5000, 9999)
    files = [speech_like(rng, n) * gain for n, gain in zip(lengths, (1.0, 0.1, 0.5), strict=True)]
    batch = np.zeros((3, 9999), "float32")
    for row, audio in enumerate(files):
        batch[row, : len(audio)] = audio
    batch[0, 4001:] = 0.7  # whatever lies past a file's end is ignored
    masked = np.asarray(encoder.encode(batch, np.array(lengths)))
    for row, audio in enumerate(files):
        np.testing.assert_allclose(masked[row], np.asarray(encoder(audio[None]))[0], atol=1e-5)
    # without the lengths the padding changes the embedding (what the mask is for)
    plain = np.asarray(encoder(batch))
    assert np.max(np.abs(plain[1] - masked[1])) > 1e-4
    # and the MOS model on top passes the lengths through
    model = MOSRegressor(encoder, hidden_dims=(8,))
    mos = np.asarray(model({"waveform": batch, "num_valid_samples": np.array(lengths)}))
    np.testing.assert_allclose(mos[1], np.asarray(model(files[1][None]))[0], atol=1e-5)


def test_keras_files_round_trip_with_safe_mode(tmp_path):
    for preset in ("student-tiny", "student-waveform"):
        encoder = StudentEncoder.from_preset(preset, name="encoder")
        x = speech_like(np.random.default_rng(1), 6000)[None]
        path = tmp_path / f"{preset}.keras"
        encoder.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        assert type(loaded) is StudentEncoder and loaded.get_config() == encoder.get_config()
        np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(encoder(x)))


def test_cost_per_second_of_audio():
    # The waveform front end by hand: stem 32 taps x 4 filters at 1,000 frames/s; block 1
    # (stride 2, 500/s): depthwise 3 taps x 4, pointwise 4 -> 8; block 2 (250/s): 3 x 8, 8 -> 8;
    # last pointwise 8 -> 12 at 250/s.
    waveform = StudentEncoder(**TOY["waveform"])
    expected = 1000 * 32 * 4 + 500 * (3 * 4 + 4 * 8) + 250 * (3 * 8 + 8 * 8 + 8 * 12)
    assert waveform.macs_per_second() == pytest.approx(expected)
    # The chosen design, from its layers' shapes: each convolution's output positions in 100 s
    # of audio (time x mel bands) times its kernel's multiply-accumulates per position, per
    # second; plus the front end (256-sample window, FFT estimate, mel projection at 100
    # frames/s), a twelfth of the whole.
    student = StudentEncoder.from_preset("student")
    kinds = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
    convs = [layer for layer in student.layers if isinstance(layer, kinds)]
    probe = keras.Model(student.inputs, [layer.output for layer in convs])
    outputs = probe.compute_output_spec(keras.KerasTensor((1, 100 * 16_000)))
    conv_macs = (
        sum(
            int(np.prod(out.shape[1:-1])) * int(np.prod(layer.kernel.shape))
            for out, layer in zip(outputs, convs, strict=True)
        )
        / 100
    )
    front = 100 * (256 + 128 * 8 + student.get_layer("log_mel").num_mel_weights)
    assert student.macs_per_second() == pytest.approx(conv_macs + front, rel=0.01)
    assert 0.05 < front / student.macs_per_second() < 0.15


@pytest.mark.slow  # ~15 s: a fresh process that imports JAX, runs the student and one train step
def test_the_jax_backend_computes_the_same_embeddings(tmp_path):
    """A .keras file saved under TensorFlow, loaded and run (plain and masked) under JAX, and
    one training step of a MOS model on it there."""
    encoder = StudentEncoder.from_preset("student-tiny", name="encoder")
    rng = np.random.default_rng(3)
    batch = np.zeros((2, 8000), "float32")
    batch[0, :5000], batch[1] = speech_like(rng, 5000), speech_like(rng, 8000)
    encoder.save(tmp_path / "student.keras")
    np.save(tmp_path / "batch.npy", batch)
    script = f"""
import json, keras, numpy as np
import jsqa_tf.models
encoder = keras.saving.load_model({str(tmp_path / "student.keras")!r}, safe_mode=True)
batch = np.load({str(tmp_path / "batch.npy")!r})
masked = encoder.encode(batch, np.array([5000, 8000]))
plain = encoder(batch)
# and a training step through the masked path (gradients through the STFT)
model = jsqa_tf.models.MOSRegressor(encoder, hidden_dims=(8,))
model.compile(optimizer=keras.optimizers.Adam(1e-3))
inputs = {{"waveform": batch, "num_valid_samples": np.array([5000, 8000])}}
history = model.fit(inputs, np.array([2.0, 4.0], "float32"), batch_size=2, epochs=1, verbose=0)
print(json.dumps({{"backend": keras.backend.backend(), "plain": np.asarray(plain).tolist(),
                  "masked": np.asarray(masked).tolist(), "loss": float(history.history["loss"][0])}}))
"""
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["backend"] == "jax" and np.isfinite(out["loss"])
    np.testing.assert_allclose(out["plain"], np.asarray(encoder(batch)), atol=1e-4)
    np.testing.assert_allclose(
        out["masked"], np.asarray(encoder.encode(batch, np.array([5000, 8000]))), atol=1e-4
    )
