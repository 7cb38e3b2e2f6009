import json
import math
import os

import numpy as np
import pytest

from jsqa_tf.audio import write_wav
from jsqa_tf.config import PrepareConfig
from jsqa_tf.data.codec_bank import (
    codec_pair_stream,
    mp3_compression_level,
    parse_bitrates,
    render_codec_bank,
    rung_pairs,
)
from jsqa_tf.data.prepare import prepare
from jsqa_tf.errors import ConfigError, CorpusError

LADDER = (8, 16, 32, 64, 160)


def voiced(seconds: float, f0: float, seed: int, sample_rate: int = 16000) -> np.ndarray:
    """A harmonic tone with a syllable-like envelope and a little noise (speech-shaped)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    phase = 2 * np.pi * np.cumsum(f0 + 20 * np.sin(2 * np.pi * 0.8 * t)) / sample_rate
    x = sum(np.sin(k * phase) / k for k in range(1, 20)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) ** 2
    x = x + 0.02 * rng.standard_normal(t.size)
    return 0.3 * x / np.abs(x).max()


def prepared_clean(root, sample_rate=16000, lengths=(1.5, 2.0, 0.4, 2.5)):
    for index, seconds in enumerate(lengths):
        samples = voiced(seconds, 100 + 30 * index, index, sample_rate)
        write_wav(root / "audio" / f"u{index}.wav", samples, sample_rate)
    config = PrepareConfig(
        corpus="folder", source=str(root / "audio"), shard_seconds=3.0, num_workers=0, sample_rate=sample_rate
    )
    prepare(config, root / "clean")
    return root / "clean"


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    root = tmp_path_factory.mktemp("codec")
    clean = prepared_clean(root)
    manifest = render_codec_bank(clean, root / "bank", bitrates_kbps=LADDER, num_workers=0)
    return root, manifest


def test_bank_records_nominal_and_measured_bitrates(bank):
    root, manifest = bank
    assert [rung["nominal_kbps"] for rung in manifest["rungs"]] == list(LADDER)
    for rung in manifest["rungs"]:  # measured from the bytes: frame headers add a few percent
        assert 0.97 < rung["measured_kbps"] / rung["nominal_kbps"] < 1.12
    # libsndfile leaves LAME's delay in at 8-32 kbps (16 kHz): measured per rung, then cut
    assert [rung["delay_samples"] for rung in manifest["rungs"]] == [1105, 1105, 1105, 0, 0]
    assert manifest["num_records"] == 4 and manifest["total_seconds"] == pytest.approx(6.4)
    on_disk = json.loads((root / "bank" / "manifest.json").read_text())
    assert on_disk["rungs"] == manifest["rungs"] and on_disk["kind"] == "codec_bank"
    # int16 PCM, every rung: ~115 MB an hour per rung, plus the records' framing
    assert manifest["mb_per_hour"] == pytest.approx(115.2 * len(LADDER), rel=0.02)


def test_views_are_the_same_crop_at_two_rungs_within_the_window(bank):
    root, manifest = bank
    window = 1.5
    stream = codec_pair_stream(
        root / "bank",
        "train",
        crop_samples=16000,
        batch_size=4,
        seed=3,
        window_octaves=window,
        keys=("source_path",),
    )
    measured = {rung["measured_kbps"] for rung in manifest["rungs"]}
    differences, correlations = [], []
    for batch in stream.take(6):
        a, b = np.asarray(batch["audio_a"]), np.asarray(batch["audio_b"])
        assert a.shape == b.shape == (4, 16000)
        rate_a, rate_b = np.asarray(batch["bitrate_a_kbps"]), np.asarray(batch["bitrate_b_kbps"])
        assert all(np.isclose(rate, sorted(measured), rtol=1e-6).any() for rate in (*rate_a, *rate_b))
        differences += list(np.abs(np.log2(rate_a / rate_b)))
        for row, valid in enumerate(np.asarray(batch["num_valid_samples"])):
            assert valid in (6400, 16000)  # the 0.4 s utterance is zero-padded
            assert not a[row, valid:].any() and not b[row, valid:].any()
            correlations.append(np.corrcoef(a[row, :valid], b[row, :valid])[0, 1])
    assert max(differences) <= window + 1e-6 and min(differences) > 0  # two distinct rungs
    assert np.median(correlations) > 0.9  # time-aligned: the same samples, two codings


def test_views_are_time_aligned_with_the_clean_utterance(bank):
    """Crops longer than every utterance start at 0: each view is its whole utterance, and at
    every rung it matches the clean file best with no shift (no encoder or decoder delay)."""
    import tensorflow as tf

    root, _ = bank
    spec = {name: tf.io.FixedLenFeature([], tf.string) for name in ("audio", "source_path")}
    clean = {}
    for record in tf.data.TFRecordDataset(sorted(str(p) for p in (root / "clean").glob("*.tfrecord"))):
        example = tf.io.parse_single_example(record, spec)
        clean[example["source_path"].numpy()] = np.frombuffer(example["audio"].numpy(), "<i2") / 32768
    stream = codec_pair_stream(
        root / "bank", "train", crop_samples=48000, batch_size=4, seed=0, window_octaves=5.0,
        keys=("source_path",),
    )  # fmt: skip
    rungs = set()
    for batch in stream.take(6):
        for row in range(4):
            source = clean[batch["source_path"][row].numpy()]
            valid = int(batch["num_valid_samples"][row])
            assert valid == len(source)
            for view, rate in (("audio_a", "bitrate_a_kbps"), ("audio_b", "bitrate_b_kbps")):
                audio = np.asarray(batch[view][row])
                assert not audio[valid:].any()
                shifts = range(-40, 41)
                scores = [np.dot(np.roll(audio[:valid], shift), source) for shift in shifts]
                assert shifts[int(np.argmax(scores))] == 0
                if float(batch[rate][row]) > 60:
                    assert np.corrcoef(audio[:valid], source)[0, 1] > 0.9
                rungs.add(round(float(batch[rate][row])))
    assert len(rungs) >= 4


@pytest.mark.parametrize("shuffle_buffer", [0, 3])
def test_same_seed_same_batches_other_seed_other_batches(bank, shuffle_buffer):
    root, _ = bank

    def batches(seed):
        stream = codec_pair_stream(
            root / "bank", "train", crop_samples=3000, batch_size=3, seed=seed, window_octaves=2.0,
            shuffle_buffer=shuffle_buffer, pair_buffer=4,
        )  # fmt: skip
        return [(np.asarray(b["audio_a"]), np.asarray(b["bitrate_b_kbps"])) for b in stream.take(5)]

    first, again, other = batches(7), batches(7), batches(8)
    for (a1, r1), (a2, r2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(a1, a2)
        np.testing.assert_array_equal(r1, r2)
    assert any(not np.array_equal(a1, a3) for (a1, _), (a3, _) in zip(first, other, strict=True))


def test_a_tensor_seed_inside_a_traced_pipeline_gives_the_same_batches(bank):
    """Pretraining builds each epoch's stream inside a tf.data function, from a seed tensor,
    under a global seed."""
    import tensorflow as tf

    root, _ = bank

    def stream(seed):
        return codec_pair_stream(root / "bank", "train", crop_samples=2000, batch_size=2, seed=seed,
                                 window_octaves=2.0)  # fmt: skip

    tf.random.set_seed(0)  # as pretraining sets it: Dataset.shuffle(seed=<tensor>) then fails
    try:
        nested = list(tf.data.Dataset.range(2).flat_map(lambda epoch: stream(epoch + 5).take(3)))
    finally:
        tf.random.set_seed(None)
    direct = [*stream(5).take(3), *stream(6).take(3)]
    for got, want in zip(nested, direct, strict=True):
        np.testing.assert_array_equal(got["audio_b"], want["audio_b"])
        np.testing.assert_array_equal(got["bitrate_a_kbps"], want["bitrate_a_kbps"])


def test_refusals(bank, tmp_path):
    root, _ = bank
    with pytest.raises(CorpusError, match="8000 Hz audio is needed"):
        codec_pair_stream(
            root / "bank", "train", crop_samples=100, batch_size=2, seed=0, window_octaves=2, sample_rate=8000
        )
    with pytest.raises(ConfigError, match="no two rungs"):
        codec_pair_stream(root / "bank", "train", crop_samples=100, batch_size=2, seed=0, window_octaves=0.5)
    with pytest.raises(CorpusError, match="already holds a bank"):
        render_codec_bank(root / "clean", root / "bank", bitrates_kbps=LADDER, num_workers=0)
    from jsqa_tf.data.pipeline import make_dataset

    with pytest.raises(CorpusError, match="is a codec bank"):  # not read as a clean folder
        make_dataset(root / "bank", "train", crop_samples=100, batch_size=2)
    with pytest.raises(CorpusError, match="not a codec bank"):
        codec_pair_stream(root / "clean", "train", crop_samples=100, batch_size=2, seed=0, window_octaves=2)
    with pytest.raises(ConfigError, match="MP3 at 16000 Hz takes"):
        render_codec_bank(root / "clean", tmp_path / "b", bitrates_kbps=(8, 320), num_workers=0)
    with pytest.raises(ConfigError, match="whole kbps"):
        parse_bitrates("8,sixteen")
    shard = (
        root
        / "bank"
        / json.loads((root / "bank" / "manifest.json").read_text())["splits"]["train"]["shards"][0]["file"]
    )
    data = shard.read_bytes()
    try:
        shard.write_bytes(data[:-10])
        with pytest.raises(CorpusError, match="truncated") as error:
            codec_pair_stream(
                root / "bank", "train", crop_samples=100, batch_size=2, seed=0, window_octaves=2
            )
        assert str(shard) in str(error.value)
    finally:
        shard.write_bytes(data)


def test_a_bank_of_another_rate_is_refused_by_a_16k_reader(tmp_path):
    clean = prepared_clean(tmp_path, sample_rate=8000, lengths=(2.0,))
    manifest = render_codec_bank(clean, tmp_path / "bank8", bitrates_kbps=(8, 16), num_workers=0)
    assert manifest["sample_rate"] == 8000
    with pytest.raises(CorpusError, match="rendered at 8000 Hz"):
        codec_pair_stream(
            tmp_path / "bank8",
            "train",
            crop_samples=100,
            batch_size=1,
            seed=0,
            window_octaves=2,
            sample_rate=16000,
        )


def test_max_hours_and_ladder_helpers(tmp_path):
    clean = prepared_clean(tmp_path, lengths=(1.0, 1.0, 1.0, 1.0))
    manifest = render_codec_bank(
        clean, tmp_path / "bank", bitrates_kbps=(16, 32), max_hours=1.5 / 3600, num_workers=0
    )
    assert manifest["total_seconds"] == pytest.approx(2.0)  # whole utterances until 1.5 s is reached
    assert rung_pairs((8, 16, 32, 64), 1.0) == [(0, 1), (1, 2), (2, 3)]
    assert rung_pairs((8.2, 16.4, 33.0), 1.0) == [(0, 1)]  # measured rates: 33/16.4 > 2
    assert mp3_compression_level(160, 16000) == 0.0 and mp3_compression_level(8, 16000) == 0.99
    assert math.isclose(mp3_compression_level(64, 16000), 96 / 152)


def test_cli_writes_a_bank(tmp_path):
    from click.testing import CliRunner

    from jsqa_tf.cli import main

    clean = prepared_clean(tmp_path, lengths=(0.5, 0.5))
    result = CliRunner().invoke(
        main, ["prepare", "codec-bank", str(clean), str(tmp_path / "bank"), "--bitrates", "16,32", "-j", "0"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [rung["nominal_kbps"] for rung in summary["rungs"]] == [16, 32]
    assert os.path.exists(tmp_path / "bank" / "manifest.json")
    again = CliRunner().invoke(main, ["prepare", "codec-bank", str(clean), str(tmp_path / "bank")])
    assert again.exit_code != 0 and "already holds a bank" in again.output
    checked = CliRunner().invoke(main, ["check", str(tmp_path / "bank")])
    assert checked.exit_code == 0, checked.output
