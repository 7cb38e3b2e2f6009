"""The built-in demo corpus: synthetic, deterministic, laid out like the real corpora.

`make_demo_corpus(root, seed)` writes, from NumPy alone:

    LibriSpeech/dev-clean/<speaker>/<chapter>/<speaker>-<chapter>-<nnnn>.flac (+ .trans.txt)
        speech-like utterances: voiced syllables made of harmonics of a gliding F0 shaped by
        formants that glide from vowel to vowel, with breath noise; fricative and plosive
        noise bursts; word pauses; each speaker has its own pitch, formant scale and rate. It
        sounds like babbling, not words.
    CHiME3/data/audio/16kHz/backgrounds/BGD_<date>_<nnn>_<ENV>.CH<k>.wav
        noise of four kinds named like CHiME-3's environments: BUS (engine harmonics, rumble,
        rattles), CAF (babble of several synthetic talkers, dish clinks), PED (distant babble,
        footsteps), STR (traffic swells, horns); each recording on several channels that share
        the scene with a per-microphone delay, gain and self-noise.
    NISQA_Corpus/NISQA_corpus_file.csv, NISQA_Corpus/<DB>/<DB>_file.csv, <DB>/{deg,ref}/*.wav
        for DB in NISQA_TRAIN_SIM and NISQA_VAL_SIM (disjoint speakers): demo utterances put
        through known degradations (white noise at an SNR, band limitation to narrow- or
        wide-band, clipping, frame erasures, a level too low or too high) and stored at 48,
        16 or 8 kHz.

The labels are NOT human ratings. Each degradation maps to a quality factor in [0, 1]:
    noise      q_n = 1 / (1 + exp(-(SNR_dB - 12) / 5))           (1 without noise)
    bandwidth  q_b = 1.0 full band, 0.85 wide-band (7 kHz), 0.6 narrow-band (3.4 kHz)
    clipping   q_c = 1 - 0.6 * (share of samples clipped) ** 0.5
    erasures   q_e = max(0.2, 1 - 2.5 * frame erasure rate)
    level      q_l = max(0.2, 1 - max(0, |L - (-26)| - 6) / 20), L the speech's RMS level in
               dBFS (the gain applied to the utterance, not the noise added): 1 within 6 dB
               of -26 dBFS, speech's usual level (the demo's utterances lie in [-28, -20]).
               A quarter of the files are played too quiet (L in [-55, -40] dBFS) or too
               loud (L in [-14, -8] dBFS, through a tanh limiter that keeps peaks below 1).
and mos = clip(1 + 4 q_n q_b q_c q_e q_l + N(0, 0.15^2), 1, 5). Each dimension column is
drawn from its own degradation alone, clip(1 + 4 q + N(0, 0.2^2), 1, 5) with q:
    noi   q_n               (noise)
    col   q_b q_c           (band limitation and clipping)
    dis   q_e               (erasures)
    loud  q_l               (level)
They let the MOS code paths run end to end; numbers trained on them say nothing about real
listeners.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable

import numpy as np

from jsqa_lite.contract import SAMPLE_RATE
from jsqa_tf import atomic
from jsqa_tf.audio import resample, write_audio
from jsqa_tf.errors import CorpusError

DEMO_VERSION = 2
"""2: the level degradation and the `loud` column drawn from it."""
MARKER_NAME = "demo.json"
CHIME3_DIR = os.path.join("CHiME3", "data", "audio", "16kHz", "backgrounds")
LIBRISPEECH_SUBSET = "dev-clean"

SMALL_DEMO = dict(
    num_speakers=3,
    chapters_per_speaker=1,
    utterances_per_chapter=2,
    noise_seconds=3.0,
    recordings_per_environment=1,
    noise_channels=2,
    num_mos_files=6,
)
"""Sizes of `jsqa-tf demo-data --small` and of the tests' demo corpus (seconds to make)."""

# NISQA's column set (NISQA_corpus_file.csv); the demo fills what its degradations define.
NISQA_COLUMNS = (
    "db,con,file,con_description,filename_deg,filename_ref,source,lang,votes,mos,noi,col,dis,"
    "loud,noi_std,col_std,dis_std,loud_std,mos_std,filepath_deg,filepath_ref,filter,"
    "timeclipping,wbgn,p50mnru,bgn,clipping,arb_filter,asl_in,asl_out,codec1,codec2,codec3,"
    "plcMode1,plcMode2,plcMode3,wbgn_snr,bgn_snr,tc_fer,tc_nburst,cl_th,bp_low,bp_high,p50_q,"
    "bMode1,bMode2,bMode3,FER1,FER2,FER3,asl_in_level,asl_out_level"
).split(",")

# (F1, F2, F3) in Hz of a few vowels, adult male; scaled per speaker.
_VOWELS = np.array(
    [
        [730, 1090, 2440],
        [270, 2290, 3010],
        [300, 870, 2240],
        [530, 1840, 2480],
        [570, 840, 2410],
        [660, 1720, 2410],
        [490, 1350, 1690],
        [440, 1020, 2240],
    ],
    dtype=np.float64,
)
_FORMANT_BANDWIDTHS = np.array([90.0, 110.0, 170.0])
_ENVIRONMENTS = ("BUS", "CAF", "PED", "STR")


# --- signal helpers ---------------------------------------------------------------------------


def _band_noise(rng, num_samples, low_hz, high_hz, sample_rate=SAMPLE_RATE):
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    freqs = np.fft.rfftfreq(num_samples, 1.0 / sample_rate)
    spectrum[(freqs < low_hz) | (freqs > high_hz)] = 0.0
    out = np.fft.irfft(spectrum, num_samples)
    return out / (np.std(out) + 1e-12)


def _colored_noise(rng, num_samples, exponent):
    """Noise with power ~ 1/f**exponent (0 white, 1 pink, 2 brown), unit variance."""
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    freqs = np.fft.rfftfreq(num_samples, 1.0 / SAMPLE_RATE)
    spectrum *= 1.0 / np.maximum(freqs, 20.0) ** (exponent / 2.0)
    out = np.fft.irfft(spectrum, num_samples)
    return out / (np.std(out) + 1e-12)


def _fade(num_samples, fade_samples):
    envelope = np.ones(num_samples)
    fade_samples = min(fade_samples, num_samples // 2)
    if fade_samples > 0:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, fade_samples))
        envelope[:fade_samples] = ramp
        envelope[-fade_samples:] = ramp[::-1]
    return envelope


def _set_rms_db(signal, level_db):
    rms = np.sqrt(np.mean(signal**2)) + 1e-12
    return signal * (10.0 ** (level_db / 20.0) / rms)


# --- speech ----------------------------------------------------------------------------------


_HIGH_FORMANTS = np.array([[3300.0, 250.0, 0.12], [4500.0, 350.0, 0.06]])  # F4, F5: Hz, bandwidth, gain


def _formant_weights(harmonic_hz, formants):
    """Amplitude of each harmonic under a vowel's formants (resonance peaks) and F4/F5."""
    weights = np.zeros_like(harmonic_hz)
    for formant, bandwidth, gain in zip(formants, _FORMANT_BANDWIDTHS, (1.0, 0.6, 0.3), strict=True):
        weights += gain / (1.0 + ((harmonic_hz - formant) / (bandwidth / 2.0)) ** 2)
    for formant, bandwidth, gain in _HIGH_FORMANTS:
        weights += gain / (1.0 + ((harmonic_hz - formant) / (bandwidth / 2.0)) ** 2)
    return weights / np.arange(1, len(harmonic_hz) + 1) ** 0.5  # glottal roll-off


def _vowel(rng, num_samples, f0_hz, formant_scale, start_phase, previous_vowel):
    """A voiced segment: harmonics of a gliding F0 whose formants glide from the previous
    vowel to this one, plus a little breath noise."""
    f0 = f0_hz * (1.0 + rng.uniform(-0.08, 0.08) * np.linspace(-1, 1, num_samples))
    f0 *= 1.0 + 0.01 * rng.standard_normal(num_samples).cumsum() / np.sqrt(num_samples)
    phase = start_phase + 2.0 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    vowel = rng.integers(len(_VOWELS))
    num_harmonics = int(7600 // (f0_hz * 1.1))
    harmonic_hz = np.arange(1, num_harmonics + 1) * f0_hz
    start = _formant_weights(harmonic_hz, _VOWELS[previous_vowel] * formant_scale)
    end = _formant_weights(harmonic_hz, _VOWELS[vowel] * formant_scale)
    waves = np.sin(np.arange(1, num_harmonics + 1)[:, None] * phase[None, :])
    glide = np.clip(np.linspace(0.0, 3.0, num_samples), 0.0, 1.0)  # transition over the first third
    segment = (1 - glide) * (start @ waves) + glide * (end @ waves)
    segment += 0.03 * np.std(segment) * _band_noise(rng, num_samples, 1000, 7500)
    return segment * _fade(num_samples, int(0.02 * SAMPLE_RATE)), phase[-1], vowel


def synth_speech(
    rng: np.random.Generator,
    duration_seconds: float,
    *,
    f0_hz: float = 120.0,
    formant_scale: float = 1.0,
    syllables_per_second: float = 4.0,
) -> np.ndarray:
    """Speech-like audio at 16 kHz: syllables with formants, consonant bursts, pauses."""
    total = int(duration_seconds * SAMPLE_RATE)
    out = np.zeros(total)
    position = int(rng.uniform(0.1, 0.3) * SAMPLE_RATE)  # leading silence, as in LibriSpeech
    end = total - int(rng.uniform(0.1, 0.3) * SAMPLE_RATE)
    phase, vowel = 0.0, rng.integers(len(_VOWELS))
    syllable_in_word, word_length = 0, rng.integers(1, 4)
    while position < end:
        if rng.random() < 0.6:  # a consonant first: fricative or plosive
            length = int(rng.uniform(0.03, 0.09) * SAMPLE_RATE)
            if rng.random() < 0.6:
                center = rng.uniform(2500, 6000)
                burst = _band_noise(rng, length, center - 1200, center + 1200) * 0.15
            else:
                position += int(0.02 * SAMPLE_RATE)
                length = int(0.015 * SAMPLE_RATE)
                burst = _band_noise(rng, length, 500, 5000) * 0.3
            burst *= _fade(length, length // 4)
            stop = min(position + length, end)
            if stop <= position:
                break
            out[position:stop] += burst[: stop - position]
            position = stop
        length = int(rng.uniform(0.6, 1.4) / syllables_per_second * 0.7 * SAMPLE_RATE)
        declination = 1.0 - 0.15 * position / total
        segment, phase, vowel = _vowel(rng, length, f0_hz * declination, formant_scale, phase, vowel)
        stop = min(position + length, end)
        out[position:stop] += segment[: stop - position]
        position = stop
        syllable_in_word += 1
        if syllable_in_word >= word_length:
            syllable_in_word, word_length = 0, rng.integers(1, 4)
            pause = rng.uniform(0.25, 0.45) if rng.random() < 0.15 else rng.uniform(0.03, 0.12)
            position += int(pause * SAMPLE_RATE)
    return out


# --- noise -----------------------------------------------------------------------------------


def _babble(rng, num_samples, num_talkers):
    seconds = num_samples / SAMPLE_RATE
    mix = np.zeros(num_samples)
    for _ in range(num_talkers):
        voice = synth_speech(rng, seconds, f0_hz=rng.uniform(95, 230), formant_scale=rng.uniform(0.95, 1.2))
        mix += np.roll(voice, rng.integers(num_samples)) * rng.uniform(0.3, 1.0)
    return mix / (np.std(mix) + 1e-12)


def _events(rng, num_samples, rate_per_second, make_event):
    out = np.zeros(num_samples)
    for _ in range(rng.poisson(rate_per_second * num_samples / SAMPLE_RATE)):
        event = make_event()
        start = rng.integers(0, max(1, num_samples - len(event)))
        out[start : start + len(event)] += event[: num_samples - start]
    return out


def _decaying_tone(rng, low_hz, high_hz, seconds, decay_seconds):
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    tone = sum(np.sin(2 * np.pi * rng.uniform(low_hz, high_hz) * t) for _ in range(3))
    return tone * np.exp(-t / decay_seconds)


def synth_noise(rng: np.random.Generator, environment: str, duration_seconds: float) -> np.ndarray:
    """One scene of background noise at 16 kHz, unit RMS, for a CHiME-3 environment name."""
    n = int(duration_seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    if environment == "BUS":
        engine_hz = rng.uniform(30, 50) * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * t))
        phase = 2 * np.pi * np.cumsum(engine_hz) / SAMPLE_RATE
        engine = sum(np.sin(k * phase) / k for k in range(1, 8))
        rattle = _events(rng, n, 1.5, lambda: _band_noise(rng, 1200, 1500, 5000) * _fade(1200, 300))
        scene = 1.0 * _colored_noise(rng, n, 2.0) + 0.6 * engine / np.std(engine) + 0.3 * rattle
    elif environment == "CAF":
        clink = lambda: _decaying_tone(rng, 2000, 5000, 0.3, 0.05)  # noqa: E731
        clinks = _events(rng, n, 0.8, clink)
        scene = _babble(rng, n, 6) + 0.3 * _colored_noise(rng, n, 1.0) + 0.4 * clinks
    elif environment == "PED":
        step = lambda: _decaying_tone(rng, 60, 150, 0.15, 0.03)  # noqa: E731
        distant = _lowpass(_babble(rng, n, 3), 2500, SAMPLE_RATE)
        steps = _events(rng, n, 2.0, step)
        scene = distant / np.std(distant) + 0.7 * _colored_noise(rng, n, 1.0) + 0.8 * steps
    elif environment == "STR":
        swells = np.zeros(n)
        for _ in range(rng.poisson(duration_seconds / 4) + 1):
            center, width = rng.uniform(0, duration_seconds), rng.uniform(1.0, 3.0)
            swells += np.exp(-0.5 * ((t - center) / width) ** 2)
        traffic = _colored_noise(rng, n, 1.5) * (0.4 + swells)
        horn = lambda: _decaying_tone(rng, 350, 520, 0.4, 1.0) * _fade(6400, 400)  # noqa: E731
        scene = traffic + 0.5 * _events(rng, n, 0.1, horn)
    else:
        raise ValueError(f"unknown environment {environment!r}; one of {_ENVIRONMENTS}")
    return scene / (np.std(scene) + 1e-12)


def _microphone(rng, scene):
    """One microphone's view of a scene: delay, gain, and its own faint self-noise."""
    delayed = np.roll(scene, rng.integers(0, 16))
    return delayed * rng.uniform(0.8, 1.2) + 0.02 * rng.standard_normal(len(scene))


# --- NISQA-style degradations --------------------------------------------------------------------


def _lowpass(signal, cutoff_hz, sample_rate):
    spectrum = np.fft.rfft(signal)
    spectrum[np.fft.rfftfreq(len(signal), 1.0 / sample_rate) > cutoff_hz] = 0.0
    return np.fft.irfft(spectrum, len(signal))


NOMINAL_LEVEL_DBFS = -26.0
"""Speech's usual RMS level; the demo's `loud` is 5 within 6 dB of it."""
LEVEL_KINDS = ("quiet", "loud")


def level_quality(level_dbfs: float) -> float:
    """q_l of a file's RMS level in dBFS (the module docstring)."""
    deviation = max(0.0, abs(level_dbfs - NOMINAL_LEVEL_DBFS) - 6.0)
    return max(0.2, 1.0 - deviation / 20.0)


def apply_level(signal: np.ndarray, level_dbfs: float) -> np.ndarray:
    """The signal at an RMS level; above -20 dBFS through a tanh limiter (peaks below 1), as
    playback turned up too far: the level then ends a little below the target."""
    signal = _set_rms_db(signal, level_dbfs)
    if level_dbfs > -20.0:
        signal = 0.99 * np.tanh(signal / 0.99)
    return signal


def _rms_dbfs(signal: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(signal**2)) + 1e-12))


FACTORS = ("noise", "band", "erasure", "level")
"""The degradations `degrade(only=...)` applies alone (the diagnosis test's held-out files)."""


def _add_noise(rng, signal, snr_db: float) -> np.ndarray:
    noise = rng.standard_normal(len(signal))
    return signal + _set_rms_db(noise, 20 * np.log10(np.std(signal) + 1e-12) - snr_db)


def _erase_frames(rng, signal, rate: float) -> np.ndarray:
    """Each 20 ms frame zeroed with probability `rate` (in place)."""
    frame = int(0.02 * SAMPLE_RATE)
    for start in range(0, len(signal), frame):
        if rng.random() < rate:
            signal[start : start + frame] = 0.0
    return signal


def degrade(rng: np.random.Generator, clean: np.ndarray, only: str | None = None):
    """The demo's degradation of a clean 16 kHz utterance: a random chain, or with `only` one
    factor of `FACTORS` alone. Returns (signal at 16 kHz, the rate it is stored at, parameters,
    scores {mos, noi, col, dis, loud}).

    `only` applies one factor of `FACTORS` alone, always and strongly (noise at -5 to 5 dB
    SNR, narrow-band, 15-25% erasures, or a level far too low or too high): the held-out
    files of the diagnosis test.
    """
    params = {
        "snr_db": None,
        "bandwidth": "FB",
        "clip_threshold": None,
        "erasure_rate": 0.0,
        "level": None,
        "level_dbfs": None,
    }
    signal = clean.copy()
    params["level_dbfs"] = float(np.round(_rms_dbfs(clean), 1))
    if only is not None:
        if only not in FACTORS:
            raise ValueError(f"only must be one of {FACTORS}, not {only!r}")
        return _degrade_one(rng, signal, only, params)
    if rng.random() < 0.7:
        params["snr_db"] = float(np.round(rng.uniform(-5, 40), 1))
        signal = _add_noise(rng, signal, params["snr_db"])
    band = rng.choice(["FB", "WB", "NB"], p=[0.4, 0.35, 0.25])
    params["bandwidth"] = str(band)
    if band != "FB":
        signal = _lowpass(signal, {"WB": 7000, "NB": 3400}[band], SAMPLE_RATE)
    clipped_share = 0.0
    if rng.random() < 0.3:
        threshold = float(np.round(rng.uniform(0.05, 0.5), 3)) * np.max(np.abs(signal))
        params["clip_threshold"] = float(np.round(threshold, 4))
        clipped_share = float(np.mean(np.abs(signal) > threshold))
        signal = np.clip(signal, -threshold, threshold)
    if rng.random() < 0.3:
        params["erasure_rate"] = float(np.round(rng.uniform(0.02, 0.25), 3))
        signal = _erase_frames(rng, signal, params["erasure_rate"])
    if rng.random() < 0.25:
        params["level"] = str(rng.choice(LEVEL_KINDS))
        target = rng.uniform(-55, -40) if params["level"] == "quiet" else rng.uniform(-14, -8)
        signal = apply_level(signal, target + _rms_dbfs(signal) - params["level_dbfs"])
        params["level_dbfs"] = float(np.round(target, 1))
    return _scored(rng, signal, params, clipped_share)


def _degrade_one(rng, signal, factor, params):
    clipped_share = 0.0
    if factor == "noise":
        params["snr_db"] = float(np.round(rng.uniform(-5, 5), 1))
        signal = _add_noise(rng, signal, params["snr_db"])
    elif factor == "band":
        params["bandwidth"] = "NB"
        signal = _lowpass(signal, 3400, SAMPLE_RATE)
    elif factor == "erasure":
        params["erasure_rate"] = float(np.round(rng.uniform(0.15, 0.25), 3))
        signal = _erase_frames(rng, signal, params["erasure_rate"])
    else:
        params["level"] = str(rng.choice(LEVEL_KINDS))
        target = rng.uniform(-60, -48) if params["level"] == "quiet" else rng.uniform(-12, -8)
        signal = apply_level(signal, target)
        params["level_dbfs"] = float(np.round(target, 1))
    return _scored(rng, signal, params, clipped_share)


def _scored(rng, signal, params, clipped_share):
    q_level = level_quality(params["level_dbfs"])
    q_noise = 1.0 if params["snr_db"] is None else 1.0 / (1.0 + np.exp(-(params["snr_db"] - 12) / 5))
    q_band = {"FB": 1.0, "WB": 0.85, "NB": 0.6}[params["bandwidth"]]
    q_clip = 1.0 - 0.6 * np.sqrt(clipped_share)
    q_erasure = max(0.2, 1.0 - 2.5 * params["erasure_rate"])
    scores = {
        "mos": 1 + 4 * q_noise * q_band * q_clip * q_erasure * q_level + rng.normal(0, 0.15),
        "noi": 1 + 4 * q_noise + rng.normal(0, 0.2),
        "col": 1 + 4 * q_band * q_clip + rng.normal(0, 0.2),
        "dis": 1 + 4 * q_erasure + rng.normal(0, 0.2),
        "loud": 1 + 4 * q_level + rng.normal(0, 0.2),
    }
    scores = {key: float(np.round(np.clip(value, 1.0, 5.0), 3)) for key, value in scores.items()}
    rate = {"NB": 8000, "WB": 16000, "FB": 48000}[params["bandwidth"]]
    signal = signal / max(1.0, np.max(np.abs(signal)) / 0.99)
    return signal, rate, params, scores


# --- the corpus ------------------------------------------------------------------------------------


def _write_librispeech(rng, root, num_speakers, chapters_per_speaker, utterances_per_chapter, tick):
    utterances = []
    for s in range(num_speakers):
        speaker = str(1000 + 37 * s)
        female = s % 2 == 1
        f0_hz = rng.uniform(180, 240) if female else rng.uniform(95, 140)
        formant_scale = rng.uniform(1.1, 1.2) if female else rng.uniform(0.95, 1.05)
        rate = rng.uniform(3.3, 4.7)
        for c in range(chapters_per_speaker):
            chapter = str(5000 + 101 * s + c)
            folder = os.path.join(root, "LibriSpeech", LIBRISPEECH_SUBSET, speaker, chapter)
            lines = []
            for u in range(utterances_per_chapter):
                utt_id = f"{speaker}-{chapter}-{u:04d}"
                speech = synth_speech(
                    rng,
                    rng.uniform(3.0, 7.0),
                    f0_hz=f0_hz,
                    formant_scale=formant_scale,
                    syllables_per_second=rate,
                )
                speech = _set_rms_db(speech, rng.uniform(-28, -20))
                speech += 1e-4 * rng.standard_normal(len(speech))  # a recording's noise floor
                write_audio(os.path.join(folder, f"{utt_id}.flac"), speech, SAMPLE_RATE)
                lines.append(f"{utt_id} SYNTHETIC DEMO UTTERANCE {u}")
                utterances.append((utt_id, s, speech))
                tick()
            atomic.write_text(os.path.join(folder, f"{speaker}-{chapter}.trans.txt"), "\n".join(lines) + "\n")
    return utterances


def _write_chime3(rng, root, noise_seconds, recordings_per_environment, noise_channels, tick):
    folder = os.path.join(root, CHIME3_DIR)
    number = 10
    for environment in _ENVIRONMENTS:
        for _ in range(recordings_per_environment):
            scene = synth_noise(rng, environment, noise_seconds)
            level_db = rng.uniform(-32, -24)
            for channel in range(1, noise_channels + 1):
                signal = _set_rms_db(_microphone(rng, scene), level_db)
                name = f"BGD_150203_{number:03d}_{environment}.CH{channel}.wav"
                write_audio(os.path.join(folder, name), np.clip(signal, -1, 1), SAMPLE_RATE)
            number += 1
            tick()


def _write_nisqa(rng, root, utterances, num_mos_files, val_speakers, tick):
    corpus_root = os.path.join(root, "NISQA_Corpus")
    rows_by_db = {"NISQA_TRAIN_SIM": [], "NISQA_VAL_SIM": []}
    for index in range(num_mos_files):
        utt_id, speaker_index, clean = utterances[index % len(utterances)]
        db = "NISQA_VAL_SIM" if speaker_index in val_speakers else "NISQA_TRAIN_SIM"
        con = f"c{index + 1:05d}"
        degraded, rate, params, scores = degrade(rng, clean)
        file_deg, file_ref = f"{con}_{utt_id}.wav", f"{utt_id}.wav"
        deg_path = os.path.join(corpus_root, db, "deg", file_deg)
        write_audio(deg_path, resample(degraded, SAMPLE_RATE, rate), rate)
        ref_path = os.path.join(corpus_root, db, "ref", file_ref)
        if not os.path.exists(ref_path):
            write_audio(ref_path, resample(clean, SAMPLE_RATE, 48000), 48000)
        description = ", ".join(f"{k}={v}" for k, v in params.items() if v not in (None, 0.0))
        row = dict.fromkeys(NISQA_COLUMNS, "")
        row.update(
            db=db,
            con=con,
            file=con,
            con_description=description or "clean",
            filename_deg=file_deg,
            filename_ref=file_ref,
            source="jsqa-tf demo (synthetic)",
            lang="none",
            votes=5,
            filepath_deg=f"{db}/deg/{file_deg}",
            filepath_ref=f"{db}/ref/{file_ref}",
            wbgn=int(params["snr_db"] is not None),
            clipping=int(params["clip_threshold"] is not None),
            wbgn_snr="" if params["snr_db"] is None else params["snr_db"],
            cl_th="" if params["clip_threshold"] is None else params["clip_threshold"],
            bp_high={"FB": "", "WB": 7000, "NB": 3400}[params["bandwidth"]],
            FER1=params["erasure_rate"] or "",
            **scores,
        )
        for key in ("noi", "col", "dis", "loud", "mos"):
            row[f"{key}_std"] = float(np.round(rng.uniform(0.5, 1.0), 3))
        rows_by_db[db].append(row)
        tick()

    def write_csv(path, rows):
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=NISQA_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic.write_text(path, buffer.getvalue())

    for db, rows in rows_by_db.items():
        write_csv(os.path.join(corpus_root, db, f"{db}_file.csv"), rows)
    all_rows = [row for rows in rows_by_db.values() for row in rows]
    write_csv(os.path.join(corpus_root, "NISQA_corpus_file.csv"), all_rows)


def demo_paths(root: str | os.PathLike) -> dict[str, str]:
    """Where each corpus of a demo folder lies, in the form each reader takes."""
    root = os.path.abspath(os.fspath(root))
    return {
        "librispeech": os.path.join(root, "LibriSpeech"),
        "chime3": os.path.join(root, CHIME3_DIR),
        "nisqa": os.path.join(root, "NISQA_Corpus", "NISQA_corpus_file.csv"),
    }


def make_demo_corpus(
    root: str | os.PathLike,
    seed: int = 0,
    *,
    num_speakers: int = 6,
    chapters_per_speaker: int = 2,
    utterances_per_chapter: int = 4,
    noise_seconds: float = 20.0,
    recordings_per_environment: int = 2,
    noise_channels: int = 2,
    num_mos_files: int = 60,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, str]:
    """Writes the demo corpus under `root` (see the module docstring); returns `demo_paths`.

    The tree is built in a temporary folder and renamed into place, so `root` is either
    absent, or complete. A `root` that holds the same demo already is left as it is; any
    other non-empty `root` is refused.

    `on_start(steps)` is called once when there is something to write, `on_progress(1)` after
    each of those steps (an utterance, a noise scene, a MOS file): for a progress bar.
    """
    root = os.path.abspath(os.fspath(root))
    settings = dict(
        version=DEMO_VERSION,
        seed=seed,
        num_speakers=num_speakers,
        chapters_per_speaker=chapters_per_speaker,
        utterances_per_chapter=utterances_per_chapter,
        noise_seconds=noise_seconds,
        recordings_per_environment=recordings_per_environment,
        noise_channels=noise_channels,
        num_mos_files=num_mos_files,
    )
    marker = os.path.join(root, MARKER_NAME)
    if os.path.exists(marker):
        with open(marker, encoding="utf-8") as stream:
            if json.load(stream) == settings:
                return demo_paths(root)
        raise CorpusError(root, "holds a demo corpus made with other settings; use another folder")
    if os.path.exists(root) and (not os.path.isdir(root) or os.listdir(root)):
        raise CorpusError(root, "exists and is not an empty folder; refusing to write into it")
    if num_speakers < 2:
        raise CorpusError(root, "the demo needs at least 2 speakers (train and val)")

    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    if on_start:
        num_utterances = num_speakers * chapters_per_speaker * utterances_per_chapter
        on_start(num_utterances + len(_ENVIRONMENTS) * recordings_per_environment + num_mos_files)

    def tick():
        if on_progress:
            on_progress(1)

    staging = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(root)}.tmp-")
    try:
        rng = np.random.default_rng(seed)
        utterances = _write_librispeech(
            rng, staging, num_speakers, chapters_per_speaker, utterances_per_chapter, tick
        )
        _write_chime3(rng, staging, noise_seconds, recordings_per_environment, noise_channels, tick)
        val_speakers = set(range(num_speakers - max(1, num_speakers // 3), num_speakers))
        _write_nisqa(rng, staging, utterances, num_mos_files, val_speakers, tick)
        atomic.write_json(os.path.join(staging, MARKER_NAME), settings)
        if os.path.isdir(root):
            os.rmdir(root)  # empty, checked above
        os.rename(staging, root)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging)
    return demo_paths(root)
