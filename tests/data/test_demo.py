import hashlib
import os

import numpy as np
import pytest
import soundfile as sf

from jsqa_tf.audio import is_silent, read_audio
from jsqa_tf.data.demo import SMALL_DEMO, make_demo_corpus, synth_noise, synth_speech
from jsqa_tf.errors import CorpusError


def tree_digest(root):
    digest = hashlib.sha256()
    for folder, subfolders, files in sorted(os.walk(root)):
        subfolders.sort()
        for name in sorted(files):
            digest.update(name.encode())
            with open(os.path.join(folder, name), "rb") as stream:
                digest.update(stream.read())
    return digest.hexdigest()


def test_same_seed_same_bytes_other_seed_other_audio(tiny_demo, tmp_path):
    again = make_demo_corpus(tmp_path / "again", seed=0, **SMALL_DEMO)
    root = os.path.dirname(tiny_demo["librispeech"])
    assert tree_digest(root) == tree_digest(os.path.dirname(again["librispeech"]))
    other = make_demo_corpus(tmp_path / "other", seed=1, **SMALL_DEMO)
    assert tree_digest(root) != tree_digest(os.path.dirname(other["librispeech"]))


def test_layout_and_formats_are_those_of_the_real_corpora(tiny_demo):
    flac = sorted(p for p in os.listdir(os.path.join(tiny_demo["librispeech"], "dev-clean")))
    assert all(name.isdigit() for name in flac)
    wavs = sorted(os.listdir(tiny_demo["chime3"]))
    assert wavs[0].startswith("BGD_150203_") and wavs[0].endswith("_BUS.CH1.wav")
    info = sf.info(os.path.join(tiny_demo["chime3"], wavs[0]))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    rates = set()
    nisqa_root = os.path.dirname(tiny_demo["nisqa"])
    for db in ("NISQA_TRAIN_SIM", "NISQA_VAL_SIM"):
        assert os.path.exists(os.path.join(nisqa_root, db, f"{db}_file.csv"))
        for name in os.listdir(os.path.join(nisqa_root, db, "deg")):
            rates.add(sf.info(os.path.join(nisqa_root, db, "deg", name)).samplerate)
    assert rates <= {8000, 16000, 48000} and len(rates) >= 2


def test_signals_are_speech_like_and_noise_is_not_silent():
    rng = np.random.default_rng(0)
    speech = synth_speech(rng, 3.0, f0_hz=120.0)
    frames = speech[: len(speech) // 320 * 320].reshape(-1, 320)
    energy_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    # Syllables and pauses: a wide frame-energy range, as in speech (unlike stationary noise).
    assert np.percentile(energy_db, 90) - np.percentile(energy_db, 10) > 20
    spectrum = np.abs(np.fft.rfft(speech)) ** 2
    freqs = np.fft.rfftfreq(len(speech), 1 / 16000)
    assert spectrum[freqs < 1000].sum() > spectrum[freqs > 4000].sum()  # voiced energy dominates
    for environment in ("BUS", "CAF", "PED", "STR"):
        noise = synth_noise(rng, environment, 2.0)
        assert noise.shape == (32000,) and np.isclose(np.std(noise), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="unknown environment"):
        synth_noise(rng, "ZOO", 1.0)


def test_files_read_back_and_labels_are_mos_like(tiny_demo):
    import csv

    with open(tiny_demo["nisqa"]) as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == SMALL_DEMO["num_mos_files"]
    assert all(1.0 <= float(row["mos"]) <= 5.0 for row in rows)
    assert all(row["source"] == "jsqa-tf demo (synthetic)" for row in rows)
    nisqa_root = os.path.dirname(tiny_demo["nisqa"])
    for row in rows:
        assert not is_silent(read_audio(os.path.join(nisqa_root, row["filepath_deg"])))


def test_existing_demo_is_kept_other_folders_refused(tiny_demo, tmp_path):
    root = os.path.dirname(tiny_demo["librispeech"])
    assert make_demo_corpus(root, seed=0, **SMALL_DEMO) == tiny_demo  # idempotent, no rewrite
    with pytest.raises(CorpusError, match="other settings"):
        make_demo_corpus(root, seed=5, **SMALL_DEMO)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("keep me")
    with pytest.raises(CorpusError, match="not an empty folder"):
        make_demo_corpus(tmp_path / "busy", **SMALL_DEMO)
    assert (tmp_path / "busy" / "mine.txt").read_text() == "keep me"
    assert [n for n in os.listdir(tmp_path) if n.startswith(".")] == []
