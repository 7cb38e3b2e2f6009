import os

import numpy as np
import pytest
import soundfile as sf

from jsqa_tf.audio import (
    audio_info,
    is_silent,
    read_audio,
    rms_dbfs,
    to_int16,
    write_audio,
    write_wav,
)
from jsqa_tf.errors import AudioError
from tests.conftest import sine


def dominant_hz(samples, sample_rate=16000):
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return np.fft.rfftfreq(len(samples), 1 / sample_rate)[np.argmax(spectrum)]


FORMATS = [
    ("wav", "PCM_U8", 1 / 128),
    ("wav", "PCM_16", 1 / 32768),
    ("wav", "PCM_24", 1e-6),
    ("wav", "PCM_32", 1e-6),
    ("wav", "FLOAT", 1e-7),
    ("wav", "DOUBLE", 1e-7),
    ("flac", "PCM_16", 1 / 32768),
    ("flac", "PCM_24", 1e-6),
    ("ogg", "VORBIS", None),  # lossy: checked by frequency, not samples
]


@pytest.mark.parametrize("suffix,subtype,tolerance", FORMATS)
def test_reads_every_format_and_bit_depth(tmp_path, suffix, subtype, tolerance):
    signal = sine(1.0, 16000, 440.0, 0.5)
    path = tmp_path / f"x.{suffix}"
    sf.write(path, signal, 16000, subtype=subtype)
    out = read_audio(path)
    assert out.dtype == np.float32 and out.ndim == 1
    assert np.max(np.abs(out)) <= 1.0
    if tolerance is None:
        assert abs(len(out) - len(signal)) < 100
        assert abs(dominant_hz(out[:16000]) - 440) < 5
    else:
        np.testing.assert_allclose(out, signal, atol=tolerance * 1.01)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resamples_to_16k_keeping_pitch_and_length(tmp_path, rate):
    path = tmp_path / "x.wav"
    sf.write(path, sine(2.0, rate, 1000.0), rate, subtype="PCM_16")
    out = read_audio(path)
    assert len(out) == 32000
    assert abs(dominant_hz(out) - 1000) < 2
    assert 0.3 < np.std(out) < 0.4  # level kept (0.5 / sqrt 2)


def test_native_rate_when_sample_rate_is_none(tmp_path):
    path = tmp_path / "x.flac"
    sf.write(path, sine(1.0, 44100), 44100)
    assert len(read_audio(path, sample_rate=None)) == 44100


def test_channels_averaged_or_chosen(tmp_path):
    left, right = sine(1.0, hz=300.0, amplitude=0.4), sine(1.0, hz=700.0, amplitude=0.2)
    six = np.stack([left, right, left, right, -left, np.zeros_like(left)], axis=1)
    path = tmp_path / "six.wav"
    sf.write(path, six, 16000, subtype="FLOAT")
    np.testing.assert_allclose(read_audio(path), six.mean(axis=1), atol=1e-7)
    np.testing.assert_allclose(read_audio(path, channel=1), right, atol=1e-7)
    with pytest.raises(AudioError, match="has 6 channel.*channel 6"):
        read_audio(path, channel=6)


def test_info_from_header(tmp_path):
    path = tmp_path / "x.wav"
    sf.write(path, np.zeros((24000, 2)), 48000, subtype="PCM_24")
    info = audio_info(path)
    assert (info.sample_rate, info.num_frames, info.num_channels) == (48000, 24000, 2)
    assert info.duration_seconds == 0.5 and info.subtype == "PCM_24"


def write_bad(tmp_path, kind):
    path = tmp_path / f"{kind}.wav"
    if kind == "missing":
        return tmp_path / "nope.wav"
    if kind == "folder":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not audio\n" * 50)
    elif kind == "random":
        path.write_bytes(b"RIFF" + os.urandom(2000))
    elif kind == "zero_frames":
        sf.write(path, np.zeros((0, 1)), 16000)
    elif kind == "truncated":
        sf.write(path, sine(1.0), 16000, subtype="PCM_16")
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "nan":
        sf.write(path, np.array([0.1, np.nan, 0.2] * 100, np.float32), 16000, subtype="FLOAT")
    elif kind == "inf":
        sf.write(path, np.array([0.1, np.inf, 0.2] * 100, np.float32), 16000, subtype="FLOAT")
    return path


@pytest.mark.parametrize(
    "kind,reason",
    [
        ("missing", "file not found"),
        ("folder", "is a folder"),
        ("empty", "empty file"),
        ("text", "not an audio file or corrupt"),
        ("random", "not an audio file or corrupt"),
        ("zero_frames", "zero length"),
        ("truncated", "truncated"),
        ("nan", "NaN or Inf"),
        ("inf", "NaN or Inf"),
    ],
)
def test_bad_input_raises_audio_error_with_path_and_reason(tmp_path, kind, reason):
    path = write_bad(tmp_path, kind)
    with pytest.raises(AudioError) as caught:
        read_audio(path)
    assert caught.value.path == str(path)
    assert reason in caught.value.reason
    assert str(path) in str(caught.value)


def test_corrupt_flac_body(tmp_path):
    path = tmp_path / "x.flac"
    sf.write(path, 0.3 * np.random.default_rng(0).standard_normal(32000), 16000)
    data = bytearray(path.read_bytes())
    data[len(data) // 2 :] = os.urandom(len(data) - len(data) // 2)
    path.write_bytes(bytes(data))
    with pytest.raises(AudioError, match="corrupt|truncated"):
        read_audio(path)


def test_too_short_is_an_error_only_below_the_minimum(tmp_path):
    path = tmp_path / "x.wav"
    write_wav(path, sine(0.5))
    assert len(read_audio(path, min_seconds=0.5)) == 8000
    with pytest.raises(AudioError, match="too short: 0.500 s, at least 1 s"):
        read_audio(path, min_seconds=1.0)


def test_silence_is_a_flag_not_an_error(tmp_path):
    path = tmp_path / "silence.wav"
    write_wav(path, np.zeros(16000))
    samples = read_audio(path)
    assert is_silent(samples) and rms_dbfs(samples) == float("-inf")
    assert is_silent(np.full(100, 1e-4))  # -80 dBFS
    assert not is_silent(sine())


def test_float_file_beyond_full_scale_is_clipped(tmp_path):
    path = tmp_path / "loud.wav"
    sf.write(path, np.array([0.5, 2.0, -3.0, 0.1], np.float32), 16000, subtype="FLOAT")
    np.testing.assert_array_equal(read_audio(path), np.float32([0.5, 1.0, -1.0, 0.1]))


def test_int16_round_trip_is_exact(tmp_path):
    pcm = np.random.default_rng(1).integers(-32768, 32768, 16000).astype(np.int16)
    path = tmp_path / "x.wav"
    write_wav(path, pcm.astype(np.float32) / 32768)
    assert sf.info(path).subtype == "PCM_16"
    np.testing.assert_array_equal(to_int16(read_audio(path)), pcm)


def test_to_int16_clips_and_rounds():
    np.testing.assert_array_equal(
        to_int16(np.array([-1.5, -1.0, 0.0, 0.5 / 32768, 1.0, 2.0])),
        [-32768, -32768, 0, 0, 32767, 32767],
    )


def test_write_is_atomic_and_leaves_no_temporaries(tmp_path, monkeypatch):
    path = tmp_path / "out" / "x.wav"
    write_wav(path, sine())
    before = path.read_bytes()

    def failing_write(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(sf, "write", failing_write)
    with pytest.raises(OSError):
        write_audio(path, np.zeros(10))
    assert path.read_bytes() == before  # the finished file is untouched
    assert os.listdir(path.parent) == ["x.wav"]
