"""MOS-labelled speech from prepared shards (`jsqa-tf prepare nisqa|csv`).

Two readers:
    mos_train_dataset   batches for the fine-tuning step: ({"waveform", "num_valid_samples"},
                        mos), random crops or whole files, seeded per epoch (graph ops only)
    labelled_files      whole files one by one as NumPy, for validation and evaluation

A selection narrows a split: named databases (NISQA_VAL_SIM, NISQA_TEST_FOR, ...) and a share
of the files (label-efficiency runs). The share keeps the files whose hash of (seed, path)
falls below it, so with one seed 5% ⊂ 10% ⊂ 25% ⊂ 50% ⊂ 100%.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from jsqa_lite.contract import SAMPLE_RATE
from jsqa_tf.data.pipeline import make_dataset, shard_paths
from jsqa_tf.data.tfrecords import FEATURE_SPEC, decode_pcm
from jsqa_tf.errors import CorpusError
from jsqa_tf.ranges import TARGETS

_HASH_BUCKETS = 2**30


@dataclasses.dataclass(frozen=True)
class Selection:
    """Which files of a split are used.

    Args:
        databases: keep only these `db` values (empty: all).
        fraction: keep this share of the files, chosen by hash (1: all).
        seed: seeds the hash.
    """

    databases: tuple[str, ...] = ()
    fraction: float = 1.0
    seed: int = 0

    @property
    def is_everything(self) -> bool:
        return not self.databases and self.fraction >= 1.0

    def keeps(self, features: dict) -> tf.Tensor:
        """Graph ops: True for the examples (parsed `source_path`, `database`) kept."""
        keep = tf.constant(True)
        if self.databases:
            keep = tf.reduce_any(tf.equal(features["database"], tf.constant(list(self.databases))))
        if self.fraction < 1.0:
            salted = tf.strings.join([tf.constant(f"{self.seed}:"), features["source_path"]])
            position = tf.strings.to_hash_bucket_fast(salted, _HASH_BUCKETS)
            keep = tf.logical_and(keep, position < int(self.fraction * _HASH_BUCKETS))
        return keep


SELECT_KEYS = ("source_path", "database")


def _records(data_dir: str, split: str, keys: tuple[str, ...]) -> tf.data.Dataset:
    """Every example of a split in shard order, parsed to `keys` (no audio unless asked)."""
    spec = {key: FEATURE_SPEC[key] for key in keys}
    paths = shard_paths(data_dir, split, sample_rate=SAMPLE_RATE)  # the models take 16 kHz
    return tf.data.TFRecordDataset(paths).map(
        lambda serialized: tf.io.parse_single_example(serialized, spec),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def count_labelled(
    data_dir: str, split: str, selection: Selection = Selection(), targets: tuple[str, ...] = ("mos",)
) -> int:
    """Files of a split that a selection keeps, checked to carry a MOS (one pass, no audio);
    of several `targets`, a rating on at least one of them (the others are masked).

    Raises:
        CorpusError: none kept, or a kept file has no MOS (a folder corpus, not a MOS one).
    """
    targets = tuple(targets)
    keys = (*SELECT_KEYS, *targets)
    records = _records(data_dir, split, keys)
    if not selection.is_everything:
        records = records.filter(selection.keeps)
    count, unlabelled, rated = 0, None, np.zeros(len(targets), np.int64)
    scores = records.map(lambda e: (tf.stack([e[target] for target in targets]), e["source_path"]))
    for example in scores.as_numpy_iterator():
        count += 1
        rated += np.isfinite(example[0])
        if unlabelled is None and not np.isfinite(example[0]).any():
            unlabelled = example[1].decode()
    where = f"the {split!r} split"
    if selection.databases:
        where += f" (databases {', '.join(selection.databases)})"
    if count == 0:
        raise CorpusError(data_dir, f"{where} holds no files to use")
    if unlabelled is not None:
        what = "a MOS" if targets == ("mos",) else f"a score on {', '.join(targets)}"
        raise CorpusError(
            data_dir, f"{where} has files without {what}, e.g. {unlabelled}: prepare it with `nisqa` or `csv`"
        )
    never = [target for target, number in zip(targets, rated, strict=True) if number == 0]
    if never:
        raise CorpusError(
            data_dir,
            f"no file of {where} is rated on {', '.join(never)} (a corpus without those columns, or "
            "shards prepared before jsqa-tf kept them: prepare it again)",
        )
    return count


def mos_train_dataset(
    data_dir: str,
    split: str,
    *,
    batch_size: int,
    seed: int | tf.Tensor,
    num_files: int,
    selection: Selection = Selection(),
    crop_samples: int | None = None,
    bucket_samples: int = SAMPLE_RATE,
    targets: tuple[str, ...] = ("mos",),
) -> tf.data.Dataset:
    """Endless training batches ({"waveform", "num_valid_samples"}, mos): a new order and new
    crop offsets every pass, from stateless RNG keyed on `seed` (a tensor inside flat_map).
    Of several `targets` the labels are float32 [batch, targets], NaN where not rated.

    Whole files (`crop_samples` None) are zero-padded to the longest of the batch, rounded up
    to a multiple of `bucket_samples` (few shapes for XLA); the padding is masked in the model.
    """
    select = None if selection.is_everything else selection.keeps
    dataset = make_dataset(
        data_dir,
        split,
        crop_samples=crop_samples,
        batch_size=batch_size,
        keys=tuple(targets),
        seed=seed,
        select=select,
        select_keys=SELECT_KEYS if select else (),
        num_selected=num_files if select else None,
        sample_rate=SAMPLE_RATE,
    )

    def to_inputs(batch):
        waveform = batch["audio"]
        if crop_samples is None:
            length = tf.shape(waveform)[1]
            padded = (length + bucket_samples - 1) // bucket_samples * bucket_samples
            waveform = tf.pad(waveform, [[0, 0], [0, padded - length]])
        inputs = {"waveform": waveform, "num_valid_samples": batch["num_valid_samples"]}
        if tuple(targets) == ("mos",):
            return inputs, batch["mos"]
        return inputs, tf.stack([batch[target] for target in targets], axis=1)

    return dataset.map(to_inputs, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


@dataclasses.dataclass(frozen=True)
class LabelledFile:
    """One file of a MOS split, whole."""

    key: str  # the path relative to the corpus root, as stored in the shards
    condition: str
    database: str
    mos: float
    audio: np.ndarray  # float32, 16 kHz mono
    scores: dict = dataclasses.field(default_factory=dict)  # every target's rating, NaN: none

    def score(self, target: str) -> float:
        return self.mos if target == "mos" else self.scores.get(target, math.nan)


def labelled_files(data_dir: str, split: str, selection: Selection = Selection()) -> Iterator[LabelledFile]:
    """The files of a split in shard order, whole, as NumPy."""
    keys = (*SELECT_KEYS, "condition", *TARGETS, "audio")
    records = _records(data_dir, split, keys)
    if not selection.is_everything:
        records = records.filter(selection.keeps)
    records = records.map(lambda e: {**e, "audio": decode_pcm(e["audio"])}).prefetch(4)
    for example in records.as_numpy_iterator():
        yield LabelledFile(
            key=example["source_path"].decode(),
            condition=example["condition"].decode(),
            database=example["database"].decode(),
            mos=float(example["mos"]),
            audio=example["audio"],
            scores={target: float(example[target]) for target in TARGETS},
        )
