"""Shard integrity: sizes and checksums recorded, damaged shards named, no read ever spins."""

import hashlib
import json
import os
import shutil
import threading

import pytest
import tensorflow as tf

from jsqa_tf.config import PairConfig, PrepareConfig
from jsqa_tf.data import integrity
from jsqa_tf.data.pairs import write_pairs
from jsqa_tf.data.pipeline import make_dataset
from jsqa_tf.data.prepare import prepare
from jsqa_tf.errors import CorpusError

TRAIN_SHARD = "train-00000-of-00001.tfrecord"


@pytest.fixture(scope="module")
def prepared(tiny_demo, tmp_path_factory):
    root = tmp_path_factory.mktemp("integrity")
    prepare(
        PrepareConfig(corpus="librispeech", source=tiny_demo["librispeech"], num_workers=0), root / "clean"
    )
    noise = PrepareConfig(corpus="chime3", source=tiny_demo["chime3"], chime3_channels="all", num_workers=0)
    prepare(noise, root / "noise")
    return root


@pytest.fixture
def clean_copy(prepared, tmp_path):
    """A copy of the prepared speech to damage."""
    integrity.opened_shards.clear()
    shutil.copytree(prepared / "clean", tmp_path / "clean")
    return tmp_path / "clean"


def first_batch_within(dataset, seconds=60, num_batches=1):
    """The first batch (reading `num_batches`), or the exception reading raised; fails
    (instead of hanging the suite) when reading takes longer than `seconds`, as a spinning
    reader would."""
    outcome = {}

    def read():
        try:
            iterator = iter(dataset)
            outcome["batch"] = next(iterator)
            for _ in range(num_batches - 1):
                next(iterator)
        except Exception as error:  # noqa: BLE001 (handed to the test)
            outcome["error"] = error

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"reading did not end within {seconds} s (a spin)"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["batch"]


def test_shards_record_their_size_and_checksum(prepared):
    manifest = json.loads((prepared / "clean" / "manifest.json").read_text())
    entry = manifest["splits"]["train"]["shards"][0]
    shard = prepared / "clean" / entry["file"]
    assert entry["num_bytes"] == shard.stat().st_size > 0
    assert entry["sha256"] == hashlib.sha256(shard.read_bytes()).hexdigest()
    stats = json.loads(shard.with_suffix(".json").read_text())
    assert (stats["num_bytes"], stats["sha256"]) == (entry["num_bytes"], entry["sha256"])
    lengths = manifest["splits"]["train"]["file_seconds"]
    assert 0 < lengths["min"] <= lengths["median"] <= lengths["max"]
    report = integrity.verify_shards(prepared / "clean", records=True)
    assert report["problems"] == [] and report["checked"] == ["size", "records", "sha256"]


def test_an_empty_shard_is_refused_when_opened_never_read_forever(clean_copy, prepared, tmp_path):
    """Issue 12.1: a 0-byte shard (an interrupted copy, a full disk) made readers spin forever."""
    (clean_copy / TRAIN_SHARD).write_bytes(b"")
    with pytest.raises(CorpusError, match=f"{TRAIN_SHARD}: shard is 0 bytes, manifest.json says"):
        first_batch_within(make_dataset(clean_copy, crop_samples=1600, batch_size=2))
    pairs = PairConfig(str(clean_copy), str(prepared / "noise"), crop_seconds=0.5, pairs_per_batch=2)
    with pytest.raises(CorpusError, match="shard is 0 bytes"):
        write_pairs(pairs, tmp_path / "pairs", 2)
    assert not (tmp_path / "pairs" / "pairs.csv").exists()

    # A manifest from before sizes were recorded: an empty shard that should hold records.
    manifest = json.loads((clean_copy / "manifest.json").read_text())
    for entry in manifest["splits"]["train"]["shards"]:
        del entry["num_bytes"], entry["sha256"]
    (clean_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CorpusError, match="shard is empty \\(0 bytes\\) but should hold 6 record"):
        make_dataset(clean_copy, crop_samples=1600, batch_size=2)


def test_a_truncated_shard_is_refused_naming_it(clean_copy):
    shard = clean_copy / TRAIN_SHARD
    size = shard.stat().st_size
    shard.write_bytes(shard.read_bytes()[: size // 2])
    with pytest.raises(
        CorpusError, match=f"{TRAIN_SHARD}: shard is {size // 2} bytes, manifest.json says {size}"
    ):
        make_dataset(clean_copy, crop_samples=1600, batch_size=2)
    problems = integrity.verify_shards(clean_copy)["problems"]
    assert [os.path.basename(p["file"]) for p in problems] == [TRAIN_SHARD]


def test_a_corrupt_record_becomes_one_error_naming_the_shard(clean_copy):
    """Issue 12.2: a flipped bit ended in a 70-line DataLossError that named no file."""
    shard = clean_copy / TRAIN_SHARD
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the record CRCs can tell
    shard.write_bytes(bytes(data))
    dataset = make_dataset(clean_copy, crop_samples=1600, batch_size=2, shuffle=False)
    with pytest.raises(tf.errors.DataLossError) as raised:
        first_batch_within(dataset, num_batches=20)
    explained = integrity.explain_read_error(raised.value)
    assert isinstance(explained, CorpusError) and explained.path == str(shard)
    assert "corrupt after record" in explained.reason and "jsqa-tf check" in explained.reason
    assert "\n" not in str(explained) and "function_node" not in str(explained)
    checked = integrity.verify_shards(clean_copy)["problems"]
    assert checked == [{"file": str(shard), "reason": "checksum (SHA-256) differs from manifest.json"}]
    scanned = integrity.verify_shards(clean_copy, checksum=False, records=True)["problems"]
    assert "corrupt after record" in scanned[0]["reason"]


def test_an_epoch_too_short_for_a_batch_stops_with_an_error_not_a_spin(clean_copy):
    """Shards replaced by others that pass the size check (a manifest that lies): the reader
    ends with an error naming the folder instead of spinning through empty epochs."""
    shard = clean_copy / TRAIN_SHARD
    first = next(iter(tf.data.TFRecordDataset(str(shard)))).numpy()
    with tf.io.TFRecordWriter(str(shard)) as writer:
        writer.write(first)  # 1 record where the manifest lists 6
    manifest = json.loads((clean_copy / "manifest.json").read_text())
    manifest["splits"]["train"]["shards"][0]["num_bytes"] = shard.stat().st_size
    (clean_copy / "manifest.json").write_text(json.dumps(manifest))
    dataset = make_dataset(clean_copy, crop_samples=1600, batch_size=4)
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        first_batch_within(dataset)
    explained = integrity.explain_read_error(raised.value)
    assert explained.path == str(clean_copy)
    assert "fewer than 4 example(s)" in explained.reason and "'train' split" in explained.reason


def test_the_guard_changes_no_batch(prepared, monkeypatch):
    """The end-of-epoch sentinel is removed again: the batches are those without the guard."""
    from jsqa_tf.data import pipeline

    def batches():
        stream = make_dataset(prepared / "clean", crop_samples=1600, batch_size=2, seed=3)
        return [b["audio"].numpy() for _, b in zip(range(8), stream, strict=False)]  # 2+ epochs

    guarded = batches()
    monkeypatch.setattr(pipeline, "_fail_if_short", lambda records, *args: records)
    for expected, batch in zip(batches(), guarded, strict=True):
        assert (expected == batch).all()


def test_prepare_writes_a_damaged_shard_again(tiny_demo, tmp_path):
    config = PrepareConfig(corpus="librispeech", source=tiny_demo["librispeech"], num_workers=0)
    prepare(config, tmp_path / "out")
    shard = tmp_path / "out" / TRAIN_SHARD
    original = shard.read_bytes()
    shard.write_bytes(original[:100])
    prepare(config, tmp_path / "out")  # the same command again repairs the folder
    assert shard.read_bytes() == original
    assert integrity.verify_shards(tmp_path / "out")["problems"] == []
