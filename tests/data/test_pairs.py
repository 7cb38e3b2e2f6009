import csv
import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from jsqa_tf.config import (
    PairConfig,
    PairSampling,
    PrepareConfig,
    PretrainConfig,
    PretrainDataConfig,
    PretrainTrainingConfig,
)
from jsqa_tf.data.pairs import make_pair_dataset, sample_snr_pairs, write_pairs
from jsqa_tf.data.pipeline import make_dataset
from jsqa_tf.data.prepare import prepare
from jsqa_tf.data.snr import abs_delta_snr_density, expected_mean_abs_delta_db, single_snr_density
from jsqa_tf.errors import ConfigError, CorpusError
from jsqa_tf.mixing import mix_pair
from jsqa_tf.training.pretrain import train_dataset


@pytest.fixture(scope="module")
def prepared_pairs(tiny_demo, tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    prepare(
        PrepareConfig(corpus="librispeech", source=tiny_demo["librispeech"], num_workers=0), root / "clean"
    )
    noise = PrepareConfig(corpus="chime3", source=tiny_demo["chime3"], chime3_channels="all", num_workers=0)
    prepare(noise, root / "noise")
    return PairConfig(str(root / "clean"), str(root / "noise"), pairs_per_batch=4, crop_seconds=1.0)


def test_abs_delta_snr_distribution_matches_the_paper():
    snr = sample_snr_pairs(20_000, tf.constant([0, 1], tf.int64)).numpy()
    delta = np.abs(snr[:, 0] - snr[:, 1])
    assert delta.mean() == pytest.approx(2.0, abs=0.1)  # triangular on [0, 6]: mean 6 / 3
    assert snr.min() >= -3 and snr.max() <= 9 and delta.max() <= 6
    assert np.mean(delta < 2.0) == pytest.approx(1 - (4 / 6) ** 2, abs=0.02)  # triangle's CDF
    assert snr.min() < -2.5 and snr.max() > 8.5  # the window moves over the whole range


def test_fixed_window_and_the_density_jnd_curve_uses():
    snr = sample_snr_pairs(5000, tf.constant([3, 4], tf.int64), snr_window_low_db=3.0).numpy()
    assert snr.min() >= 3.0 and snr.max() <= 9.0
    narrow = sample_snr_pairs(20_000, tf.constant([5, 6], tf.int64), (0.0, 20.0), 3.0).numpy()
    delta = np.abs(narrow[:, 0] - narrow[:, 1])
    assert delta.mean() == pytest.approx(expected_mean_abs_delta_db(3.0), abs=0.05)
    counts, edges = np.histogram(delta, bins=6, range=(0.0, 3.0))
    centres = (edges[:-1] + edges[1:]) / 2  # the triangle is linear: its mean over a bin is at the centre
    np.testing.assert_allclose(counts / len(delta) / 0.5, abs_delta_snr_density(centres, 3.0), atol=0.03)


def test_capped_abs_delta_snr_matches_its_stated_density():
    """max_abs_delta_db: the paper's pairs conditioned on |ΔSNR| <= cap, with the density that
    `jsqa-tf jnd curve` integrates against."""
    snr = sample_snr_pairs(40_000, tf.constant([7, 8], tf.int64), max_abs_delta_db=2.0).numpy()
    delta = np.abs(snr[:, 0] - snr[:, 1])
    assert snr.min() >= -3 and snr.max() <= 9 and delta.max() <= 2.0 + 1e-5
    assert delta.mean() == pytest.approx(expected_mean_abs_delta_db(6.0, 2.0), abs=0.02)
    counts, edges = np.histogram(delta, bins=8, range=(0.0, 2.0))
    centres = (edges[:-1] + edges[1:]) / 2
    expected = abs_delta_snr_density(centres, 6.0, 2.0)
    np.testing.assert_allclose(counts / len(delta) / 0.25, expected, atol=0.02)
    assert np.mean(snr[:, 0] > snr[:, 1]) == pytest.approx(0.5, abs=0.02)  # either view may be noisier
    seed = tf.constant([7, 8], tf.int64)
    fixed = sample_snr_pairs(20_000, seed, snr_window_low_db=0.0, max_abs_delta_db=2.0).numpy()
    assert fixed.min() >= 0.0 and fixed.max() <= 6.0
    assert np.mean(fixed < 1.0) == pytest.approx(np.mean(fixed > 5.0), abs=0.01)  # symmetric in the window
    again = sample_snr_pairs(40_000, tf.constant([7, 8], tf.int64), max_abs_delta_db=2.0).numpy()
    np.testing.assert_array_equal(snr, again)  # stateless
    full = sample_snr_pairs(40_000, tf.constant([7, 8], tf.int64), max_abs_delta_db=6.0).numpy()
    assert np.abs(full[:, 0] - full[:, 1]).mean() == pytest.approx(2.0, abs=0.03)  # cap = window: triangle
    assert PairConfig("c", "n", max_abs_delta_db=2.0).expected_mean_abs_delta_db == pytest.approx(
        expected_mean_abs_delta_db(6.0, 2.0)
    )
    pretrain = PretrainConfig("run", data=PretrainDataConfig(pairs=PairSampling(max_abs_delta_db=1.5)))
    assert pretrain.pair_config("train", "c", "n", 4).max_abs_delta_db == 1.5
    with pytest.raises(ConfigError, match="data.pairs.max_abs_delta_db must be in"):
        PairSampling(snr_window_db=4.0, max_abs_delta_db=5.0)


def histogram_density(values, low, high, bins):
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    return counts / len(values) / (edges[1] - edges[0]), (edges[:-1] + edges[1:]) / 2


@pytest.mark.parametrize(
    "placement,cap,below_0,mean_abs_delta",
    [
        ("uniform_window", None, 0.125, 2.0),  # today's: single SNRs a triangle peaking at 3 dB
        ("uniform_snr", None, 0.25, 1.75),  # single SNRs uniform over [-3, 9]
        ("uniform_window", 2.0, None, None),
        ("uniform_snr", 2.0, 0.25, None),
    ],
)
def test_snr_placement_gives_its_stated_single_snr_and_abs_delta_distributions(
    placement, cap, below_0, mean_abs_delta
):
    snr = sample_snr_pairs(
        60_000, tf.constant([11, 12], tf.int64), max_abs_delta_db=cap, snr_placement=placement
    ).numpy()
    delta = np.abs(snr[:, 0] - snr[:, 1])
    assert snr.min() >= -3 - 1e-5 and snr.max() <= 9 + 1e-5 and delta.max() <= (cap or 6.0) + 1e-5
    settings = dict(snr_placement=placement, snr_range_db=(-3.0, 9.0))
    expected_mean = expected_mean_abs_delta_db(6.0, cap, **settings)
    assert delta.mean() == pytest.approx(expected_mean, abs=0.02)
    if mean_abs_delta is not None:
        assert expected_mean == pytest.approx(mean_abs_delta)
    measured, centres = histogram_density(delta, 0.0, cap or 6.0, 12)
    np.testing.assert_allclose(measured, abs_delta_snr_density(centres, 6.0, cap, **settings), atol=0.02)
    for view in (snr[:, 0], snr[:, 1]):  # both views alike
        measured, centres = histogram_density(view, -3.0, 9.0, 24)
        expected = single_snr_density(centres, (-3.0, 9.0), 6.0, cap, snr_placement=placement)
        np.testing.assert_allclose(measured, expected, atol=0.006)
        if below_0 is not None:
            assert np.mean(view < 0) == pytest.approx(below_0, abs=0.006)
    assert np.mean(snr[:, 0] > snr[:, 1]) == pytest.approx(0.5, abs=0.01)  # either view may be noisier
    d = np.linspace(0, 6, 6001)
    assert np.trapezoid(abs_delta_snr_density(d, 6.0, cap, **settings), d) == pytest.approx(1.0, abs=1e-3)
    x = np.linspace(-3, 9, 12001)
    total = np.trapezoid(single_snr_density(x, (-3.0, 9.0), 6.0, cap, snr_placement=placement), x)
    assert total == pytest.approx(1.0, abs=1e-3)


def test_snr_placement_settings(prepared_pairs):
    fixed = sample_snr_pairs(
        40_000, tf.constant([1, 2], tf.int64), snr_window_low_db=1.0, max_abs_delta_db=3.0
    )
    measured, centres = histogram_density(fixed.numpy().ravel(), 1.0, 7.0, 12)
    expected = single_snr_density(centres, (-3.0, 9.0), 6.0, 3.0, snr_window_low_db=1.0)
    np.testing.assert_allclose(measured, expected, atol=0.01)
    with pytest.raises(ConfigError, match="snr_placement must be one of"):
        PairConfig("c", "n", snr_placement="middle")
    with pytest.raises(ConfigError, match="uniform_window' only"):
        PairConfig("c", "n", snr_window_low_db=0.0, snr_placement="uniform_snr")
    with pytest.raises(ConfigError, match="uniform_window' only"):
        PairSampling(snr_window_low_db=0.0, snr_placement="uniform_snr")
    pretrain = PretrainConfig("run", data=PretrainDataConfig(pairs=PairSampling(snr_placement="uniform_snr")))
    assert pretrain.pair_config("train", "c", "n", 4).snr_placement == "uniform_snr"
    uniform = PairConfig(**{**prepared_pairs.__dict__, "snr_placement": "uniform_snr"})
    assert uniform.expected_mean_abs_delta_db == pytest.approx(1.75)
    _, _, snr_db, _ = next(iter(make_pair_dataset(uniform)))  # the pipeline draws with it
    seed = tf.stack([tf.constant(uniform.seed + 2, tf.int64), tf.constant(0, tf.int64)])
    expected = sample_snr_pairs(uniform.pairs_per_batch, seed, snr_placement="uniform_snr")
    np.testing.assert_array_equal(snr_db.numpy(), expected.numpy())


def test_the_pipeline_applies_the_cap(prepared_pairs):
    capped = PairConfig(**{**prepared_pairs.__dict__, "max_abs_delta_db": 0.5})
    for _, _, snr_db, _ in make_pair_dataset(capped).take(1):
        assert float(tf.reduce_max(tf.abs(snr_db[:, 0] - snr_db[:, 1]))) <= 0.5 + 1e-5


@pytest.mark.parametrize(
    "settings,message",
    [
        (dict(snr_window_db=13.0), "snr_window_db must be in"),
        (dict(snr_range_db=(9.0, -3.0)), "low < high"),
        (dict(snr_window_low_db=5.0), "outside snr_range_db"),
        (dict(pairs_per_batch=1), "pairs_per_batch"),
        (dict(max_abs_delta_db=0.0), "max_abs_delta_db must be in"),
        (dict(max_abs_delta_db=7.0), r"max_abs_delta_db must be in \(0, 6\]"),
    ],
)
def test_bad_pair_configs(settings, message):
    with pytest.raises(ConfigError, match=message):
        PairConfig("c", "n", **settings)


def test_batches_pair_different_utterances_with_different_noises(prepared_pairs):
    dataset = make_pair_dataset(prepared_pairs, with_ids=True)
    for clean, noise, snr_db, num_valid, ids in dataset.take(6):
        assert clean.shape == noise.shape == (4, 16000) and snr_db.shape == (4, 2)
        assert num_valid.numpy().tolist() == [16000] * 4  # 1 s crops of 3-7 s utterances
        assert len(set(ids["clean_id"].numpy())) == 4
        assert len(set(ids["noise_id"].numpy())) == 4
        assert float(tf.reduce_min(tf.math.reduce_std(noise, axis=1))) > 0.001  # excerpts, not padding
    plain = next(iter(make_pair_dataset(prepared_pairs)))
    assert len(plain) == 4


def test_utterances_shorter_than_the_crop_are_mixed_at_the_nominal_snr(prepared_pairs):
    """8 s crops of 3-7 s utterances: zero-padded, and the SNR measured over the utterance's
    real samples is the nominal one (to 0.01 dB) in both views."""
    long_crops = PairConfig(**{**prepared_pairs.__dict__, "crop_seconds": 8.0})
    clean, noise, snr_db, num_valid = next(iter(make_pair_dataset(long_crops)))
    views = mix_pair(clean, noise, snr_db, num_valid_samples=num_valid)
    clean, num_valid = clean.numpy().astype(np.float64), num_valid.numpy()
    assert np.all(num_valid < 128_000)
    for column, view in enumerate(views):
        for i, n in enumerate(num_valid):
            assert not clean[i, n:].any()
            speech, added = clean[i, :n], np.asarray(view, np.float64)[i, :n] - clean[i, :n]
            measured = 10 * np.log10(np.mean(speech**2) / np.mean(added**2))
            assert measured == pytest.approx(float(snr_db[i, column]), abs=0.01)


def test_noise_records_are_the_fallback_above_the_bank_limit(prepared_pairs, caplog):
    """Above noise_bank_max_mb the noise records are read per excerpt (logged): the same
    properties, the same SNRs (they do not depend on where the noise comes from)."""
    records = PairConfig(**{**prepared_pairs.__dict__, "noise_bank_max_mb": 1e-6})
    with caplog.at_level(logging.INFO, logger="jsqa_tf.data.noise_bank"):
        from_records = list(make_pair_dataset(records, with_ids=True).take(4))
        assert "more than noise_bank_max_mb=1e-06" in caplog.text
        from_bank = list(make_pair_dataset(prepared_pairs, with_ids=True).take(4))
        assert "noise bank: " in caplog.text
    for (_, noise, snr_db, _, ids), (_, _, bank_snr_db, *_) in zip(from_records, from_bank, strict=True):
        assert noise.shape == (4, 16000) and len(set(ids["noise_id"].numpy())) == 4
        assert float(tf.reduce_min(tf.math.reduce_std(noise, axis=1))) > 0.001
        np.testing.assert_array_equal(snr_db, bank_snr_db)
    with pytest.raises(ConfigError, match="noise_bank_max_mb must be >= 0"):  # the ranges' words
        PairConfig("c", "n", noise_bank_max_mb=-1.0)


def test_several_clean_crops_per_utterance_never_share_a_batch(prepared_pairs):
    """1 s crops of 3-7 s utterances: each gives 3-7 crops an epoch (the default), never two in
    one batch; max_crops_per_file=1 reads one per utterance an epoch (the sampler before)."""
    one = PairConfig(**{**prepared_pairs.__dict__, "max_crops_per_file": 1})
    for config in (prepared_pairs, one):
        for *_, ids in make_pair_dataset(config, with_ids=True).take(20):
            assert len(set(ids["clean_id"].numpy())) == 4

    def epoch(config):  # one pass over the clean split, as the pair sampler reads it
        dataset = make_dataset(
            config.clean_dir,
            crop_samples=config.crop_samples,
            batch_size=4,
            keys=("source_path", "num_samples"),
            repeat=False,
            max_crops_per_file=config.max_crops_per_file,
        )
        return [
            (name, int(n))
            for batch in dataset
            for name, n in zip(*(batch[k].numpy() for k in ("source_path", "num_samples")), strict=True)
        ]

    several, single = epoch(prepared_pairs), epoch(one)
    assert len(set(single)) == len(single)  # one crop an utterance
    crops = sum(n // 16_000 for name, n in set(several))
    assert crops - 4 * 7 <= len(several) <= crops and len(several) > 2 * len(single)
    pretrain = PretrainConfig("run", data=PretrainDataConfig(pairs=PairSampling(max_crops_per_file=1)))
    assert pretrain.pair_config("train", "c", "n", 4).max_crops_per_file == 1
    with pytest.raises(ConfigError, match="max_crops_per_file must be >= 1"):
        PairSampling(max_crops_per_file=0)


@pytest.mark.parametrize("noise_bank_max_mb", [100.0, 0.0], ids=["bank", "records"])
def test_pretraining_pairs_resume_exactly_and_shard_by_worker(prepared_pairs, noise_bank_max_mb):
    """Epoch e's pairs come from (seed, e) alone: a run resumed at epoch 1 reads exactly the
    batches an uninterrupted run reads from epoch 1 on. Under a multi-worker strategy each
    worker keeps every n-th batch of that same stream (tf.data's DATA auto-shard rewrite,
    which must carry the captured noise bank)."""
    from tensorflow.python.data.experimental.ops.distribute import _AutoShardDataset

    folders = (prepared_pairs.clean_dir, prepared_pairs.noise_dir)
    pairs = PairSampling(crop_seconds=1.0, pairs_per_batch=4, noise_bank_max_mb=noise_bank_max_mb)
    data = PretrainDataConfig(*folders, pairs=pairs)
    config = PretrainConfig("run", data=data, training=PretrainTrainingConfig(epochs=3, steps_per_epoch=3))

    def batches(dataset, count):  # the stream repeats without end (distributable): take an epoch's
        return [[batch[key].numpy() for key in ("clean", "noise", "snr_db")] for batch in dataset.take(count)]

    straight = batches(train_dataset(config, *folders, 4, 3), 9)
    resumed = batches(train_dataset(config, *folders, 4, 3, initial_epoch=1), 6)
    assert len(straight) == 9 and len(resumed) == 6
    for x, y in zip(straight[3:], resumed, strict=True):
        for a, b in zip(x, y, strict=True):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(straight[0][1], straight[3][1])  # each epoch its own excerpts
    for worker in range(2):
        sharded = batches(_AutoShardDataset(train_dataset(config, *folders, 4, 3), 2, worker, 2), 4)
        for x, y in zip(straight[worker::2][:4], sharded, strict=True):
            np.testing.assert_array_equal(x[1], y[1])


def test_same_seed_same_pairs(prepared_pairs):
    def first(config):
        return [t.numpy() for t in next(iter(make_pair_dataset(config)))]

    for x, y in zip(first(prepared_pairs), first(prepared_pairs), strict=True):
        np.testing.assert_array_equal(x, y)
    other = PairConfig(**{**prepared_pairs.__dict__, "seed": 1})
    assert not np.array_equal(first(prepared_pairs)[2], first(other)[2])


def test_write_pairs_files_summary_and_tensorboard(prepared_pairs, tmp_path):
    summary = write_pairs(prepared_pairs, tmp_path / "out", 10, tensorboard_dir=tmp_path / "tb")
    with open(tmp_path / "out" / "pairs.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == summary["num_pairs"] == 10
    for row in rows:
        assert float(row["abs_delta_db"]) == pytest.approx(
            abs(float(row["snr_a_db"]) - float(row["snr_b_db"])), abs=2e-4
        )
        assert os.path.exists(tmp_path / "out" / row["file_a"]) and os.path.exists(
            tmp_path / "out" / row["file_b"]
        )
    assert summary["mean_abs_delta_db"] == pytest.approx(
        np.mean([float(r["abs_delta_db"]) for r in rows]), abs=1e-3
    )
    assert sum(summary["histogram"]["counts"]) == 10
    assert (tmp_path / "out" / "abs_delta_snr_histogram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "out" / "snr_distributions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["snr_placement"] == "uniform_window" and sum(summary["snr_histogram"]["counts"]) == 20
    snrs = [float(r[key]) for r in rows for key in ("snr_a_db", "snr_b_db")]
    assert summary["share_snr_below_0_db"] == pytest.approx(np.mean(np.array(snrs) < 0))
    tags = set()
    for event_file in (tmp_path / "tb").iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            tags |= {value.tag for value in event.summary.value}
    assert {"jnd_pairs/a_then_b", "jnd_pairs/abs_delta_snr_histogram"} <= tags
    with pytest.raises(CorpusError, match="already holds pairs.csv"):
        write_pairs(prepared_pairs, tmp_path / "out", 10)


def test_speech_and_noise_must_be_at_the_pairs_rate(prepared_pairs, tiny_demo, tmp_path):
    """Issue 12.3: 8 kHz speech was mixed with 16 kHz noise and written as 16 kHz."""
    narrow = PrepareConfig(
        corpus="librispeech", source=tiny_demo["librispeech"], sample_rate=8000, num_workers=0
    )
    prepare(narrow, tmp_path / "clean8k")
    mixed = PairConfig(str(tmp_path / "clean8k"), prepared_pairs.noise_dir, pairs_per_batch=2)
    with pytest.raises(CorpusError, match="clean8k: prepared at 8000 Hz, but 16000 Hz audio is needed"):
        make_pair_dataset(mixed)
    at_8k = PairConfig(
        str(tmp_path / "clean8k"), prepared_pairs.noise_dir, pairs_per_batch=2, sample_rate=8000
    )
    with pytest.raises(CorpusError, match="noise: prepared at 16000 Hz, but 8000 Hz audio is needed"):
        write_pairs(at_8k, tmp_path / "pairs", 2)
    assert not (tmp_path / "pairs").exists()


def test_crops_that_would_be_mostly_padding_are_warned_about(prepared_pairs):
    from jsqa_tf.data.pairs import crop_warnings

    assert crop_warnings(prepared_pairs) == []  # 1 s crops of 3-7 s files
    long_crops = crop_warnings(
        PairConfig(prepared_pairs.clean_dir, prepared_pairs.noise_dir, crop_seconds=1000)
    )
    assert len(long_crops) == 2
    assert "crop_seconds 1000 is longer than every speech file" in long_crops[0]
    assert "each crop is at least 99% zero-padded" in long_crops[0] and "looped" in long_crops[1]
    median = crop_warnings(PairConfig(prepared_pairs.clean_dir, prepared_pairs.noise_dir, crop_seconds=4.5))
    assert "crop_seconds 4.5 is longer than most speech files" in median[0]  # median 3-4 s, longest 5 s


def test_pairs_command_takes_the_snr_placement(prepared_pairs, tmp_path):
    import json

    from click.testing import CliRunner

    from jsqa_tf.cli import main

    out = tmp_path / "uniform"
    args = ["pairs", prepared_pairs.clean_dir, prepared_pairs.noise_dir, str(out), "-n", "8", "--no-audio"]
    result = CliRunner().invoke(main, [*args, "--crop-seconds", "1", "--snr-placement", "uniform_snr"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["snr_placement"] == "uniform_snr" and summary[
        "expected_mean_abs_delta_db"
    ] == pytest.approx(1.75)
    assert (out / "snr_distributions.png").exists() and (out / "abs_delta_snr_histogram.png").exists()


def test_batches_and_pairing_change_with_the_epoch_on_a_one_shard_split(prepared_pairs):
    """Training seeds each epoch's sampler with a tensor (`epoch_seed`) after setting the global
    seed: on a split of one shard the batches' utterances and the utterance-to-noise pairing
    still change from epoch to epoch, and a rerun reads the same pairs."""
    import keras

    from jsqa_tf.data.pipeline import shard_paths
    from jsqa_tf.training.pretrain import epoch_seed

    assert len(shard_paths(prepared_pairs.clean_dir)) == len(shard_paths(prepared_pairs.noise_dir)) == 1
    keras.utils.set_random_seed(0)  # as training does (Run.__enter__)

    def epoch(number):
        dataset = make_pair_dataset(prepared_pairs, with_ids=True, seed=epoch_seed(0, number))
        batches = []
        for *_, ids in dataset.take(3):
            clean, noise = (ids[key].numpy().tolist() for key in ("clean_id", "noise_id"))
            batches.append((tuple(sorted(clean)), tuple(sorted(zip(clean, noise, strict=True)))))
        return batches

    first, second, third = epoch(0), epoch(1), epoch(2)
    for a, b in ((first, second), (second, third), (first, third)):
        assert [batch[0] for batch in a] != [batch[0] for batch in b]  # which utterances share a batch
        assert {pair for batch in a for pair in batch[1]} != {pair for batch in b for pair in batch[1]}
    assert epoch(1) == second  # reruns alike
