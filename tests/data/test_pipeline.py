import numpy as np
import pytest
import tensorflow as tf

from jsqa_tf.audio import write_wav
from jsqa_tf.config import PrepareConfig
from jsqa_tf.data.pipeline import make_dataset, random_crop_pcm, shard_paths
from jsqa_tf.data.prepare import prepare
from jsqa_tf.data.tfrecords import decode_pcm, pcm_to_float
from jsqa_tf.errors import CorpusError


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Files whose samples encode their own index and position: crops can be traced back."""
    root = tmp_path_factory.mktemp("pipeline")
    lengths = [800, 1200, 3000, 5000, 6400, 2000, 4100, 300]
    originals = {}
    for index, length in enumerate(lengths):
        pcm = (np.arange(length) % 1000 + 1000 * index).astype(np.int16)
        write_wav(root / "audio" / f"f{index}.wav", pcm / 32768.0)
        originals[f"f{index}.wav"] = pcm
    write_wav(root / "audio" / "silent.wav", np.zeros(2000))
    settings = dict(corpus="folder", source=str(root / "audio"), shard_seconds=0.3, num_workers=0)
    prepare(PrepareConfig(**settings), root / "shards")
    return root / "shards", originals


def as_pcm(audio):
    return np.round(np.asarray(audio) * 32768).astype(np.int16)


def test_crops_are_exact_slices_with_padding_for_short_files(prepared):
    folder, originals = prepared
    dataset = make_dataset(folder, crop_samples=1000, batch_size=3, keys=("source_path",), seed=1)
    for batch in dataset.take(20):
        assert batch["audio"].shape == (3, 1000) and batch["audio"].dtype == tf.float32
        for audio, valid, name in zip(
            batch["audio"], batch["num_valid_samples"], batch["source_path"].numpy(), strict=True
        ):
            pcm, valid = as_pcm(audio), int(valid)
            if name.decode() == "silent.wav":
                assert valid == 1000 and not pcm.any()
                continue
            original = originals[name.decode()]
            assert valid == min(1000, len(original))
            offset = int(np.flatnonzero(original == pcm[0])[0])
            np.testing.assert_array_equal(pcm[:valid], original[offset : offset + valid])
            assert not pcm[valid:].any()  # zero padding past a short file's end


def test_block_crops_take_every_file_once_per_epoch_in_whole_batches(prepared):
    """Random crops are cut a block of `shuffle_buffer` records at a time (rounded up to whole
    batches): one epoch still holds every file once, batches never straddle two blocks, and
    the last batch of an epoch keeps its remainder when asked to."""
    folder, originals = prepared
    names = {*originals, "silent.wav"}
    for shuffle_buffer in (5, 1024):
        dataset = make_dataset(
            folder,
            crop_samples=700,
            batch_size=2,
            keys=("source_path",),
            shuffle_buffer=shuffle_buffer,
            repeat=False,
            drop_remainder=False,
            seed=5,
        )
        batches = [batch["source_path"].numpy().tolist() for batch in dataset]
        assert [len(batch) for batch in batches] == [2, 2, 2, 2, 1]
        assert sorted(name.decode() for batch in batches for name in batch) == sorted(names)


@pytest.fixture(scope="module")
def numbered(tmp_path_factory):
    """Files whose samples number their position (distinct within a file): each crop's offset
    can be read off its first sample."""
    root = tmp_path_factory.mktemp("numbered")
    lengths = {"a.wav": 800, "b.wav": 1200, "c.wav": 3000, "d.wav": 5000, "e.wav": 6400, "f.wav": 2000}
    for name, length in lengths.items():
        write_wav(root / "audio" / name, (np.arange(length) + 1) / 32768.0)
    settings = dict(corpus="folder", source=str(root / "audio"), shard_seconds=0.3, num_workers=0)
    prepare(PrepareConfig(**settings), root / "shards")
    return root / "shards", lengths


def crops_of(batches):
    """[(batch, file, offset, valid)] of numbered crops."""
    found = []
    for index, batch in enumerate(batches):
        for audio, valid, name in zip(
            batch["audio"], batch["num_valid_samples"], batch["source_path"].numpy(), strict=True
        ):
            pcm, valid = as_pcm(audio), int(valid)
            offset = int(pcm[0]) - 1
            np.testing.assert_array_equal(pcm[:valid], np.arange(offset, offset + valid) + 1)  # exact slices
            assert not pcm[valid:].any()  # zero-padded past a short file's end
            found.append((index, name.decode(), offset, valid))
    return found


def test_several_crops_per_file_never_overlap_and_never_share_a_batch(numbered):
    """max_crops_per_file=None: a file of L samples gives max(1, L // crop) non-overlapping
    crops an epoch, each in a different batch; a batch never holds two crops of one file.
    Pass 0 (one crop of every file) is cut to whole batches like the one-crop sampler; a later
    pass drops its remainder (here: one crop of the pass of 3, the one of the pass of 1)."""
    folder, lengths = numbered
    dataset = make_dataset(
        folder,
        crop_samples=1000,
        batch_size=2,
        keys=("source_path",),
        repeat=False,
        max_crops_per_file=None,
        seed=2,
    )
    found = crops_of(dataset)
    for index in {batch for batch, *_ in found}:
        names = [name for batch, name, *_ in found if batch == index]
        assert len(names) == len(set(names)) == 2
    expected = {name: max(1, length // 1000) for name, length in lengths.items()}  # 1, 1, 3, 5, 6, 2
    passes = [sum(count > k for count in expected.values()) // 2 * 2 for k in range(6)]  # 6, 4, 2, 2, 2, 0
    assert len(found) == sum(passes) == 16
    for name, length in lengths.items():
        spans = sorted((offset, offset + valid) for _, file, offset, valid in found if file == name)
        assert 1 <= len(spans) <= expected[name]  # every file at least once
        assert all(start >= 0 and end <= length for start, end in spans)
        assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:], strict=False))  # no overlap
    short = [valid for _, file, _, valid in found if file == "a.wav"]
    assert short == [800]


def test_several_crops_per_file_fall_anywhere_are_capped_and_reproducible(numbered):
    folder, lengths = numbered

    def epochs(seed, max_crops, count=60):
        dataset = make_dataset(
            folder,
            crop_samples=1000,
            batch_size=2,
            keys=("source_path",),
            max_crops_per_file=max_crops,
            seed=seed,
        )
        return crops_of(dataset.take(count))

    found = epochs(4, None)
    starts = [offset for _, name, offset, _ in found if name == "e.wav"]
    assert min(starts) < 100 and max(starts) > 5300  # slack 400: crops reach both ends
    assert found == epochs(4, None)
    assert found != epochs(5, None)
    capped = epochs(4, 2, 200)
    per_name = {name: sum(1 for _, n, *_ in capped if n == name) for name in lengths}
    assert per_name["e.wav"] <= 2 * per_name["a.wav"] + 2  # at most two crops a file an epoch
    with pytest.raises(ValueError, match="max_crops_per_file must be >= 1"):
        make_dataset(folder, crop_samples=1000, max_crops_per_file=0)
    with pytest.raises(ValueError, match="several crops per file need random crops"):
        make_dataset(folder, crop_samples=1000, max_crops_per_file=None, drop_remainder=False)


def test_int16_to_float_is_x_over_32768_bit_for_bit():
    pcm = np.arange(-32768, 32768, dtype=np.int16)
    expected = pcm.astype(np.float32) / 32768
    np.testing.assert_array_equal(
        pcm_to_float(tf.constant(pcm.reshape(2, -1))).numpy(), expected.reshape(2, -1)
    )
    np.testing.assert_array_equal(decode_pcm(tf.constant(pcm.astype("<i2").tobytes())).numpy(), expected)


def test_crop_offsets_cover_the_whole_file():
    pcm = np.arange(5000, dtype=np.int16)
    audio_bytes = tf.constant(pcm.astype("<i2").tobytes())
    starts = set()
    for i in range(300):
        crop, valid = random_crop_pcm(
            audio_bytes, tf.constant(5000, tf.int64), 1000, tf.constant([7, i], tf.int64)
        )
        assert int(valid) == 1000
        starts.add(int(as_pcm(crop)[0]))
    assert min(starts) < 100 and max(starts) > 3900 and max(starts) <= 4000


def test_same_seed_same_batches_other_seed_other_batches(prepared):
    folder, _ = prepared

    def first_batches(seed):
        dataset = make_dataset(folder, crop_samples=500, batch_size=4, seed=seed)
        return [batch["audio"].numpy() for batch in dataset.take(5)]

    np.testing.assert_array_equal(first_batches(3), first_batches(3))
    assert not np.array_equal(first_batches(3), first_batches(4))


def test_one_pass_whole_files_with_labels(prepared):
    folder, originals = prepared
    dataset = make_dataset(
        folder,
        crop_samples=None,
        batch_size=4,
        shuffle=False,
        repeat=False,
        drop_remainder=False,
        keys=("source_path", "mos", "num_samples"),
    )
    seen = {}
    for batch in dataset:
        for audio, count, name, mos in zip(
            batch["audio"], batch["num_samples"], batch["source_path"].numpy(), batch["mos"], strict=True
        ):
            seen[name.decode()] = as_pcm(audio)[: int(count)]
            assert np.isnan(mos)
    assert len(seen) == 9
    for name, pcm in originals.items():
        np.testing.assert_array_equal(seen[name], pcm)


def test_skip_silent(prepared):
    folder, _ = prepared
    dataset = make_dataset(
        folder,
        crop_samples=100,
        batch_size=1,
        shuffle=False,
        repeat=False,
        skip_silent=True,
        keys=("source_path",),
    )
    names = {batch["source_path"][0].numpy().decode() for batch in dataset}
    assert "silent.wav" not in names and len(names) == 8


def test_bad_requests_are_clear(prepared, tmp_path):
    folder, _ = prepared
    with pytest.raises(CorpusError, match="no 'val' split"):
        make_dataset(folder, split="val")
    with pytest.raises(ValueError, match="unknown feature"):
        make_dataset(folder, keys=("loudness",))
    with pytest.raises(CorpusError, match="manifest.json"):
        shard_paths(tmp_path)


def test_demo_noise_stream(tiny_demo, tmp_path):
    """The demo's CHiME-3 layout, prepared, feeds 4 s crops of 16 kHz noise."""
    settings = dict(corpus="chime3", source=tiny_demo["chime3"], chime3_channels="all", num_workers=0)
    prepare(PrepareConfig(**settings), tmp_path / "noise")
    batch = next(iter(make_dataset(tmp_path / "noise", batch_size=4, keys=("environment",))))
    assert batch["audio"].shape == (4, 64000)
    assert set(batch["environment"].numpy()) <= {b"BUS", b"CAF", b"PED", b"STR"}
    assert float(tf.reduce_min(tf.math.reduce_std(batch["audio"][:, :48000], axis=1))) > 0.005
