import logging

import numpy as np
import pytest
import tensorflow as tf

from jsqa_tf.audio import write_wav
from jsqa_tf.config import PrepareConfig
from jsqa_tf.data.noise_bank import NoiseBank, load_noise_bank, noise_bank_mb
from jsqa_tf.data.prepare import prepare

CROP = 1000


@pytest.fixture(scope="module")
def noise(tmp_path_factory):
    """Files whose samples encode their own index and position (one shorter than the crop),
    and a silent one: every excerpt can be traced back to its file and offset."""
    root = tmp_path_factory.mktemp("noise_bank")
    lengths = [3000, 2500, 700, 2900, 1800, 2200]
    originals = {}
    for index, length in enumerate(lengths):
        pcm = (np.arange(length) + 3000 * index - 16000).astype(np.int16)
        write_wav(root / "audio" / f"n{index}.wav", pcm / 32768.0)
        originals[f"n{index}.wav"] = pcm
    write_wav(root / "audio" / "silent.wav", np.zeros(2000))
    settings = dict(corpus="folder", source=str(root / "audio"), shard_seconds=0.4, num_workers=0)
    prepare(PrepareConfig(**settings), root / "shards")
    return root / "shards", originals


def as_pcm(audio):
    return np.round(np.asarray(audio) * 32768).astype(np.int16)


def offset_of(excerpt, original):
    """The offset an excerpt starts at, checked to be a circular slice of `original`."""
    offset = int(excerpt[0] - original[0])
    np.testing.assert_array_equal(excerpt, original[(offset + np.arange(len(excerpt))) % len(original)])
    return offset


def test_excerpts_are_circular_slices_of_different_files(noise):
    folder, originals = noise
    bank = NoiseBank.read(folder, "train", CROP)
    assert bank.num_files == 6  # the silent file is not held
    offsets = {name: set() for name in originals}
    for batch in bank.dataset(3, seed=0, keys=("source_path",)).take(60):
        assert batch["audio"].shape == (3, CROP) and batch["audio"].dtype == tf.float32
        assert batch["num_valid_samples"].numpy().tolist() == [CROP] * 3
        names = [name.decode() for name in batch["source_path"].numpy()]
        assert len(set(names)) == 3
        for audio, name in zip(batch["audio"], names, strict=True):
            offsets[name].add(offset_of(as_pcm(audio), originals[name]))
    for name, seen in offsets.items():  # any offset, the last ones wrapping round the end
        assert min(seen) >= 0 and max(seen) < len(originals[name])
        assert max(seen) > len(originals[name]) * 0.7 and min(seen) < len(originals[name]) * 0.3


def test_each_epoch_is_a_new_permutation_and_the_seed_fixes_everything(noise):
    folder, _ = noise
    bank = NoiseBank.read(folder, "train", CROP)

    def epochs(seed, count=4):
        batches = [
            b["source_path"].numpy().tolist() for b in bank.dataset(3, seed, ("source_path",)).take(2 * count)
        ]
        return [batches[i] + batches[i + 1] for i in range(0, 2 * count, 2)]  # 6 files: 2 batches an epoch

    orders = epochs(seed=5)
    assert all(len(set(order)) == 6 for order in orders)
    assert len({tuple(order) for order in orders}) > 1
    assert orders == epochs(seed=5)
    assert orders != epochs(seed=6)
    same = [b["audio"].numpy() for b in bank.dataset(3, tf.constant(5, tf.int64)).take(3)]
    for x, y in zip(same, [b["audio"].numpy() for b in bank.dataset(3, 5).take(3)], strict=True):
        np.testing.assert_array_equal(x, y)  # a tensor seed (as pretraining passes) is the same seed


def test_fewer_files_than_a_batch_still_fill_it(noise):
    folder, originals = noise
    bank = NoiseBank.read(folder, "train", CROP)
    batch = next(iter(bank.dataset(8, seed=0, keys=("source_path",))))
    names = [name.decode() for name in batch["source_path"].numpy()]
    assert len(names) == 8 and set(names) == set(originals)  # two passes: every file, some twice
    for audio, name in zip(batch["audio"], names, strict=True):
        offset_of(as_pcm(audio), originals[name])


def test_the_size_limit_and_its_fallback_are_logged(noise, caplog):
    folder, _ = noise
    needed = noise_bank_mb(folder, "train", CROP)
    assert needed == pytest.approx(2 * (15_100 + 7 * CROP) / 1e6, rel=0.01)  # silent file counted
    with caplog.at_level(logging.INFO, logger="jsqa_tf.data.noise_bank"):
        assert load_noise_bank(folder, "train", CROP, max_mb=needed / 2) is None
        assert "more than noise_bank_max_mb" in caplog.text and "reading its records" in caplog.text
        assert load_noise_bank(folder, "train", CROP, max_mb=0) is None
        assert "noise bank off" in caplog.text
        bank = load_noise_bank(folder, "train", CROP, max_mb=needed)
    assert bank is not None and bank.nbytes == 2 * (13_100 + 6 * (CROP - 1))
    with pytest.raises(ValueError, match="holds no feature"):
        bank.dataset(3, 0, keys=("environment",))
