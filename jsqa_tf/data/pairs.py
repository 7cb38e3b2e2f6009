"""JND pair sampler: clean crops, noise excerpts and SNR pairs, as a tf.data pipeline.

Each batch is `(clean, noise, snr_db)`:
    clean   float32 [pairs, samples]  crops of different utterances (zero-padded if short)
    noise   float32 [pairs, samples]  excerpts of different noise files (looped if short,
                                      random offset; files flagged silent are skipped)
    snr_db  float32 [pairs, 2]        the two SNRs of each pair (see `PairConfig`)
The mixing itself (`jsqa_tf.mixing.mix_pair`) runs in the model's step on the accelerator.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from jsqa_tf.config import PairConfig
from jsqa_tf.data.pipeline import make_dataset


def sample_snr_pairs(
    num_pairs: int,
    seed: tf.Tensor,
    snr_range_db: tuple[float, float] = (-3.0, 9.0),
    snr_window_db: float = 6.0,
    snr_window_low_db: float | None = None,
) -> tf.Tensor:
    """[num_pairs, 2] SNRs in dB: per pair, a window placed in the range, two draws in it."""
    low, high = snr_range_db
    seeds = tf.random.split(tf.cast(seed, tf.int64), 2)
    if snr_window_low_db is None:
        window_low = (
            tf.random.stateless_uniform([num_pairs, 1], seeds[0], minval=low, maxval=high - snr_window_db)
            if high - low > snr_window_db
            else tf.fill([num_pairs, 1], float(low))
        )
    else:
        window_low = tf.fill([num_pairs, 1], float(snr_window_low_db))
    offsets = tf.random.stateless_uniform([num_pairs, 2], seeds[1], minval=0.0, maxval=snr_window_db)
    return window_low + offsets


def sample_snr_pairs_numpy(
    rng: np.random.Generator,
    num_pairs: int,
    snr_range_db: tuple[float, float] = (-3.0, 9.0),
    snr_window_db: float = 6.0,
    snr_window_low_db: float | None = None,
) -> np.ndarray:
    """The same distribution as `sample_snr_pairs`, in NumPy (for analysis and plots)."""
    low, high = snr_range_db
    if snr_window_low_db is None:
        window_low = rng.uniform(low, high - snr_window_db, size=(num_pairs, 1))
    else:
        window_low = np.full((num_pairs, 1), snr_window_low_db)
    return window_low + rng.uniform(0.0, snr_window_db, size=(num_pairs, 2))


def make_pair_dataset(config: PairConfig, *, with_ids: bool = False) -> tf.data.Dataset:
    """Endless batches of `(clean, noise, snr_db)`; with `with_ids`, a 4th element
    `{"clean_id": [pairs], "noise_id": [pairs]}` naming the source files."""
    keys = ("source_path",) if with_ids else ()
    common = dict(
        split=config.split,
        crop_samples=config.crop_samples,
        batch_size=config.pairs_per_batch,
        keys=keys,
        repeat=True,
    )
    clean = make_dataset(config.clean_dir, crop_mode="random", seed=config.seed, **common)
    noise = make_dataset(
        config.noise_dir, crop_mode="circular", skip_silent=True, seed=config.seed + 1, **common
    )
    counter = tf.data.Dataset.counter()

    def to_pairs(clean_batch, noise_batch, index):
        snr_db = sample_snr_pairs(
            config.pairs_per_batch,
            tf.stack([tf.constant(config.seed + 2, tf.int64), index]),
            tuple(config.snr_range_db),
            config.snr_window_db,
            config.snr_window_low_db,
        )
        pair = (clean_batch["audio"], noise_batch["audio"], snr_db)
        if with_ids:
            ids = {"clean_id": clean_batch["source_path"], "noise_id": noise_batch["source_path"]}
            return (*pair, ids)
        return pair

    dataset = tf.data.Dataset.zip((clean, noise, counter))
    return dataset.map(to_pairs, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
