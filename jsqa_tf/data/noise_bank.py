"""The noise split in memory: read once, cut into circular excerpts a whole batch at a time.

Read as records, noise costs a whole file per excerpt: every 4 s excerpt re-reads, CRC-checks
and parses its whole recording (1.9 MB for 60 s), every epoch. A `NoiseBank` reads the
split's records once per pipeline, keeps the samples as one int16 tensor, and cuts each
batch's excerpts as slices of it: order and offsets from stateless RNG keyed on (seed, epoch,
batch), so the same seed gives the same batches and a resumed run reads what an
uninterrupted one reads.

Memory (measured, TF 2.21): the bank is 2 bytes a sample (115 MB an hour at 16 kHz) plus
`crop_samples - 1` samples a file. Reading peaks at twice that (the per-file tensors and their
concatenation; 1,041 MB bank: +2.2 GB, ~3 s). Once a pipeline is iterated it holds twice the
bank: tf.data's graph rewrites at iterator creation (default optimizations, a strategy's
rebatching or auto-sharding) copy the tensors a dataset captures, as they do a
`Dataset.from_tensors` element. A tf.Variable would hold it once, but a strategy scope would
mirror it onto every device. `load_noise_bank` refuses a split whose bank exceeds `max_mb`; the
caller then reads records per excerpt, as `make_dataset(crop_mode="circular")` does.

The bank is a rank-1 int16 tensor created eagerly (`tf.init_scope`, on the CPU), so a dataset
function that uses it captures it by reference, even when the pipeline is built inside a
traced function (pretraining's per-epoch `flat_map`), and never as a graph constant (no 2 GB
protobuf limit: a 2.2 GB bank iterates). The same bytes as one scalar string would be inlined
as a constant: TensorFlow inlines captured eager tensors of at most 128 elements, whatever
their size in bytes.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import tensorflow as tf

from jsqa_tf.data.manifest import load_manifest
from jsqa_tf.data.pipeline import _split
from jsqa_tf.data.tfrecords import FEATURE_SPEC, pcm_to_float
from jsqa_tf.errors import CorpusError

logger = logging.getLogger(__name__)

_READ_KEYS = ("audio", "num_samples", "is_silent", "source_path")


def _bank_samples(info: dict, sample_rate: int, crop_samples: int) -> int:
    """Samples a bank of a split holds at most (silent files and the manifest's rounding of
    seconds to the millisecond included)."""
    slack = len(info["shards"]) * sample_rate // 1000 + 1
    return int(info["total_seconds"] * sample_rate) + slack + info["num_records"] * (crop_samples - 1)


def noise_bank_mb(data_dir: str | os.PathLike, split: str, crop_samples: int) -> float:
    """The memory a bank of this split would hold, in MB (10**6 bytes), from the manifest
    (silent files included: an upper bound)."""
    info = _split(data_dir, split)[1]
    return 2 * _bank_samples(info, load_manifest(data_dir)["sample_rate"], crop_samples) / 1e6


class NoiseBank:
    """A noise split held in memory as int16, cut into circular excerpts per batch.

    Args:
        pcm: int16 [total]: every file's samples followed by its first `crop_samples - 1`
            samples again (looped when the file is shorter), so that an excerpt from any
            offset is one slice; files one after another.
        starts: int64 [files]: where each file begins in `pcm`.
        num_samples: int64 [files]: each file's length (offsets are drawn in [0, length)).
        source_paths: string [files]: each file's path as stored in the shards.
        crop_samples: the excerpt length the bank is laid out for.
    """

    def __init__(self, pcm, starts, num_samples, source_paths, crop_samples: int):
        self.pcm = pcm
        self.starts = starts
        self.num_samples = num_samples
        self.source_paths = source_paths
        self.crop_samples = crop_samples

    @property
    def num_files(self) -> int:
        return int(self.starts.shape[0])

    @property
    def nbytes(self) -> int:
        return 2 * int(self.pcm.shape[0])

    @classmethod
    def read(
        cls, data_dir: str | os.PathLike, split: str, crop_samples: int, *, skip_silent: bool = True
    ) -> NoiseBank:
        """Reads every (non-silent) file of a split into a bank, once.

        Raises:
            CorpusError: the split has no usable file.
        """
        data_dir = os.path.abspath(os.fspath(data_dir))
        paths = _split(data_dir, split)[0]
        spec = {key: FEATURE_SPEC[key] for key in _READ_KEYS}

        def usable(example):
            silent = tf.logical_and(skip_silent, tf.not_equal(example["is_silent"], 0))
            return tf.logical_and(tf.logical_not(silent), example["num_samples"] > 0)

        def stored(example):  # the file, then its first crop_samples - 1 samples (looped)
            pcm = tf.io.decode_raw(example["audio"], tf.int16, little_endian=True)
            count = tf.shape(pcm, out_type=tf.int64)[0]
            wrap = tf.range(crop_samples - 1, dtype=tf.int64) % count
            return tf.concat([pcm, tf.gather(pcm, wrap)], 0), count, example["source_path"]

        # Eagerly, even when called while a dataset function is traced: the bank must be a
        # value that the graph captures, not ops inside it. TensorFlow tensors throughout:
        # tf.constant of a NumPy array would copy it twice more (3x the bank at the peak).
        with tf.init_scope(), tf.device("/CPU:0"):
            records = tf.data.TFRecordDataset(paths).map(lambda s: tf.io.parse_single_example(s, spec))
            segments, lengths, names = [], [], []
            for segment, count, name in records.filter(usable).map(stored):
                segments.append(segment)
                lengths.append(int(count))
                names.append(name)
            if not segments:
                raise CorpusError(data_dir, f"the {split!r} split has no usable (non-silent) files")
            sizes = np.array([length + crop_samples - 1 for length in lengths], np.int64)
            pcm = tf.concat(segments, axis=0)  # the peak: the segments and the bank, 2x the bank
            del segments
            bank = cls(
                pcm=pcm,
                starts=tf.constant(np.cumsum(sizes) - sizes),
                num_samples=tf.constant(lengths, tf.int64),
                source_paths=tf.stack(names),
                crop_samples=crop_samples,
            )
        return bank

    def dataset(self, batch_size: int, seed: int | tf.Tensor, keys: tuple[str, ...] = ()) -> tf.data.Dataset:
        """Endless batches of excerpts, as `make_dataset(crop_mode="circular")` yields them:
        {"audio": float32 [batch, crop_samples], "num_valid_samples": int32 [batch]}, plus
        "source_path" when asked for in `keys`.

        An epoch is one shuffled pass over the files (several when there are fewer files
        than `batch_size`), cut into batches; so a batch holds different files whenever the
        bank has `batch_size` of them. Each excerpt starts at a uniform offset in its file and
        wraps around the file's end. Order and offsets: stateless RNG keyed on (seed, epoch,
        batch in the epoch).
        """
        unknown = sorted(set(keys) - {"source_path"})
        if unknown:
            raise ValueError(f"a noise bank holds no feature(s) {unknown}; it has source_path")
        num_files, crop = self.num_files, self.crop_samples
        passes = -(-batch_size // num_files)
        per_epoch = num_files * passes // batch_size
        key = tf.stack([tf.cast(seed, tf.int64), tf.constant(0x6E6F697365, tf.int64)])  # "noise"
        fold_in = tf.random.experimental.stateless_fold_in

        def excerpts(index):
            epoch, position = index // per_epoch, index % per_epoch
            epoch_key = fold_in(key, epoch)
            order_key, offset_key = fold_in(epoch_key, 0), fold_in(epoch_key, 1)
            order = tf.concat(
                [
                    tf.random.experimental.stateless_shuffle(
                        tf.range(num_files, dtype=tf.int64), fold_in(order_key, p)
                    )
                    for p in range(passes)
                ],
                axis=0,
            )
            files = order[position * batch_size : (position + 1) * batch_size]
            draws = tf.random.stateless_uniform(
                [batch_size], fold_in(offset_key, position), minval=None, maxval=None, dtype=tf.int64
            )
            offsets = tf.math.floormod(draws, tf.gather(self.num_samples, files))  # bias <= n / 2**64
            starts = tf.gather(self.starts, files) + offsets
            pcm = tf.stack([self.pcm[starts[i] : starts[i] + crop] for i in range(batch_size)])
            element = {
                "audio": pcm_to_float(pcm),
                "num_valid_samples": tf.fill([batch_size], tf.constant(crop, tf.int32)),
            }
            if "source_path" in keys:
                element["source_path"] = tf.gather(self.source_paths, files)
            return element

        return tf.data.Dataset.counter().map(
            excerpts, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )


def load_noise_bank(
    data_dir: str | os.PathLike,
    split: str,
    crop_samples: int,
    *,
    max_mb: float,
    sample_rate: int | None = None,
) -> NoiseBank | None:
    """A `NoiseBank` of the split, or None (logged) when it would exceed `max_mb` MB (0: off).

    With `sample_rate`, a folder prepared at another rate is refused (CorpusError)."""
    from jsqa_tf.data.pipeline import split_info

    data_dir = os.path.abspath(os.fspath(data_dir))
    split_info(data_dir, split, sample_rate)  # exists, shard sizes as recorded, the rate
    size_mb = noise_bank_mb(data_dir, split, crop_samples)
    if size_mb > max_mb:
        if max_mb > 0:
            logger.warning(
                "noise bank: the %r split of %s needs %.0f MB in memory, more than noise_bank_max_mb=%g; "
                "reading its records for every excerpt instead (slower: a whole file per excerpt). "
                "Raise noise_bank_max_mb if the memory is there",
                split,
                data_dir,
                size_mb,
                max_mb,
            )
        else:
            logger.info("noise bank off (noise_bank_max_mb=0): reading the noise records of %s", data_dir)
        return None
    start = time.perf_counter()
    bank = NoiseBank.read(data_dir, split, crop_samples)
    logger.info(
        "noise bank: %d files of the %r split of %s, %.0f MB in memory (read in %.1f s)",
        bank.num_files,
        split,
        data_dir,
        bank.nbytes / 1e6,
        time.perf_counter() - start,
    )
    return bank
