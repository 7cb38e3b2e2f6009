import json
import os

import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

from jsqa_tf.audio import read_audio, to_int16
from jsqa_tf.config import PrepareConfig
from jsqa_tf.data import prepare as prepare_module
from jsqa_tf.data.manifest import load_manifest
from jsqa_tf.data.prepare import prepare
from jsqa_tf.data.tfrecords import parse_example
from jsqa_tf.errors import CorpusError


def read_shards(folder):
    """Every example of every shard in a prepared folder, by source path."""
    manifest = load_manifest(folder)
    examples = {}
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            for serialized in tf.data.TFRecordDataset(os.path.join(folder, shard["file"])):
                example = {k: v.numpy() for k, v in parse_example(serialized).items()}
                examples[example["source_path"].decode()] = example
    return examples


def shard_bytes(folder):
    return {
        name: (folder / name).read_bytes()
        for name in sorted(os.listdir(folder))
        if name.endswith(".tfrecord")
    }


def config(source, corpus="librispeech", **overrides):
    settings = dict(corpus=corpus, source=str(source), shard_seconds=6.0, num_workers=0)
    return PrepareConfig(**{**settings, **overrides})


def test_prepare_reads_back_bit_exact_with_metadata(tiny_demo, tmp_path):
    manifest = prepare(config(tiny_demo["librispeech"]), tmp_path / "out")
    examples = read_shards(tmp_path / "out")
    assert len(examples) == manifest["num_records"] == 6
    assert len(manifest["splits"]["train"]["shards"]) > 1
    for relative_path, example in examples.items():
        source = os.path.join(tiny_demo["librispeech"], relative_path)
        expected = to_int16(read_audio(source))
        stored = np.frombuffer(example["audio"], dtype="<i2")
        np.testing.assert_array_equal(stored, expected)
        assert example["num_samples"] == len(expected) and example["sample_rate"] == 16000
        speaker, chapter, _ = os.path.basename(relative_path).split("-")
        assert (example["speaker"].decode(), example["chapter"].decode()) == (speaker, chapter)
        assert np.isnan(example["mos"]) and example["is_silent"] == 0
    assert manifest["total_seconds"] == pytest.approx(
        sum(sf.info(os.path.join(tiny_demo["librispeech"], p)).duration for p in examples), abs=1e-2
    )
    assert manifest["version"] and manifest["config"]["shard_seconds"] == 6.0


def test_prepare_resamples_and_keeps_mos(tiny_demo, tmp_path):
    manifest = prepare(config(tiny_demo["nisqa"], "nisqa"), tmp_path / "mos")
    examples = read_shards(tmp_path / "mos")
    assert len(examples) == 6
    for relative_path, example in examples.items():
        info = sf.info(os.path.join(os.path.dirname(tiny_demo["nisqa"]), relative_path))
        assert example["num_samples"] == pytest.approx(info.duration * 16000, abs=1)
        assert 1.0 <= example["mos"] <= 5.0
        assert example["database"].decode() in ("NISQA_TRAIN_SIM", "NISQA_VAL_SIM")
    assert manifest["splits"]["train"]["labels"]["mos"]["count"] == 6


def test_deterministic_and_independent_of_worker_count(tiny_demo, tmp_path):
    """Two decoding processes (spawned) write the same bytes as decoding in-process."""
    prepare(config(tiny_demo["librispeech"], seed=3), tmp_path / "a")
    prepare(config(tiny_demo["librispeech"], seed=3, num_workers=2), tmp_path / "b")
    assert shard_bytes(tmp_path / "a") == shard_bytes(tmp_path / "b")
    prepare(config(tiny_demo["librispeech"], seed=4), tmp_path / "c")
    assert shard_bytes(tmp_path / "a") != shard_bytes(tmp_path / "c")


def test_speaker_disjoint_validation_split(tiny_demo, tmp_path):
    manifest = prepare(config(tiny_demo["librispeech"], val_fraction=0.3), tmp_path / "out")
    examples = read_shards(tmp_path / "out")
    splits = {}
    for split, info in manifest["splits"].items():
        for shard in info["shards"]:
            for serialized in tf.data.TFRecordDataset(str(tmp_path / "out" / shard["file"])):
                splits.setdefault(split, set()).add(parse_example(serialized)["speaker"].numpy())
    assert splits["train"] and splits["val"] and not splits["train"] & splits["val"]
    assert len(examples) == 6
    assert manifest["splits"]["val"]["labels"]["num_speakers"] == 1


def test_resume_after_interruption_skips_finished_shards(tiny_demo, tmp_path, monkeypatch):
    reference = tmp_path / "reference"
    prepare(config(tiny_demo["librispeech"]), reference)

    real_write_shard = prepare_module.write_shard
    calls = []

    def crash_on_second(shard, *args):
        calls.append(shard.name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-way
        return real_write_shard(shard, *args)

    out = tmp_path / "out"
    monkeypatch.setattr(prepare_module, "write_shard", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        prepare(config(tiny_demo["librispeech"]), out)
    assert not (out / "manifest.json").exists()
    with pytest.raises(CorpusError, match="unfinished"):
        load_manifest(out)
    finished = out / f"{calls[0]}.tfrecord"
    finished_mtime = finished.stat().st_mtime_ns
    (out / ".train-00001-of-00003.tfrecord.tmp-killed.tfrecord").write_bytes(b"half")  # a SIGKILL's leftover

    calls.clear()
    monkeypatch.setattr(prepare_module, "write_shard", real_write_shard)
    seen = []
    manifest = prepare(
        config(tiny_demo["librispeech"]), out, on_shard=lambda stats: seen.append(stats["name"])
    )
    assert calls == [] and finished.stem not in seen and finished.stat().st_mtime_ns == finished_mtime
    assert manifest["num_records"] == 6
    assert shard_bytes(out) == shard_bytes(reference)
    assert not [name for name in os.listdir(out) if ".tmp-" in name]
    # A rerun of a complete folder changes nothing.
    assert prepare(config(tiny_demo["librispeech"]), out)["created"] == manifest["created"]


def test_refuses_to_mix_different_preparations(tiny_demo, tmp_path):
    prepare(config(tiny_demo["librispeech"]), tmp_path / "out")
    before = shard_bytes(tmp_path / "out")
    with pytest.raises(CorpusError, match="different preparation"):
        prepare(config(tiny_demo["librispeech"], seed=1), tmp_path / "out")
    assert shard_bytes(tmp_path / "out") == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "thesis.tex").write_text("precious")
    with pytest.raises(CorpusError, match="not empty"):
        prepare(config(tiny_demo["librispeech"]), tmp_path / "other")


def test_problem_files_are_reported_not_fatal(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    sf.write(folder / "good.wav", np.full(16000, 0.1, np.float32) * np.sin(np.arange(16000)), 16000)
    sf.write(folder / "short.wav", np.full(800, 0.1, np.float32), 16000)
    sf.write(folder / "silent.wav", np.zeros(16000, np.float32), 16000)
    sf.write(folder / "nan.wav", np.array([0.1, np.nan] * 8000, np.float32), 16000, subtype="FLOAT")
    (folder / "broken.wav").write_bytes(b"RIFF....WAVEjunk")
    manifest = prepare(config(folder, "folder", min_seconds=0.5), tmp_path / "out")
    reasons = {os.path.basename(p["path"]): p["reason"] for p in manifest["problems"]}
    assert set(reasons) == {"short.wav", "nan.wav", "broken.wav"}
    assert "too short" in reasons["short.wav"] and "NaN" in reasons["nan.wav"]
    assert manifest["num_records"] == 2 and manifest["splits"]["train"]["num_silent"] == 1
    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert on_disk["num_problems"] == 3


def test_no_usable_files_is_an_error(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    (folder / "broken.wav").write_bytes(b"not audio at all")
    with pytest.raises(CorpusError, match="no usable audio files"):
        prepare(config(folder, "folder"), tmp_path / "out")


def test_load_manifest_errors(tmp_path):
    with pytest.raises(CorpusError, match="not a folder written by"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(CorpusError, match="corrupt manifest"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format_version": 0}')
    with pytest.raises(CorpusError, match="shard format 0, this jsqa-tf reads formats 1, 2"):
        load_manifest(tmp_path)


def test_named_databases_form_the_val_split(tiny_demo, tmp_path):
    settings = dict(val_databases=("NISQA_VAL_SIM",))
    manifest = prepare(config(tiny_demo["nisqa"], "nisqa", **settings), tmp_path / "mos")
    assert manifest["splits"]["val"]["labels"]["databases"] == {"NISQA_VAL_SIM": 2}
    assert manifest["splits"]["train"]["labels"]["databases"] == {"NISQA_TRAIN_SIM": 4}
    with pytest.raises(CorpusError, match="no files of val database.*NISQA_VAL_LIVE"):
        prepare(config(tiny_demo["nisqa"], "nisqa", val_databases=("NISQA_VAL_LIVE",)), tmp_path / "x")


def test_a_folder_prepared_before_mos_range_existed_still_resumes(tiny_demo):
    """New settings at their default leave the plan's fingerprint as it was."""
    import hashlib

    from jsqa_tf.config import to_dict
    from jsqa_tf.data.corpora import read_librispeech
    from jsqa_tf.data.manifest import FORMAT_VERSION
    from jsqa_tf.data.prepare import _fingerprint, plan_shards

    settings = config(tiny_demo["librispeech"])
    shards = plan_shards(read_librispeech(tiny_demo["librispeech"]).records, "train", 6.0, 0)
    before = to_dict(settings)
    for name in ("num_workers", "source", "mos_range", "targets", "target_ranges"):
        before.pop(name)
    content = {
        "format": FORMAT_VERSION,
        "config": before,
        "shards": [[s.name, [r.relative_path for r in s.records]] for s in shards],
    }
    expected = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    assert _fingerprint(settings, shards) == expected
    other_scale = config(tiny_demo["librispeech"], mos_range=(0.0, 10.0))
    assert _fingerprint(other_scale, shards) != expected
