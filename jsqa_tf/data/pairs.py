"""JND pair sampler: clean crops, noise excerpts and SNR pairs, as a tf.data pipeline.

Each batch is `(clean, noise, snr_db, num_valid_samples)`:
    clean              float32 [pairs, samples]  crops of different utterances (zero-padded
                                                 if short)
    noise              float32 [pairs, samples]  excerpts of different noise files (looped if
                                                 short, random offset; files flagged silent
                                                 are skipped), cut from the noise split held
                                                 in memory (`NoiseBank`) or, above
                                                 `noise_bank_max_mb`, read as records
    snr_db             float32 [pairs, 2]        the two SNRs of each pair (`jsqa_tf.data.snr`)
    num_valid_samples  int32   [pairs]           samples of each clean crop that are speech
The mixing itself (`jsqa_tf.mixing.mix_pair`, SNRs over the speech's real samples) runs in the
model's step on the accelerator.

With pair families (`PairSampling.families` other than additive alone; `jsqa_tf.data.families`)
each batch is `(clean_a, clean_b, noise, snr_db, num_valid_samples)`: the two views' speech
(codec rows from the codec bank, `jsqa_tf.data.codec_bank`; reverb and bandwidth rows rendered
here; additive rows with clean_b == clean_a), mixed in the step by `jsqa_tf.mixing.mix_views`.
A view without noise has the SNR +inf.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from jsqa_lite.memory import check_fits
from jsqa_tf import atomic
from jsqa_tf.audio import write_wav
from jsqa_tf.config import PairConfig, to_dict
from jsqa_tf.data import families
from jsqa_tf.data.families import triangular_abs_delta
from jsqa_tf.data.noise_bank import NoiseBank, load_noise_bank, noise_bank_mb
from jsqa_tf.data.pipeline import make_dataset, split_info
from jsqa_tf.errors import ConfigError, CorpusError
from jsqa_tf.plots import delta_snr_histogram_png, snr_distributions_png
from jsqa_tf.ranges import PAIR_FAMILIES

logger = logging.getLogger(__name__)


def sample_snr_pairs(
    num_pairs: int,
    seed: tf.Tensor,
    snr_range_db: tuple[float, float] = (-3.0, 9.0),
    snr_window_db: float = 6.0,
    snr_window_low_db: float | None = None,
    max_abs_delta_db: float | None = None,
    snr_placement: str = "uniform_window",
) -> tf.Tensor:
    """[num_pairs, 2] SNRs in dB, placed as `snr_placement` says (`jsqa_tf.data.snr`).

    "uniform_window": per pair, a window placed in the range, two draws in it. With
    `max_abs_delta_db` M, the two draws are those of the uncapped sampler conditioned on
    |ΔSNR| <= M, drawn directly: |ΔSNR| by the inverse CDF of its density, proportional to
    (window - d) on [0, M], then the pair's place in the window (uniform) and its order.
    "uniform_snr": `_uniform_snr_pairs`.
    """
    low, high = snr_range_db
    seeds = tf.random.split(tf.cast(seed, tf.int64), 2)
    if snr_placement == "uniform_snr":
        return _uniform_snr_pairs(num_pairs, seeds, low, high, snr_window_db, max_abs_delta_db)
    if snr_placement != "uniform_window":
        raise ConfigError(f"snr_placement must be 'uniform_window' or 'uniform_snr', not {snr_placement!r}")
    if snr_window_low_db is None:
        window_low = (
            tf.random.stateless_uniform([num_pairs, 1], seeds[0], minval=low, maxval=high - snr_window_db)
            if high - low > snr_window_db
            else tf.fill([num_pairs, 1], float(low))
        )
    else:
        window_low = tf.fill([num_pairs, 1], float(snr_window_low_db))
    if max_abs_delta_db is None:
        offsets = tf.random.stateless_uniform([num_pairs, 2], seeds[1], minval=0.0, maxval=snr_window_db)
    else:
        u = tf.random.stateless_uniform([num_pairs, 3], seeds[1])
        delta = triangular_abs_delta(u[:, 0], snr_window_db, max_abs_delta_db)
        width = float(snr_window_db)
        lower = u[:, 1] * (width - delta)
        upper = lower + delta
        lower_first = u[:, 2] < 0.5
        offsets = tf.stack([tf.where(lower_first, lower, upper), tf.where(lower_first, upper, lower)], axis=1)
    return window_low + offsets


def _uniform_snr_pairs(num_pairs, seeds, low, high, snr_window_db, max_abs_delta_db) -> tf.Tensor:
    """Pairs whose single SNRs are uniform over [low, high]: the first uniform, the second the
    first ± a |ΔSNR| from the window's density (capped as asked), reflected into the range at
    its edges. A uniform SNR plus an independent symmetric step, reflected, is uniform again
    (and the pair is exchangeable); the reflection only shortens |ΔSNR|, which never exceeds
    the window (<= the range's width, so one reflection suffices)."""
    first = tf.random.stateless_uniform([num_pairs], seeds[0], minval=low, maxval=high)
    u = tf.random.stateless_uniform([num_pairs, 2], seeds[1])
    delta = triangular_abs_delta(u[:, 0], snr_window_db, max_abs_delta_db)
    second = first + tf.where(u[:, 1] < 0.5, delta, -delta)
    second = tf.where(second > high, 2 * high - second, second)
    second = tf.where(second < low, 2 * low - second, second)
    return tf.stack([first, second], axis=1)


def clean_stream(
    config: PairConfig, seed: int | tf.Tensor, keys: tuple[str, ...] = (), *, batch_size: int | None = None
) -> tf.data.Dataset:
    """Endless batches of `batch_size` (default `pairs_per_batch`) clean crops, each batch
    from different utterances (when the split has that many): `make_dataset` random crops, up
    to `config.max_crops_per_file` non-overlapping crops of each utterance per epoch."""
    return make_dataset(
        config.clean_dir,
        config.split,
        crop_samples=config.crop_samples,
        crop_mode="random",
        batch_size=batch_size or config.pairs_per_batch,
        keys=keys,
        repeat=True,
        seed=seed,
        sample_rate=config.sample_rate,  # the rate the pairs are drawn at
        max_crops_per_file=config.max_crops_per_file,
    )


def noise_stream(
    config: PairConfig, seed: int | tf.Tensor, keys: tuple[str, ...] = (), *, bank: NoiseBank | None = None
) -> tf.data.Dataset:
    """Endless batches of noise excerpts, each batch from different noise files (when the
    split has that many): cut from `bank` (see `load_noise_bank`) or, without one, read as
    records, one whole file per excerpt (`make_dataset` circular crops)."""
    if bank is not None:
        return bank.dataset(config.pairs_per_batch, seed, keys)
    return make_dataset(
        config.noise_dir,
        config.split,
        crop_samples=config.crop_samples,
        crop_mode="circular",
        batch_size=config.pairs_per_batch,
        keys=keys,
        repeat=True,
        seed=seed,
        skip_silent=True,
        sample_rate=config.sample_rate,
    )


def make_pair_dataset(
    config: PairConfig, *, with_ids: bool = False, seed: int | tf.Tensor | None = None
) -> tf.data.Dataset:
    """Endless batches of `(clean, noise, snr_db, num_valid_samples)`; with `with_ids`, a 5th
    element `{"clean_id": [pairs], "noise_id": [pairs]}` naming the source files.

    With families other than additive alone (`PairSampling.families`), batches of
    `(clean_a, clean_b, noise, snr_db, num_valid_samples)` instead (`family_pairs`).

    `seed` (default `config.seed`) may be an int64 scalar tensor: pretraining derives one per
    epoch, so that a resumed run reads the same pairs as an uninterrupted one.

    The noise split is read into memory once (a `NoiseBank`) when it fits in
    `config.noise_bank_max_mb`; otherwise its records are read per excerpt (logged).
    """
    seed = config.seed if seed is None else seed
    keys = ("source_path",) if with_ids else ()
    bank = load_noise_bank(
        config.noise_dir,
        config.split,
        config.crop_samples,
        max_mb=config.noise_bank_max_mb,
        sample_rate=config.sample_rate,  # clean and noise at the rate the pairs are drawn at
    )
    if not config.additive_only:
        return family_pairs(config, seed, keys, bank)
    clean = clean_stream(config, seed, keys)
    noise = noise_stream(config, seed + 1, keys, bank=bank)
    counter = tf.data.Dataset.counter()

    def to_pairs(clean_batch, noise_batch, index):
        snr_db = _snr_pairs(config, config.pairs_per_batch, seed, index)
        pair = (clean_batch["audio"], noise_batch["audio"], snr_db, clean_batch["num_valid_samples"])
        if with_ids:
            ids = {"clean_id": clean_batch["source_path"], "noise_id": noise_batch["source_path"]}
            return (*pair, ids)
        return pair

    dataset = tf.data.Dataset.zip((clean, noise, counter))
    return dataset.map(to_pairs, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _snr_pairs(config: PairConfig, num_pairs: int, seed, index) -> tf.Tensor:
    """The additive pairs' SNRs of batch `index` (`sample_snr_pairs` of the config)."""
    return sample_snr_pairs(
        num_pairs,
        tf.stack([tf.cast(seed, tf.int64) + 2, index]),
        tuple(config.snr_range_db),
        config.snr_window_db,
        config.snr_window_low_db,
        config.max_abs_delta_db,
        config.snr_placement,
    )


NO_NOISE_DB = float("inf")
"""The SNR of a view without noise: the noise gain is 0 (`jsqa_tf.mixing`)."""


def _family_seed(seed, index, family: str) -> tf.Tensor:
    """The stateless seed of one family's draws in batch `index`."""
    base = tf.stack([tf.cast(seed, tf.int64), tf.cast(index, tf.int64)])
    return tf.random.experimental.stateless_fold_in(base, 101 + PAIR_FAMILIES.index(family))


def _noise_under(config: PairConfig, num_pairs: int, seed: tf.Tensor) -> tf.Tensor:
    """[num_pairs, 2] SNRs of non-additive pairs: one SNR from `snr_range_db` in both columns
    for a `noise_under_share` of them, +inf (no noise) for the others."""
    u = tf.random.stateless_uniform([num_pairs, 2], seed)
    low, high = config.snr_range_db
    snr = low + u[:, 0] * (high - low)
    snr = tf.where(u[:, 1] < config.noise_under_share, snr, NO_NOISE_DB)
    return tf.stack([snr, snr], axis=1)


def _render(config: PairConfig, family: str, clean: tf.Tensor, seed: tf.Tensor):
    """(clean_a, clean_b, degrees [pairs, 2 views, 2], abs_delta [pairs]) of a reverb or
    bandwidth family's crops (`jsqa_tf.data.families`)."""
    num_pairs = clean.shape[0]
    seeds = tf.random.experimental.stateless_split(seed, 3)
    if family == "reverb":
        low, high = config.reverb_levels
        levels = families.reverb_level_pairs(num_pairs, seeds[0], low, high, config.reverb_window)
        rooms = tf.random.stateless_uniform([num_pairs, 2], seeds[1])
        rt60_low, rt60_high = config.reverb_base_rt60_seconds
        drr_low, drr_high = config.reverb_base_drr_db
        responses = families.reverb_impulse_responses(
            levels,
            rt60_low + rooms[:, 0] * (rt60_high - rt60_low),
            drr_low + rooms[:, 1] * (drr_high - drr_low),
            seeds[2],
            config.crop_samples,
            config.sample_rate,
        )
        views = families.render_reverb(clean, responses)
        return views[:, 0], views[:, 1], levels, families.reverb_distance(levels)
    low, high = (float(np.log2(hz)) for hz in config.bandwidth_range_hz)
    octaves = families.uniform_pairs_1d(num_pairs, seeds[0], low, high, config.bandwidth_window_octaves)
    views = families.render_bandwidth(clean, tf.pow(2.0, octaves), config.sample_rate)
    degrees = tf.stack([tf.pow(2.0, octaves), tf.fill([num_pairs, 2], np.nan)], axis=-1)
    return views[:, 0], views[:, 1], degrees, tf.abs(octaves[:, 0] - octaves[:, 1])


def _codec_stream(config: PairConfig, seed, keys: tuple[str, ...], batch_size: int) -> tf.data.Dataset:
    """The codec family's pairs: the same crop at two rungs of the bank (`codec_pair_stream`)."""
    from jsqa_tf.data.codec_bank import codec_pair_stream

    return codec_pair_stream(
        config.codec_bank_dir,
        config.split,
        crop_samples=config.crop_samples,
        batch_size=batch_size,
        seed=seed,
        window_octaves=config.codec_window_octaves,
        keys=keys,
        sample_rate=config.sample_rate,
    )


def family_pairs(
    config: PairConfig, seed, keys: tuple[str, ...] = (), bank: NoiseBank | None = None
) -> tf.data.Dataset:
    """Endless batches of `(clean_a, clean_b, noise, snr_db, num_valid_samples)`, and with
    `keys` a 6th element: {"family", "degree_a", "degree_b" ([pairs, 2]: the degree, and the
    RT60 level of a reverb pair, NaN else), "abs_delta", "clean_id", "noise_id"}.

    Each batch holds `config.family_counts` pairs of each family, in `PAIR_FAMILIES` order:
    additive rows have clean_b == clean_a and two SNRs; codec rows come from the bank, reverb
    and bandwidth rows are rendered here from clean crops; the non-additive rows' SNRs are
    `_noise_under`'s. Every draw is stateless from (seed, batch index).
    """
    counts = config.family_counts
    num_codec = counts.get("codec", 0)
    num_clean = config.pairs_per_batch - num_codec
    streams = {
        "noise": noise_stream(config, seed + 1, keys, bank=bank),
        "index": tf.data.Dataset.counter(),
    }
    if num_clean:
        streams["clean"] = clean_stream(config, seed, keys, batch_size=num_clean)
    if num_codec:
        streams["codec"] = _codec_stream(config, tf.cast(seed, tf.int64) + 4, keys, num_codec)

    def to_pairs(batch):
        index, taken = batch["index"], 0
        parts = []  # per family: clean_a, clean_b, snr_db, num_valid, degrees, abs_delta, clean_id
        for family, count in counts.items():
            if count == 0:
                continue
            family_seed = _family_seed(seed, index, family)
            if family == "codec":
                codec = batch["codec"]
                bitrates = tf.stack([codec["bitrate_a_kbps"], codec["bitrate_b_kbps"]], axis=1)
                degrees = tf.stack([bitrates, tf.fill([count, 2], np.nan)], axis=-1)
                delta = tf.abs(tf.math.log(bitrates[:, 0] / bitrates[:, 1])) / np.log(2.0)
                part = [codec["audio_a"], codec["audio_b"], None, codec["num_valid_samples"], degrees, delta]
                part.append(codec.get("source_path"))
            else:
                clean = batch["clean"]
                rows = slice(taken, taken + count)
                crops, valid = clean["audio"][rows], clean["num_valid_samples"][rows]
                taken += count
                if family == "additive":
                    snr = _snr_pairs(config, count, seed, index)
                    degrees = tf.stack([snr, tf.fill([count, 2], np.nan)], axis=-1)
                    part = [crops, crops, snr, valid, degrees, tf.abs(snr[:, 0] - snr[:, 1])]
                else:
                    view_a, view_b, degrees, delta = _render(config, family, crops, family_seed)
                    part = [view_a, view_b, None, valid, degrees, delta]
                part.append(clean["source_path"][rows] if keys else None)
            if part[2] is None:
                part[2] = _noise_under(
                    config, count, tf.random.experimental.stateless_fold_in(family_seed, 7)
                )
            parts.append((family, count, part))
        columns = [tf.concat([part[i] for _, _, part in parts], axis=0) for i in range(6)]
        clean_a, clean_b, snr_db, num_valid, degrees, delta = columns
        pair = (clean_a, clean_b, batch["noise"]["audio"], snr_db, tf.cast(num_valid, tf.int32))
        if not keys:
            return pair
        ids = {
            "family": tf.constant([family for family, count, _ in parts for _ in range(count)]),
            "degree_a": degrees[:, 0],
            "degree_b": degrees[:, 1],
            "abs_delta": delta,
            "clean_id": tf.concat([part[6] for _, _, part in parts], axis=0),
            "noise_id": batch["noise"]["source_path"],
        }
        return (*pair, ids)

    dataset = tf.data.Dataset.zip(streams)
    return dataset.map(to_pairs, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


PAIR_BYTES = 80
"""Bytes a sample of one pair's crop costs at the peak of drawing pairs (the batch's crops,
excerpts and prefetched copies, the two mixtures and their NumPy copies), and
`RECORD_BYTES` a sample of the crop per clean record of a block (`make_dataset` cuts a block
of up to 1,024 records at once, each crop padded to the crop's length, two epochs and several
blocks in flight). Measured with `jsqa-tf pairs -n 2` (TF 2.21, 2-core EPYC, 2026-12-06):
peak RSS grows by 11.2 MB a second of crop with 8 pairs a batch and 6 clean records (894 MB
at 2 s, 2,217 MB at 120 s) and by 25.6 MB with 48 records (974 MB at 2 s, 3,996 MB at
120 s): 71 and 21.4 bytes; rounded up."""
RECORD_BYTES = 24
RENDER_BYTES = {"reverb": 120, "bandwidth": 80}
"""Bytes a sample of the crop that each reverb or bandwidth pair of a batch adds at the peak
(its FFTs and two rendered views, batches in flight). Measured with `jsqa-tf pairs -n 2
--no-audio --families F` at 2 s and 60 s crops on the demo corpus (8 pairs a batch, TF 2.21,
2-core Xeon, 2026-12-06): peak RSS grew by 16.6 MB a second of crop with additive pairs, 31.2
with reverb and 26.2 with bandwidth pairs: 114 and 75 bytes more a sample a pair; rounded up."""
BLOCK_RECORDS = 1024
"""The records `make_dataset` cuts at once (its `shuffle_buffer`)."""


def pairs_memory_bytes(config: PairConfig, *, batches: int = 1) -> float:
    """The memory drawing pairs of `config` adds at its peak: `batches` batches of crops (a
    training step holds one, its pipeline more), a block of clean records cut to the crop's
    length, and the noise bank when it is held (twice, as `jsqa_tf.data.noise_bank` measures,
    and twice again while it is read)."""
    records = min(
        split_info(config.clean_dir, config.split)["num_records"], BLOCK_RECORDS + config.pairs_per_batch
    )
    rendered = sum(RENDER_BYTES.get(family, 0) * count for family, count in config.family_counts.items())
    per_sample = (PAIR_BYTES * config.pairs_per_batch + rendered) * batches + RECORD_BYTES * records
    bank_mb = noise_bank_mb(config.noise_dir, config.split, config.crop_samples)
    return config.crop_samples * per_sample + (
        4 * bank_mb * 1e6 if bank_mb <= config.noise_bank_max_mb else 0.0
    )


def check_pairs_memory(
    config: PairConfig,
    *,
    batches: int = 1,
    names: tuple[str, str] = ("crop_seconds (--crop-seconds)", "pairs_per_batch"),
) -> None:
    """Refuses, before any work, crops and batches whose pairs would not fit in the memory
    available (`jsqa_lite.memory.check_fits`); `names` are the two settings as the command
    takes them."""
    crop, batch = names
    check_fits(
        pairs_memory_bytes(config, batches=batches),
        f"{crop.split()[0]} {config.crop_seconds:g} with {batch.split()[0]} {config.pairs_per_batch}",
        f"lower {crop} or {batch}",
    )


def crop_warnings(config: PairConfig) -> list[str]:
    """Warnings, in words, when the crops of `config` would be mostly zero padding (clean
    files shorter than the crop) or short noises looped many times; checks the sample rates.

    Raises:
        CorpusError: a folder is missing, incomplete, or prepared at another sample rate.
    """
    warnings = []
    for data_dir, what, effect in (
        (config.clean_dir, "speech", "zero-padded"),
        (config.noise_dir, "noise", "looped"),
    ):
        info = split_info(data_dir, config.split, config.sample_rate)
        lengths = info.get("file_seconds") or {}
        longest = lengths.get("max")
        median = lengths.get("median", info["total_seconds"] / max(1, info["num_records"]))
        crop = config.crop_seconds
        where = f"{os.path.abspath(data_dir)} ({config.split})"
        if longest is not None and longest < crop:
            warnings.append(
                f"crop_seconds {crop:g} is longer than every {what} file of {where} (longest "
                f"{longest:.2f} s): each crop is at least {int(100 * (1 - longest / crop))}% {effect}"
            )
        elif median < crop:
            warnings.append(
                f"crop_seconds {crop:g} is longer than most {what} files of {where} (median "
                f"{median:.2f} s): their crops are {effect}"
            )
    return warnings


PAIRS_CSV = "pairs.csv"
SUMMARY_JSON = "summary.json"
HISTOGRAM_PNG = "abs_delta_snr_histogram.png"
SNR_PNG = "snr_distributions.png"


def family_windows(config: PairConfig) -> dict[str, float]:
    """The widest |Δ| each family draws, in its unit (`families.UNITS`)."""
    additive = config.snr_window_db if config.max_abs_delta_db is None else config.max_abs_delta_db
    return {
        "additive": additive,
        "codec": config.codec_window_octaves,
        "reverb": config.reverb_window,
        "bandwidth": config.bandwidth_window_octaves,
    }


def _degree_text(family: str, degree) -> str:
    """A view's degree as pairs.csv writes it (`families.DEGREE_UNITS`)."""
    if family == "reverb":
        return f"{degree[0]:.2f}/{degree[1]:.2f}"
    return f"{degree[0]:.{ {'additive': 4, 'codec': 2, 'bandwidth': 1}[family] }f}"


def _snr_text(snr_db: float):
    """An SNR for pairs.csv: rounded, or "none" for a view without noise (+inf)."""
    return round(snr_db, 4) if np.isfinite(snr_db) else "none"


def _family_rows(config: PairConfig, batch) -> tuple[tuple, list[dict]]:
    """The mixing inputs of a batch `make_pair_dataset(with_ids=True)` yields, as (clean_a,
    clean_b, noise, snr_db, num_valid), and each pair's row of pairs.csv (without `pair` and
    the files)."""
    if config.additive_only:
        clean, noise, snr_db, num_valid, ids = batch
        clean_b, names = clean, ["additive"] * len(snr_db)
        degrees = np.stack([snr_db.numpy(), np.full(snr_db.shape, np.nan)], axis=-1)
        degree_a, degree_b, abs_delta = degrees[:, 0], degrees[:, 1], np.abs(snr_db[:, 0] - snr_db[:, 1])
    else:
        clean, clean_b, noise, snr_db, num_valid, ids = batch
        names = [name.decode() for name in ids["family"].numpy()]
        degree_a, degree_b, abs_delta = (ids[key].numpy() for key in ("degree_a", "degree_b", "abs_delta"))
    rows = []
    for i, family in enumerate(names):
        snr_a, snr_b = (float(v) for v in snr_db[i])
        noisy = bool(np.isfinite(snr_a))
        rows.append(
            {
                "clean_id": ids["clean_id"][i].numpy().decode(),
                "noise_id": ids["noise_id"][i].numpy().decode() if noisy else "",
                "snr_a_db": _snr_text(snr_a),
                "snr_b_db": _snr_text(snr_b),
                "abs_delta_db": round(abs(snr_a - snr_b), 4) if family == "additive" else "",
                "family": family,
                "degree_a": _degree_text(family, degree_a[i]),
                "degree_b": _degree_text(family, degree_b[i]),
                "unit": families.UNITS[family],
                "abs_delta": round(float(abs_delta[i]), 4),
            }
        )
    return (clean, clean_b, noise, snr_db, num_valid), rows


def family_summary(config: PairConfig, rows: list[dict], human_curves: dict | None = None) -> dict:
    """Per family drawn: its pairs, |Δ| (unit, window, mean, max, a 12-bin histogram over the
    window), the share of its pairs that carry noise, and with `human_curves` ({family: the
    fitted P(same | |Δ|) of CDPAM's listeners, or None where there are none}) the share the
    listeners would judge the same: the mean of P(same) over the pairs' |Δ|."""
    summary, windows = {}, family_windows(config)
    for family in config.family_counts:
        mine = [row for row in rows if row["family"] == family]
        if not mine:
            continue
        deltas = np.array([row["abs_delta"] for row in mine])
        counts, edges = np.histogram(deltas, bins=12, range=(0.0, windows[family]))
        summary[family] = {
            "count": len(mine),
            "unit": families.UNITS[family],
            "degree": families.DEGREE_UNITS[family],
            "window": windows[family],
            "mean_abs_delta": float(np.mean(deltas)),
            "max_abs_delta": float(np.max(deltas)),
            "histogram": {"edges": edges.round(4).tolist(), "counts": counts.tolist()},
            "share_with_noise": float(np.mean([row["noise_id"] != "" for row in mine])),
            "histogram_png": FAMILY_PNG.format(family=family),
        }
        if human_curves is not None:
            curve = human_curves.get(family)
            summary[family]["share_judged_same"] = (
                "no human data" if curve is None else float(np.mean(curve(deltas)))
            )
    return summary


FAMILY_PNG = "abs_delta_histogram_{family}.png"


def _write_png(path: str, image: bytes) -> None:
    with atomic.atomic_path(path) as temp_path:
        with open(temp_path, "wb") as stream:
            stream.write(image)


def write_pairs(
    config: PairConfig,
    output_dir: str | os.PathLike,
    num_pairs: int,
    *,
    write_audio: bool = True,
    tensorboard_dir: str | os.PathLike | None = None,
    on_progress: Callable[[int], None] | None = None,
    human_curves: dict | None = None,
) -> dict:
    """Draws `num_pairs` JND pairs and writes them; returns the summary. With `human_curves`
    (`jsqa_tf.jnd_curve.family_curves` of CDPAM's list) each family's summary says the share
    of its pairs that listeners would judge the same (`family_summary`).

    Writes `audio/pair_<n>_{a,b}.wav` (16-bit; one peak scale per pair, so only the pair's
    degree differs between a and b), `pairs.csv` (pair, clean_id, noise_id, snr_a_db,
    snr_b_db, abs_delta_db, file_a, file_b, family, degree_a, degree_b, unit, abs_delta; an
    SNR of a view without noise is "none"), `summary.json` (per family: |Δ| and its
    histogram, `family_summary`; for additive pairs also mean |ΔSNR|, histograms of |ΔSNR|
    and of single SNRs), a |Δ| histogram PNG per family, and for additive pairs the |ΔSNR|
    histogram PNG and `snr_distributions.png` (single SNRs and |ΔSNR| against the densities
    `snr_placement` implies).
    A folder that already holds `pairs.csv` is refused.
    """
    from jsqa_tf.mixing import mix_views
    from jsqa_tf.plots import family_delta_histogram_png

    output_dir = os.path.abspath(os.fspath(output_dir))
    if os.path.exists(os.path.join(output_dir, PAIRS_CSV)):
        raise CorpusError(output_dir, f"already holds {PAIRS_CSV}; choose another folder")
    if num_pairs < 1:
        raise ConfigError(f"num_pairs must be >= 1, got {num_pairs}")
    atomic.check_writable(output_dir)
    check_pairs_memory(config)
    for warning in crop_warnings(config):
        logger.warning(warning)
    rows, first_batch = [], None
    for batch in make_pair_dataset(config, with_ids=True):
        inputs, batch_rows = _family_rows(config, batch)
        clean, clean_b, noise, snr_db, num_valid = inputs
        if write_audio:
            views = mix_views(
                clean, clean_b, noise, snr_db, num_valid_samples=num_valid, prevent_clipping=True
            )
            view_a, view_b = (np.asarray(v) for v in views)
        taken = min(len(batch_rows), num_pairs - len(rows))
        for i, row in enumerate(batch_rows[:taken]):
            n = len(rows)
            row = {"pair": n, **row, "file_a": "", "file_b": ""}
            if write_audio:
                for view, samples in (("a", view_a[i]), ("b", view_b[i])):
                    name = f"audio/pair_{n:05d}_{view}.wav"
                    write_wav(os.path.join(output_dir, name), samples, config.sample_rate)
                    row[f"file_{view}"] = name
            rows.append(row)
        first_batch = first_batch or inputs
        if on_progress:
            on_progress(taken)
        if len(rows) >= num_pairs:
            break

    summary = {"num_pairs": len(rows), "families": family_summary(config, rows, human_curves)}
    additive = [row for row in rows if row["family"] == "additive"]
    if additive:
        summary |= _additive_summary(config, additive, output_dir)
    summary |= {"audio": write_audio, "config": to_dict(config)}
    for family, block in summary["families"].items():
        deltas = np.array([row["abs_delta"] for row in rows if row["family"] == family])
        image = family_delta_histogram_png(deltas, block["window"], family, block["unit"])
        _write_png(os.path.join(output_dir, block["histogram_png"]), image)
    columns = ["pair", "clean_id", "noise_id", "snr_a_db", "snr_b_db", "abs_delta_db", "file_a", "file_b"]
    columns += ["family", "degree_a", "degree_b", "unit", "abs_delta"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_json(os.path.join(output_dir, SUMMARY_JSON), summary)
    atomic.write_text(os.path.join(output_dir, PAIRS_CSV), buffer.getvalue())  # last: complete
    if tensorboard_dir is not None:
        from jsqa_tf.tensorboard import log_pairs

        writer = tf.summary.create_file_writer(os.fspath(tensorboard_dir))
        clean, clean_b, noise, snr_db, num_valid = first_batch
        log_pairs(
            writer,
            clean,
            noise,
            snr_db,
            num_valid_samples=num_valid,
            clean_b=clean_b,
            step=0,
            snr_window_db=config.snr_window_db,
            max_abs_delta_db=config.max_abs_delta_db,
            snr_placement=config.snr_placement,
            snr_range_db=config.snr_range_db,
            all_abs_delta_db=np.array([row["abs_delta_db"] for row in additive]),
        )
    return summary


def _additive_summary(config: PairConfig, rows: list[dict], output_dir: str) -> dict:
    """The additive pairs' |ΔSNR| and single SNRs (summary keys), and their two PNGs."""
    deltas = np.array([row["abs_delta_db"] for row in rows])
    counts, edges = np.histogram(deltas, bins=12, range=(0.0, config.snr_window_db))
    snrs = np.array([[row["snr_a_db"], row["snr_b_db"]] for row in rows])
    snr_counts, snr_edges = np.histogram(snrs, bins=12, range=tuple(config.snr_range_db))
    png = delta_snr_histogram_png(
        deltas,
        config.snr_window_db,
        max_abs_delta_db=config.max_abs_delta_db,
        snr_placement=config.snr_placement,
        snr_range_db=config.snr_range_db,
    )
    _write_png(os.path.join(output_dir, HISTOGRAM_PNG), png)
    _write_png(os.path.join(output_dir, SNR_PNG), snr_distributions_png(snrs, config))
    return {
        "snr_placement": config.snr_placement,
        "mean_abs_delta_db": float(np.mean(deltas)),
        "expected_mean_abs_delta_db": config.expected_mean_abs_delta_db,
        "max_abs_delta_db": float(np.max(deltas)),
        "histogram": {"edges_db": edges.round(3).tolist(), "counts": counts.tolist()},
        "share_snr_below_0_db": float(np.mean(snrs < 0)),
        "snr_histogram": {"edges_db": snr_edges.round(3).tolist(), "counts": snr_counts.tolist()},
    }
