"""Pair families: the config, the rendered degrees, the pipeline's batches and their resume."""

import os
import sys
import types

import numpy as np
import pytest
import tensorflow as tf

from jsqa_tf.config import (
    PairConfig,
    PairSampling,
    PretrainConfig,
    PretrainDataConfig,
    PretrainTrainingConfig,
)
from jsqa_tf.data import families
from jsqa_tf.data.pairs import make_pair_dataset
from jsqa_tf.errors import ConfigError
from jsqa_tf.psychometric import Psychometric
from jsqa_tf.training.pretrain import train_dataset
from tests.data.test_pairs import prepared_pairs  # noqa: F401 (the fixture)
from tests.test_jnd_curve import simulated_list, simulated_mp3_list

SEED = tf.constant([3, 4], tf.int64)


def with_families(config, **settings):
    return PairConfig(**{**config.__dict__, **settings})


def test_family_counts_are_the_largest_remainders():
    sampling = PairSampling(families=("additive", "codec", "reverb", "bandwidth"), codec_bank_dir="bank")
    assert sampling.family_counts == {"additive": 2, "codec": 2, "reverb": 2, "bandwidth": 2}
    weighted = PairSampling(
        pairs_per_batch=8, families=("bandwidth", "additive", "reverb"), family_weights=(1.0, 2.0, 1.0)
    )
    assert weighted.family_counts == {"additive": 4, "reverb": 2, "bandwidth": 2}  # PAIR_FAMILIES order
    uneven = PairSampling(pairs_per_batch=7, families=("additive", "reverb"), family_weights=(1.0, 1.0))
    assert uneven.family_counts == {"additive": 4, "reverb": 3}  # a tie goes to the family listed first
    assert PairSampling().additive_only and PairSampling().family_counts == {"additive": 8}


@pytest.mark.parametrize(
    "settings,message",
    [
        (dict(families=("additive", "echo")), r"data.pairs.families must be one of .*'echo'"),
        (dict(families=()), "data.pairs.families must name at least one"),
        (dict(families=("reverb", "reverb")), "names a family twice"),
        (dict(families=("additive", "reverb"), family_weights=(1.0,)), "family_weights must hold one weight"),
        (dict(families=("additive", "reverb"), family_weights=(1.0, 0.05)), "give reverb no pair"),
        (dict(families=("reverb",), family_weights=(-1.0,)), r"family_weights\[0\] must be >= 0"),
        (dict(families=("codec",)), "codec_bank_dir must be set"),
        (dict(reverb_window=150.0), r"reverb_window must be in \(0, 141.421\]"),
        (dict(bandwidth_window_octaves=4.0), r"bandwidth_window_octaves must be in \(0, 3\]"),
        (dict(reverb_levels=(0.0, 120.0)), r"reverb_levels\[1\] must be in \[0, 100\]"),
        (dict(bandwidth_range_hz=(4000.0, 2000.0)), "bandwidth_range_hz must be"),
        (dict(noise_under_share=1.5), "noise_under_share must be in"),
    ],
)
def test_bad_family_settings_are_refused_in_one_line_naming_the_setting(settings, message):
    with pytest.raises(ConfigError, match=message) as error:
        PairSampling(**settings)
    assert "\n" not in str(error.value)


def test_bandwidth_cutoffs_stop_at_the_nyquist_frequency():
    with pytest.raises(
        ConfigError, match="bandwidth_range_hz must end at most at the Nyquist frequency, 4000"
    ):
        PairConfig("c", "n", sample_rate=8000, families=("bandwidth",))
    PairConfig("c", "n", sample_rate=8000)  # not drawn: not checked


def schroeder_rt60(response, direct, sample_rate):
    """RT60 from the Schroeder backward integral of the tail, fitted over -5 to -25 dB (T20 x 3)."""
    energy = np.cumsum((response[direct:].astype(np.float64) ** 2)[::-1])[::-1]
    decay_db = 10 * np.log10(energy / energy[0] + 1e-300)
    times = np.arange(len(decay_db)) / sample_rate
    fitted = (decay_db <= -5) & (decay_db >= -25)
    return -60 / np.polyfit(times[fitted], decay_db[fitted], 1)[0]


def test_rendered_impulse_responses_have_the_asked_rt60_and_drr():
    """A measured RT60 and DRR of each response are those CDPAM's mappings ask for: RT60 level
    L stretches the base RT60 by 7**(L/100); DRR level L lowers the tail by 40 L / 100 dB."""
    sample_rate, length = 16_000, 48_000
    levels = tf.constant(
        [[[0.0, 0.0], [50.0, 0.0]], [[20.0, 100.0], [20.0, 40.0]], [[90.0, 70.0], [10.0, 5.0]]]
    )
    base_rt60, base_drr = tf.constant([0.3, 0.4, 0.5]), tf.constant([0.0, 5.0, 10.0])
    responses = families.reverb_impulse_responses(
        levels, base_rt60, base_drr, SEED, length, sample_rate
    ).numpy()
    rt60, drr_db = (
        x.numpy() for x in families.reverb_facts(levels, base_rt60, base_drr, length, sample_rate)
    )
    direct = families.direct_samples(sample_rate)
    assert direct == 20  # CDPAM's 56 samples at 44.1 kHz, at 16 kHz
    for pair in range(3):
        for view in range(2):
            response = responses[pair, view]
            assert np.sum(response**2) == pytest.approx(1.0, abs=1e-5)
            measured = schroeder_rt60(response, direct, sample_rate)
            assert measured == pytest.approx(rt60[pair, view], rel=0.06)
            level = float(levels[pair, view, 1])
            assert rt60[pair, view] == pytest.approx(float(base_rt60[pair]) * 7 ** (level / 100), rel=1e-5)
            drr = 10 * np.log10(np.sum(response[:direct] ** 2) / np.sum(response[direct:] ** 2))
            assert drr == pytest.approx(drr_db[pair, view], abs=0.01)
    # Same RT60 level: the DRR moves by 40 dB per 100 DRR levels, nothing else.
    assert drr_db[0, 1] - drr_db[0, 0] == pytest.approx(20.0, abs=1e-3)
    assert drr_db[0, 0] == pytest.approx(0.0, abs=1e-3)  # levels 0: the room's own DRR
    # The views share the room's noise: only the envelope and the tail's scale differ.
    tail_a, tail_b = responses[1, 0, direct:], responses[1, 1, direct:]
    envelope = np.exp(-families.DECAY * np.arange(direct, length) / sample_rate / rt60[1][:, None])
    ratio = (tail_a / envelope[0]) / (tail_b / envelope[1])
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-3)


def test_reverb_and_bandwidth_pairs_differ_only_by_their_degree():
    rng = np.random.default_rng(0)
    clean = tf.constant(rng.normal(size=(2, 8000)).astype(np.float32))
    levels = tf.constant([[[30.0, 40.0], [30.0, 40.0]], [[30.0, 40.0], [60.0, 40.0]]])
    responses = families.reverb_impulse_responses(
        levels, tf.constant([0.3, 0.3]), tf.constant([3.0, 3.0]), SEED, 8000, 16_000
    )
    wet = families.render_reverb(clean, responses).numpy()
    np.testing.assert_array_equal(wet[0, 0], wet[0, 1])  # the same degree: the same view
    assert np.abs(wet[1, 0] - wet[1, 1]).max() > 1e-3
    direct = np.convolve(clean.numpy()[1], responses.numpy()[1, 0])[:8000]
    np.testing.assert_allclose(wet[1, 0], direct, atol=1e-4)  # a linear convolution, no wrap-around
    same = families.render_bandwidth(clean, tf.constant([[3000.0, 3000.0], [8000.0, 8000.0]]), 16_000).numpy()
    np.testing.assert_array_equal(same[0, 0], same[0, 1])
    np.testing.assert_allclose(same[1, 0], clean.numpy()[1], atol=1e-5)  # Nyquist: untouched


@pytest.mark.parametrize("cutoff_hz", [1000.0, 3400.0, 7000.0])
def test_a_low_passed_crop_has_no_energy_above_its_cutoff(cutoff_hz):
    rng = np.random.default_rng(1)
    clean = rng.normal(size=(1, 16_000)).astype(np.float32)
    low = families.render_bandwidth(tf.constant(clean), tf.constant([[cutoff_hz, 8000.0]]), 16_000).numpy()
    spectrum = np.abs(np.fft.rfft(low[0, 0])) ** 2
    frequencies = np.fft.rfftfreq(16_000, 1 / 16_000)
    above, below = spectrum[frequencies > cutoff_hz + 1], spectrum[frequencies <= cutoff_hz]
    assert above.sum() / below.sum() < 1e-9
    kept = np.abs(np.fft.rfft(clean[0])) ** 2
    np.testing.assert_allclose(
        spectrum[frequencies < cutoff_hz - 1], kept[frequencies < cutoff_hz - 1], rtol=1e-3
    )


def test_degree_pairs_stay_in_range_and_window():
    levels = families.reverb_level_pairs(20_000, SEED, 0.0, 100.0, 27.4).numpy()
    distance = np.linalg.norm(levels[:, 0] - levels[:, 1], axis=-1)
    assert levels.min() >= 0.0 and levels.max() <= 100.0 and distance.max() <= 27.4 + 1e-3
    assert 0.9 * 27.4 / 3 < distance.mean() <= 27.4 / 3  # triangular, shortened a little at the edges
    octaves = families.uniform_pairs_1d(20_000, SEED, 10.0, 13.0, 1.0).numpy()
    delta = np.abs(octaves[:, 0] - octaves[:, 1])
    assert octaves.min() >= 10.0 and octaves.max() <= 13.0 and delta.max() <= 1.0 + 1e-5
    assert 0.9 / 3 < delta.mean() <= 1 / 3
    np.testing.assert_array_equal(levels, families.reverb_level_pairs(20_000, SEED, 0.0, 100.0, 27.4).numpy())


MIXED = dict(families=("additive", "reverb", "bandwidth"), noise_under_share=0.5, pairs_per_batch=6)


def test_family_batches_hold_each_family_with_its_degrees(prepared_pairs):  # noqa: F811
    config = with_families(prepared_pairs, **MIXED)
    for clean_a, clean_b, noise, snr_db, num_valid, ids in make_pair_dataset(config, with_ids=True).take(3):
        assert clean_a.shape == clean_b.shape == noise.shape == (6, 16_000) and snr_db.shape == (6, 2)
        assert [f.decode() for f in ids["family"].numpy()] == ["additive"] * 2 + ["reverb"] * 2 + [
            "bandwidth"
        ] * 2
        np.testing.assert_array_equal(clean_a[:2], clean_b[:2])  # additive: one speech, two SNRs
        snr = snr_db.numpy()
        assert np.isfinite(snr[:2]).all()
        assert all(a == b for a, b in snr[2:])  # the others: one noise level or none (+inf)
        np.testing.assert_allclose(ids["abs_delta"][:2], np.abs(snr[:2, 0] - snr[:2, 1]), atol=1e-5)
        degree_a, degree_b = ids["degree_a"].numpy(), ids["degree_b"].numpy()
        reverb = np.linalg.norm(degree_a[2:4] - degree_b[2:4], axis=-1)
        np.testing.assert_allclose(ids["abs_delta"][2:4], reverb, rtol=1e-5)
        assert reverb.max() <= config.reverb_window + 1e-3
        octaves = np.abs(np.log2(degree_a[4:, 0] / degree_b[4:, 0]))
        np.testing.assert_allclose(ids["abs_delta"][4:], octaves, rtol=1e-4, atol=1e-5)
        assert octaves.max() <= config.bandwidth_window_octaves + 1e-4
        assert len(set(ids["clean_id"].numpy())) == 6 and num_valid.numpy().tolist() == [16_000] * 6
    assert len(next(iter(make_pair_dataset(config)))) == 5


def test_two_reads_of_one_seed_give_identical_family_pairs(prepared_pairs):  # noqa: F811
    config = with_families(prepared_pairs, **MIXED)

    def first_two(config):
        return [[np.asarray(t) for t in batch[:5]] for batch in make_pair_dataset(config).take(2)]

    once, again = first_two(config), first_two(config)
    for x, y in zip(once, again, strict=True):
        for a, b in zip(x, y, strict=True):
            np.testing.assert_array_equal(a, b)
    other = first_two(with_families(config, seed=1))
    assert not np.array_equal(once[0][1][2:], other[0][1][2:])  # rendered views change with the seed


def resumed_pretraining_pairs(folders, pairs):
    """Epochs 1-2 of a 3-epoch, 2-step pretraining stream of `pairs`, read straight through and
    resumed at epoch 1: asserted equal; returns the straight read's batches."""
    config = PretrainConfig(
        "run",
        data=PretrainDataConfig(*folders, pairs=pairs),
        training=PretrainTrainingConfig(epochs=3, steps_per_epoch=2),
    )
    keys = ("clean", "clean_b", "noise", "snr_db")

    def batches(dataset, count):
        return [[batch[key].numpy() for key in keys] for batch in dataset.take(count)]

    straight = batches(train_dataset(config, *folders, 4, 2), 6)
    resumed = batches(train_dataset(config, *folders, 4, 2, initial_epoch=1), 4)
    for x, y in zip(straight[2:], resumed, strict=True):
        for a, b in zip(x, y, strict=True):
            np.testing.assert_array_equal(a, b)
    return straight


def test_family_pretraining_pairs_resume_exactly(prepared_pairs):  # noqa: F811
    folders = (prepared_pairs.clean_dir, prepared_pairs.noise_dir)
    pairs = PairSampling(
        crop_seconds=1.0, pairs_per_batch=4, families=("reverb", "bandwidth"), noise_under_share=0.5
    )
    straight = resumed_pretraining_pairs(folders, pairs)
    assert not np.array_equal(straight[0][1], straight[2][1])  # each epoch its own renderings


def test_codec_rows_come_from_the_bank_stream(prepared_pairs, monkeypatch):  # noqa: F811
    """The codec family calls `codec_pair_stream` with the config's settings (a stand-in bank
    here: two scaled copies of a sine at two bitrates) and keeps its rows, bitrates and ids."""
    calls = {}

    def codec_pair_stream(
        bank_dir, split, *, crop_samples, batch_size, seed, window_octaves, keys=(), sample_rate=None
    ):
        calls.update(bank_dir=bank_dir, split=split, crop_samples=crop_samples, batch_size=batch_size)
        calls.update(window_octaves=window_octaves, keys=keys)
        tone = np.sin(np.arange(crop_samples) / 7.0).astype(np.float32)
        batch = {
            "audio_a": np.tile(tone, (batch_size, 1)),
            "audio_b": np.tile(0.5 * tone, (batch_size, 1)),
            "num_valid_samples": np.full(batch_size, crop_samples, np.int32),
            "bitrate_a_kbps": np.full(batch_size, 64.0, np.float32),
            "bitrate_b_kbps": np.full(batch_size, 16.0, np.float32),
        }
        if "source_path" in keys:
            batch["source_path"] = np.array([b"bank.wav"] * batch_size)
        return tf.data.Dataset.from_tensors(batch).repeat()

    monkeypatch.setitem(
        sys.modules, "jsqa_tf.data.codec_bank", types.SimpleNamespace(codec_pair_stream=codec_pair_stream)
    )
    config = with_families(
        prepared_pairs, families=("additive", "codec"), codec_bank_dir="/bank", codec_window_octaves=2.5
    )
    clean_a, clean_b, _, snr_db, _, ids = next(iter(make_pair_dataset(config, with_ids=True)))
    assert calls == dict(
        bank_dir="/bank",
        split="train",
        crop_samples=16_000,
        batch_size=2,
        window_octaves=2.5,
        keys=("source_path",),
    )
    np.testing.assert_array_equal(clean_b[2:], 0.5 * clean_a[2:])
    assert ids["abs_delta"].numpy()[2:].tolist() == [2.0, 2.0]  # 64 -> 16 kbps: 2 octaves
    assert ids["degree_a"].numpy()[2:, 0].tolist() == [64.0, 64.0]
    assert ids["clean_id"].numpy()[2:].tolist() == [b"bank.wav"] * 2
    assert np.isinf(snr_db.numpy()[2:]).all()  # noise_under_share 0: no noise


def test_write_pairs_of_every_family_with_a_codec_bank(prepared_pairs, tmp_path):  # noqa: F811
    """pairs.csv names each pair's family, degrees, unit and |Δ|; summary.json has a block per
    family and a |Δ| histogram PNG each; views without noise say "none"."""
    import csv
    import json

    from jsqa_tf.data.codec_bank import render_codec_bank
    from jsqa_tf.data.pairs import write_pairs
    from jsqa_tf.jnd_curve import family_curves

    render_codec_bank(prepared_pairs.clean_dir, tmp_path / "bank", bitrates_kbps=(16, 32, 64), num_workers=0)
    config = with_families(
        prepared_pairs,
        families=("additive", "codec", "reverb", "bandwidth"),
        codec_bank_dir=str(tmp_path / "bank"),
        codec_window_octaves=1.0,
        noise_under_share=0.5,
    )
    truth = Psychometric(floor=0.15, ceiling=0.95, midpoint=3.0, width=0.4)
    human = simulated_mp3_list(tmp_path / "mp3.txt", truth, 1500).read_text()
    human += simulated_list(tmp_path / "additive.txt", truth, 1500).read_text()
    (tmp_path / "list.txt").write_text(human)
    curves = family_curves(str(tmp_path / "list.txt"), config.family_counts)
    summary = write_pairs(config, tmp_path / "out", 12, human_curves=curves)
    with open(tmp_path / "out" / "pairs.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["family"] for row in rows[:4]] == ["additive", "codec", "reverb", "bandwidth"]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["families"] == summary["families"]
    for block in summary["families"].values():
        assert block["count"] == 3 and (tmp_path / "out" / block["histogram_png"]).exists()
        assert block["max_abs_delta"] <= block["window"] + 1e-3
    for row in rows:
        assert (row["snr_a_db"] == "none") == (row["noise_id"] == "")
        assert os.path.exists(tmp_path / "out" / row["file_a"])
        a, b, delta = row["degree_a"], row["degree_b"], float(row["abs_delta"])
        if row["family"] == "codec":
            assert (
                delta == pytest.approx(abs(np.log2(float(a) / float(b))), abs=1e-3)
                and 0 < delta <= 1.0 + 1e-6
            )
        elif row["family"] == "reverb":
            (da, ra), (db, rb) = (map(float, x.split("/")) for x in (a, b))
            assert delta == pytest.approx(np.hypot(da - db, ra - rb), abs=0.01)
        elif row["family"] == "bandwidth":
            assert delta == pytest.approx(abs(np.log2(float(a) / float(b))), abs=1e-3)
        else:
            assert float(row["abs_delta_db"]) == pytest.approx(abs(float(a) - float(b)), abs=2e-4)
    assert summary["mean_abs_delta_db"] >= 0 and (tmp_path / "out" / "abs_delta_snr_histogram.png").exists()
    # The share judged the same: the mean of the human curve over each family's |Δ|
    # (simulated judgements: reverb's curve is mp3's, 10 level units an octave).
    scale = {"additive": 1.0, "codec": 1.0, "reverb": 10.0}
    for family, block in summary["families"].items():
        if family == "bandwidth":
            assert block["share_judged_same"] == "no human data"
            continue
        deltas = np.array([float(row["abs_delta"]) for row in rows if row["family"] == family])
        assert block["share_judged_same"] == pytest.approx(np.mean(truth(deltas / scale[family])), abs=0.08)


def test_pairs_command_draws_families_and_prints_each(prepared_pairs, tmp_path):  # noqa: F811
    import json

    from click.testing import CliRunner

    from jsqa_tf.cli import main

    folders = (prepared_pairs.clean_dir, prepared_pairs.noise_dir)
    args = ["pairs", *folders, str(tmp_path / "out"), "-n", "8", "--crop-seconds", "1", "--no-audio"]
    args += ["--families", "reverb,bandwidth", "--noise-under-share", "1"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["families"]["reverb"]["count"] == summary["families"]["bandwidth"]["count"] == 4
    assert summary["families"]["reverb"]["share_with_noise"] == 1.0  # --noise-under-share 1
    assert "reverb: 4 pairs, mean |Δ|" in result.stderr and "mean |ΔSNR|" not in result.stderr


def test_codec_pretraining_pairs_resume_exactly(prepared_pairs, tmp_path):  # noqa: F811
    """The codec family in pretraining: epoch e's pairs from (seed, e) alone, under the global
    seed `pretrain` sets (keras.utils.set_random_seed(training.seed))."""
    import keras

    from jsqa_tf.data.codec_bank import render_codec_bank

    render_codec_bank(prepared_pairs.clean_dir, tmp_path / "bank", bitrates_kbps=(16, 32), num_workers=0)
    folders = (prepared_pairs.clean_dir, prepared_pairs.noise_dir)
    pairs = PairSampling(
        crop_seconds=1.0,
        pairs_per_batch=4,
        families=("additive", "codec"),
        codec_bank_dir=str(tmp_path / "bank"),
        codec_window_octaves=1.0,
    )
    keras.utils.set_random_seed(0)  # as pretrain does with training.seed 0
    resumed_pretraining_pairs(folders, pairs)
