"""`prepare`: a corpus -> sharded TFRecords of 16 kHz int16 PCM, plus a manifest.

Output folder:
    plan.json                       the shard plan and its fingerprint (written first)
    train-00000-of-00004.tfrecord   shards (see `jsqa_tf.data.tfrecords` for the format)
    train-00000-of-00004.json       what went into that shard, its size and SHA-256 (written
                                    before the shard)
    val-00000-of-00001.tfrecord     only with a validation split
    manifest.json                   counts, seconds, shards, config, tool version (written last)

Deterministic: the split and the order of files come from the seed and the sorted file list,
and every shard is written by one worker from its own list, so the bytes of a shard do not
depend on the number of workers. Resumable and atomic: shards are written under temporary names
and renamed when complete; a rerun with the same plan skips every shard already there.
A rerun with a different plan into the same folder is refused rather than mixing the two.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Callable

import numpy as np

import jsqa_tf
from jsqa_tf import atomic
from jsqa_tf.audio import is_silent, read_audio, to_int16
from jsqa_tf.config import PrepareConfig, to_dict
from jsqa_tf.data.corpora import AudioRecord, Corpus, Problem, read_corpus
from jsqa_tf.data.integrity import file_digest
from jsqa_tf.data.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    PLAN_NAME,
    load_manifest,  # noqa: F401 (jsqa_tf.cli imports it from here)
)
from jsqa_tf.errors import AudioError, CorpusError
from jsqa_tf.processes import run_each
from jsqa_tf.provenance import is_demo_source
from jsqa_tf.ranges import TARGETS

logger = logging.getLogger(__name__)

SPLITS = ("train", "val")


@dataclasses.dataclass(frozen=True)
class ShardPlan:
    """The files one shard will hold, in order."""

    split: str
    index: int
    num_shards: int
    records: tuple[AudioRecord, ...]

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:05d}-of-{self.num_shards:05d}"

    @property
    def seconds(self) -> float:
        return sum(record.duration_seconds for record in self.records)


def split_records(records: list[AudioRecord], val_fraction: float, seed: int) -> dict[str, list[AudioRecord]]:
    """Holds out whole groups (speakers, recordings, conditions) for validation.

    Groups are taken in a seeded random order until they hold at least `val_fraction` of the
    audio; both sides keep at least one group.
    """
    if val_fraction <= 0:
        return {"train": list(records)}
    seconds_by_group = Counter()
    for record in records:
        seconds_by_group[record.group] += record.duration_seconds
    groups = sorted(seconds_by_group)
    if len(groups) < 2:
        raise CorpusError("val_fraction", f"cannot split {len(groups)} group(s) into train and val")
    order = np.random.default_rng(seed).permutation(len(groups))
    target = val_fraction * sum(seconds_by_group.values())
    val_groups, val_seconds = set(), 0.0
    for index in order[:-1]:  # the last group always stays in train
        if val_seconds >= target:
            break
        val_groups.add(groups[index])
        val_seconds += seconds_by_group[groups[index]]
    return {
        "train": [r for r in records if r.group not in val_groups],
        "val": [r for r in records if r.group in val_groups],
    }


def split_by_database(
    records: list[AudioRecord], val_databases: tuple[str, ...], root: str
) -> dict[str, list[AudioRecord]]:
    """Puts the records of the named databases (NISQA `db`, LibriSpeech subset) in val."""
    found = {record.database for record in records}
    missing = sorted(set(val_databases) - found)
    if missing:
        raise CorpusError(root, f"no files of val database(s) {', '.join(missing)}; found {sorted(found)}")
    split = {
        "train": [r for r in records if r.database not in val_databases],
        "val": [r for r in records if r.database in val_databases],
    }
    if not split["train"]:
        raise CorpusError(root, "every file is in a val database: nothing left to train on")
    return split


def plan_shards(records: list[AudioRecord], split: str, shard_seconds: float, seed: int) -> list[ShardPlan]:
    """Shuffles `records` with the seed and cuts them into shards of ~`shard_seconds`."""
    if not records:
        return []
    order = np.random.default_rng([seed, SPLITS.index(split)]).permutation(len(records))
    shuffled = [records[i] for i in order]
    total = sum(r.duration_seconds for r in shuffled)
    num_shards = max(1, math.ceil(total / shard_seconds))
    buckets: list[list[AudioRecord]] = [[] for _ in range(num_shards)]
    start = 0.0
    for record in shuffled:
        buckets[min(int(start / total * num_shards), num_shards - 1)].append(record)
        start += record.duration_seconds
    buckets = [bucket for bucket in buckets if bucket]
    return [ShardPlan(split, index, len(buckets), tuple(bucket)) for index, bucket in enumerate(buckets)]


# Settings added after format 1 was fixed, with their defaults: left out of the fingerprint at
# their default, so that a folder prepared before they existed still resumes.
_LATER_SETTINGS = {"mos_range": [1.0, 5.0], "targets": ["mos"], "target_ranges": []}


def _fingerprint(config: PrepareConfig, shards: list[ShardPlan]) -> str:
    settings = to_dict(config)
    settings.pop("num_workers")  # how many processes decode does not change the output
    settings.pop("source")  # the same corpus named by another path is the same corpus
    for name, default in _LATER_SETTINGS.items():
        if settings.get(name) == default:
            settings.pop(name)
    content = {
        "format": FORMAT_VERSION,
        "config": settings,
        "shards": [[s.name, [r.relative_path for r in s.records]] for s in shards],
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def write_shard(shard: ShardPlan, output_dir: str, sample_rate: int, channel: int | None) -> dict:
    """Decodes the files of one shard and writes it atomically; returns its statistics.

    Runs in a worker process. Files that fail to decode are reported, not fatal. A shard that
    cannot be written (a full disk) raises `CorpusError` naming it; finished shards are kept.
    """
    import tensorflow as tf  # here, so that listing a corpus never pays for importing TF

    from jsqa_tf.data.tfrecords import encode_example

    stats = {"name": shard.name, "num_records": 0, "num_samples": 0, "num_silent": 0}
    problems = []
    path = os.path.join(output_dir, f"{shard.name}.tfrecord")
    try:
        with atomic.atomic_path(path) as temp_path:
            with tf.io.TFRecordWriter(temp_path) as writer:
                for record in shard.records:
                    try:
                        samples = read_audio(record.path, sample_rate, channel=channel)
                    except AudioError as error:
                        problems.append({"path": error.path, "reason": error.reason})
                        continue
                    silent = is_silent(samples)
                    pcm = to_int16(samples)
                    writer.write(encode_example(pcm, sample_rate, record, is_silent=silent))
                    stats["num_records"] += 1
                    stats["num_samples"] += int(pcm.shape[0])
                    stats["num_silent"] += int(silent)
            stats["seconds"] = stats["num_samples"] / sample_rate
            stats["problems"] = problems
            stats.update(file_digest(temp_path))  # num_bytes, sha256: checked when read
            # The statistics land before the shard: a shard's presence means both are complete.
            atomic.write_json(os.path.join(output_dir, f"{shard.name}.json"), stats)
    except (OSError, tf.errors.OpError) as error:
        reason = error.strerror if isinstance(error, OSError) else error.message.strip().splitlines()[0]
        raise CorpusError(
            path,
            f"cannot be written ({reason}); is the disk full? Free some space and run the same "
            "command again: finished shards are kept",
        )
    return stats


def _shard_done(output_dir: str, shard: ShardPlan) -> dict | None:
    shard_path = os.path.join(output_dir, f"{shard.name}.tfrecord")
    stats_path = os.path.join(output_dir, f"{shard.name}.json")
    if not (os.path.exists(shard_path) and os.path.exists(stats_path)):
        return None
    try:
        with open(stats_path, encoding="utf-8") as stream:
            stats = json.load(stream)
    except (OSError, json.JSONDecodeError):
        return None  # written again
    if not isinstance(stats, dict):
        return None
    expected = stats.get("num_bytes")
    size = os.path.getsize(shard_path)
    if (expected is not None and size != expected) or (size == 0 and stats.get("num_records", 0) > 0):
        logger.warning("%s: %d bytes, %s expected; writing it again", shard_path, size, expected)
        return None
    return stats


def _damaged_shards(output_dir: str, manifest: dict) -> list[str]:
    """Shards of a finished preparation that are missing or not of their recorded size."""
    from jsqa_tf.data.integrity import check_size

    damaged = []
    for split in manifest.get("splits", {}).values():
        for entry in split["shards"]:
            try:
                check_size(os.path.join(output_dir, entry["file"]), entry)
            except CorpusError:
                damaged.append(entry["file"])
    return damaged


def _remove_stale_temporaries(output_dir: str) -> None:
    """Deletes half-written files that a killed run (SIGKILL, power loss) left behind."""
    for name in os.listdir(output_dir):
        if name.startswith(".") and ".tmp-" in name:
            logger.info("removing %s, left by an interrupted run", name)
            os.remove(os.path.join(output_dir, name))


def _check_output_dir(output_dir: str, fingerprint: str) -> None:
    plan_path = os.path.join(output_dir, PLAN_NAME)
    if os.path.exists(plan_path):
        try:
            with open(plan_path, encoding="utf-8") as stream:
                previous = json.load(stream).get("fingerprint")
        except (json.JSONDecodeError, AttributeError) as error:
            raise CorpusError(plan_path, f"corrupt plan ({error}); delete the folder to start over")
        if previous != fingerprint:
            raise CorpusError(
                output_dir,
                "already holds shards of a different preparation (other files, split or "
                "settings); nothing was changed. Write to a new folder, or delete this one "
                "to start over",
            )
    elif os.path.isdir(output_dir) and any(not n.startswith(".") for n in os.listdir(output_dir)):
        raise CorpusError(
            output_dir, "is not empty and holds no jsqa-tf plan.json; refusing to write into it"
        )


def _summarise_labels(records: list[AudioRecord]) -> dict:
    labels = {
        "num_speakers": len({r.speaker for r in records if r.speaker}),
        "environments": dict(sorted(Counter(r.environment for r in records if r.environment).items())),
        "databases": dict(sorted(Counter(r.database for r in records if r.database).items())),
        "num_groups": len({r.group for r in records}),
    }
    for target in TARGETS:
        scores = [r.score(target) for r in records if r.score(target) is not None]
        if scores:
            labels[target] = {
                "count": len(scores),
                "min": float(np.min(scores)),
                "mean": float(np.mean(scores)),
                "max": float(np.max(scores)),
            }
    return labels


ProgressCallback = Callable[[dict], None]


def list_corpus(config: PrepareConfig) -> Corpus:
    """Reads the corpus that `config` names (its kind, source and filters)."""
    return read_corpus(
        config.corpus,
        config.source,
        subsets=config.subsets,
        databases=config.databases,
        chime3_channels=config.chime3_channels,
        mos_range=tuple(config.mos_range),
        targets=config.targets,
        target_ranges=config.target_ranges,
    )


def prepare(
    config: PrepareConfig,
    output_dir: str | os.PathLike,
    *,
    corpus: Corpus | None = None,
    on_start: Callable[[float, int], None] | None = None,
    on_shard: ProgressCallback | None = None,
) -> dict:
    """Converts a corpus into TFRecord shards and writes `manifest.json`; returns the manifest.

    Args:
        config: what to read and how to shard it.
        output_dir: destination folder (created; must be new, empty or an earlier run of the
            same plan, which is then resumed).
        corpus: an already-read corpus (read from `config` when None).
        on_start: called once with (seconds of audio to write, number of shards to write).
        on_shard: called with each shard's statistics as it completes.
    """
    output_dir = os.path.abspath(os.fspath(output_dir))
    if corpus is None:
        corpus = list_corpus(config)
    logger.info(corpus.summary())
    problems = [dataclasses.asdict(p) for p in corpus.problems]
    records = []
    for record in corpus.records:
        if record.duration_seconds < config.min_seconds:
            reason = f"too short: {record.duration_seconds:.3f} s < min_seconds {config.min_seconds:g}"
            problems.append(dataclasses.asdict(Problem(record.path, reason)))
        else:
            records.append(record)
    if not records:
        if not problems:
            raise CorpusError(corpus.root, "no usable audio files: the corpus lists none")
        examples = "; ".join(f"{p['path']}: {p['reason']}" for p in problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CorpusError(
            corpus.root, f"no usable audio files; {len(problems)} problem file(s), e.g. {examples}{more}"
        )

    if config.val_databases:
        by_split = split_by_database(records, config.val_databases, corpus.root)
    else:
        by_split = split_records(records, config.val_fraction, config.seed)
    shards = [
        shard
        for split, split_records_ in by_split.items()
        for shard in plan_shards(split_records_, split, config.shard_seconds, config.seed)
    ]
    fingerprint = _fingerprint(config, shards)
    _check_output_dir(output_dir, fingerprint)
    os.makedirs(output_dir, exist_ok=True)
    manifest_path = os.path.join(output_dir, MANIFEST_NAME)
    if os.path.exists(manifest_path):
        with open(manifest_path, encoding="utf-8") as stream:
            manifest = json.load(stream)
        damaged = _damaged_shards(output_dir, manifest)
        if not damaged:
            logger.info("%s is complete already; nothing to do", output_dir)
            return manifest
        # A shard cut short since (a copy, a full disk): written again, the rest kept.
        logger.warning("%s: %s damaged; writing it again", output_dir, ", ".join(damaged))
        os.remove(manifest_path)
    atomic.write_json(
        os.path.join(output_dir, PLAN_NAME),
        {"fingerprint": fingerprint, "shards": [[s.name, len(s.records)] for s in shards]},
    )

    _remove_stale_temporaries(output_dir)
    stats = {shard.name: _shard_done(output_dir, shard) for shard in shards}
    todo = [shard for shard in shards if stats[shard.name] is None]
    if len(todo) < len(shards):
        logger.info("resuming: %d of %d shards are done already", len(shards) - len(todo), len(shards))
    if on_start:
        on_start(sum(s.seconds for s in todo), len(todo))

    def finished(result: dict) -> None:
        stats[result["name"]] = result
        if on_shard:
            on_shard(result)

    # The workers die with this process, even under `kill -9`.
    run_each(
        write_shard, todo, (output_dir, config.sample_rate, config.channel), config.num_workers, finished
    )

    manifest = _manifest(config, corpus, output_dir, shards, stats, problems, by_split)
    atomic.write_json(manifest_path, manifest)
    return manifest


def _manifest(config, corpus, output_dir, shards, stats, problems, by_split) -> dict:
    splits = {}
    for split in by_split:
        split_shards = [s for s in shards if s.split == split]
        entries = [
            {
                "file": f"{s.name}.tfrecord",
                "num_records": stats[s.name]["num_records"],
                "seconds": round(stats[s.name]["seconds"], 3),
                **{key: stats[s.name][key] for key in ("num_bytes", "sha256") if key in stats[s.name]},
            }
            for s in split_shards
        ]
        durations = [r.duration_seconds for r in by_split[split]]
        splits[split] = {
            "num_records": sum(e["num_records"] for e in entries),
            "total_seconds": round(sum(stats[s.name]["seconds"] for s in split_shards), 3),
            "num_silent": sum(stats[s.name]["num_silent"] for s in split_shards),
            "labels": _summarise_labels(by_split[split]),
            # from the headers: how much of a crop will be padding (pairs and pretrain warn)
            "file_seconds": {
                "min": round(float(np.min(durations)), 3),
                "median": round(float(np.median(durations)), 3),
                "max": round(float(np.max(durations)), 3),
            },
            "shards": entries,
        }
    for s in shards:
        problems.extend(stats[s.name]["problems"])
    return {
        "tool": "jsqa-tf",
        "version": jsqa_tf.__version__,
        "format_version": FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "corpus": corpus.kind,
        "root": corpus.root,
        "synthetic_demo": is_demo_source(config.source),
        "sample_rate": config.sample_rate,
        "config": to_dict(config),
        "splits": splits,
        "num_records": sum(split["num_records"] for split in splits.values()),
        "total_seconds": round(sum(split["total_seconds"] for split in splits.values()), 3),
        "num_problems": len(problems),
        "problems": problems,
    }
