"""The codec bank: a prepared clean folder's utterances rendered at a ladder of bitrates.

`render_codec_bank(clean_dir, bank_dir, ...)` (`jsqa-tf prepare codec-bank`) encodes every
utterance of each split with MP3 (libsndfile's MPEG-1/2 Layer III through soundfile, constant
bit rate) at each rung of a ladder, decodes it again and stores the decoded int16 PCM:

    manifest.json                   the ladder (nominal and measured kbps per rung), splits,
                                    shards with their sizes and SHA-256s (written last)
    train-00000-of-00002.tfrecord   one `tf.train.Example` per utterance (below)
    val-00000-of-00001.tfrecord     for each split the clean folder has (or those asked for)

Each record: `audio` (bytes) the utterance's decoded int16 PCM at every rung, rung after rung,
each exactly `num_samples` long (the decoder's output from the codec's delay on, cut or
zero-padded to the clean length, so that the rungs are time-aligned with each other and with
the clean file: libsndfile removes LAME's delay itself at some rates only, so
`probe_mp3_ladder` measures it per rung), `num_samples` (int64), `num_rungs` (int64) and
`source_path` (bytes, as in the clean folder).

Why decoded PCM and not the encoded bytes (measured 2026-12-06, 2-core Xeon, libsndfile
1.2.2): decoding a 4 s MP3 costs ~1.2-1.5 ms and encoding ~20-28 ms; a stream of 4 s crop pairs
read from records holding each utterance at 8 rungs gave 867 pairs/s with PCM (two slices of
the bytes, pure TensorFlow ops) against 334 pairs/s with the MP3 bytes decoded by
`tf.numpy_function` (seek + decode of the crop only, which also glitches: a seek lands without
the frame's bit reservoir). PCM costs 115 MB an hour of speech per rung on disk (16 kHz int16),
the MP3 bytes ~4x less. See docs/data.md, "Codec bank".

`codec_pair_stream(bank_dir, split, ...)` reads it: endless batches of the same crop of one
utterance at two rungs whose measured bitrates differ by at most `window_octaves`.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import logging
import math
import os
from collections.abc import Callable

import numpy as np

import jsqa_tf
from jsqa_tf import atomic
from jsqa_tf.data.integrity import check_size, file_digest, remember_opened
from jsqa_tf.data.manifest import FORMAT_VERSION, MANIFEST_NAME, load_manifest
from jsqa_tf.errors import ConfigError, CorpusError
from jsqa_tf.processes import run_each

logger = logging.getLogger(__name__)

BANK_KIND = "codec_bank"
"""`manifest.json`'s "kind" for a codec bank (a clean folder has none)."""
BANK_VERSION = 1
CODECS = ("mp3",)

MP3_RATES_KBPS = {
    # The constant bitrates MPEG Layer III allows, by the stream's sampling frequency (LAME
    # encodes at the input rate: libsndfile sets no resampling).
    "mpeg1": (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),  # 32-48 kHz
    "mpeg2": (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),  # 16-24 kHz
    "mpeg2.5": (8, 16, 24, 32, 40, 48, 56, 64),  # 8-12 kHz
}
DEFAULT_BITRATES_KBPS = (8, 16, 24, 32, 48, 64, 96, 160)
"""The default ladder at 16 kHz: 8 rungs from the lowest to the highest MPEG-2 rate, 4.3
octaves, about half an octave apart (CDPAM's listeners judged half the mp3 pairs the same at
a 3.2-octave step)."""


def mp3_rates_kbps(sample_rate: int) -> tuple[int, ...]:
    """The constant bitrates MP3 allows at `sample_rate` (Hz)."""
    if sample_rate >= 32000:
        return MP3_RATES_KBPS["mpeg1"]
    if sample_rate >= 16000:
        return MP3_RATES_KBPS["mpeg2"]
    return MP3_RATES_KBPS["mpeg2.5"]


def mp3_compression_level(bitrate_kbps: int, sample_rate: int) -> float:
    """soundfile's `compression_level` that makes libsndfile 1.2 ask LAME for `bitrate_kbps`
    (constant bit rate). libsndfile maps the level linearly from the highest rate of the
    stream's MPEG version (0.0) to its lowest (1.0, refused: levels stop at 0.99) and LAME takes
    the nearest allowed rate (checked at 8, 16, 22.05 and 32 kHz). Every rung's bitrate is
    measured from the encoded bytes, and `probe_mp3_ladder` refuses a rung whose measured rate
    is nearer another allowed rate than its nominal one."""
    rates = mp3_rates_kbps(sample_rate)
    level = (rates[-1] - bitrate_kbps) / (rates[-1] - rates[0])
    return float(min(max(level, 0.0), 0.99))


def encode_mp3(pcm: np.ndarray, sample_rate: int, bitrate_kbps: int) -> bytes:
    """int16 mono samples -> MP3 bytes at a constant `bitrate_kbps`."""
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(
        buffer,
        pcm,
        sample_rate,
        format="MP3",
        subtype="MPEG_LAYER_III",
        compression_level=mp3_compression_level(bitrate_kbps, sample_rate),
        bitrate_mode="CONSTANT",
    )
    return buffer.getvalue()


def decode_to_length(encoded: bytes, num_samples: int, delay_samples: int = 0) -> np.ndarray:
    """Encoded audio -> int16 mono samples from `delay_samples` on (the codec's delay that the
    decoder left in), cut or zero-padded to `num_samples`."""
    import soundfile

    decoded, _ = soundfile.read(io.BytesIO(encoded), dtype="int16", always_2d=True)
    decoded = decoded[delay_samples : delay_samples + num_samples, 0]
    if decoded.shape[0] < num_samples:
        decoded = np.pad(decoded, (0, num_samples - decoded.shape[0]))
    return np.ascontiguousarray(decoded, dtype=np.int16)


MAX_DELAY_SAMPLES = 4096
"""The longest codec delay looked for (LAME's is 1,105 samples)."""


def probe_mp3_ladder(bitrates_kbps, sample_rate: int, probe_seconds: float = 8.0) -> list[dict]:
    """Encodes and decodes `probe_seconds` of noise at each rung: the bitrate measured from the
    bytes, checked to be nearest the nominal one among the allowed rates (frame headers add
    ~3% at 8 s; a sub-second utterance adds far more, so the check does not use the corpus),
    and the delay the decoder leaves in, where the cross-correlation with the input peaks.
    libsndfile removes LAME's 1,105-sample delay when the stream carries its gapless tag, and
    at 16 kHz it does not for 8-32 kbps (measured): the delay is measured, not assumed.

    Returns:
        [{"probe_kbps", "delay_samples"}] per rung.

    Raises:
        ConfigError: this libsndfile gives another bitrate than the nominal one.
    """
    import soundfile
    from scipy.signal import correlate

    allowed = np.array(mp3_rates_kbps(sample_rate), float)
    noise = np.random.default_rng(0).normal(0, 3000, int(probe_seconds * sample_rate))
    pcm = np.clip(noise, -32768, 32767).astype(np.int16)
    probes = []
    for nominal in bitrates_kbps:
        encoded = encode_mp3(pcm, sample_rate, nominal)
        kbps = len(encoded) * 8 / probe_seconds / 1000
        nearest = allowed[np.argmin(np.abs(np.log(allowed / kbps)))]
        if nearest != nominal:
            raise ConfigError(
                f"--bitrates {nominal}: this libsndfile encodes MP3 at {kbps:.1f} kbps when asked for "
                f"{nominal} kbps at {sample_rate} Hz (compression_level "
                f"{mp3_compression_level(nominal, sample_rate):.3f}); no bank was written"
            )
        decoded = soundfile.read(io.BytesIO(encoded), dtype="float64", always_2d=True)[0][:, 0]
        decoded = np.pad(decoded, (0, max(0, len(pcm) + MAX_DELAY_SAMPLES - len(decoded))))
        score = correlate(decoded[: len(pcm) + MAX_DELAY_SAMPLES], pcm.astype(np.float64), "valid", "fft")
        probes.append(
            {"probe_kbps": round(kbps, 3), "delay_samples": int(np.argmax(score[: MAX_DELAY_SAMPLES + 1]))}
        )
    return probes


def parse_bitrates(text: str | None) -> tuple[int, ...]:
    """'8,16,32' -> (8, 16, 32); None -> the default ladder."""
    if text is None:
        return DEFAULT_BITRATES_KBPS
    try:
        values = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise ConfigError(f"--bitrates must be whole kbps separated by commas, e.g. 8,16,32; got {text!r}")
    return values


@dataclasses.dataclass(frozen=True)
class _ShardJob:
    split: str
    index: int
    num_shards: int
    clean_path: str
    max_seconds: float | None  # stop after this much audio (the last shard under --max-hours)

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:05d}-of-{self.num_shards:05d}"


def _render_shard(
    job: _ShardJob, bank_dir: str, sample_rate: int, bitrates_kbps: tuple[int, ...], delays: tuple[int, ...]
) -> dict:
    """Renders one clean shard at every rung and writes it atomically; returns its statistics.

    Runs in a worker process."""
    import tensorflow as tf

    spec = {
        "audio": tf.io.FixedLenFeature([], tf.string),
        "num_samples": tf.io.FixedLenFeature([], tf.int64),
        "source_path": tf.io.FixedLenFeature([], tf.string),
    }
    path = os.path.join(bank_dir, f"{job.name}.tfrecord")
    stats = {
        "name": job.name,
        "num_records": 0,
        "num_samples": 0,
        "encoded_bytes": [0] * len(bitrates_kbps),
    }
    try:
        with atomic.atomic_path(path) as temp_path:
            with tf.io.TFRecordWriter(temp_path) as writer:
                for serialized in tf.data.TFRecordDataset(job.clean_path):
                    if job.max_seconds is not None and stats["num_samples"] >= job.max_seconds * sample_rate:
                        break
                    example = tf.io.parse_single_example(serialized, spec)
                    count = int(example["num_samples"])
                    if count == 0:
                        continue
                    pcm = np.frombuffer(example["audio"].numpy(), dtype="<i2")
                    rungs = []
                    for rung, bitrate in enumerate(bitrates_kbps):
                        encoded = encode_mp3(pcm, sample_rate, bitrate)
                        stats["encoded_bytes"][rung] += len(encoded)
                        rungs.append(decode_to_length(encoded, count, delays[rung]))
                    features = {
                        "audio": _bytes(np.concatenate(rungs).astype("<i2").tobytes()),
                        "num_samples": _int(count),
                        "num_rungs": _int(len(bitrates_kbps)),
                        "source_path": _bytes(example["source_path"].numpy()),
                    }
                    record = tf.train.Example(features=tf.train.Features(feature=features))
                    writer.write(record.SerializeToString(deterministic=True))
                    stats["num_records"] += 1
                    stats["num_samples"] += count
            stats["seconds"] = stats["num_samples"] / sample_rate
            stats.update(file_digest(temp_path))
    except (OSError, tf.errors.OpError) as error:
        reason = error.strerror if isinstance(error, OSError) else error.message.strip().splitlines()[0]
        raise CorpusError(path, f"cannot be written ({reason}); is the disk full? Free some space")
    return stats


def _bytes(value: bytes):
    import tensorflow as tf

    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int(value: int):
    import tensorflow as tf

    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def _check_bank_dir(bank_dir: str) -> None:
    if os.path.exists(os.path.join(bank_dir, MANIFEST_NAME)):
        raise CorpusError(bank_dir, "already holds a bank (manifest.json); choose another folder")
    if os.path.isdir(bank_dir) and any(not name.startswith(".") for name in os.listdir(bank_dir)):
        raise CorpusError(bank_dir, "is not empty; a codec bank is written into a new or empty folder")


def render_codec_bank(
    clean_dir: str | os.PathLike,
    bank_dir: str | os.PathLike,
    *,
    codec: str = "mp3",
    bitrates_kbps: tuple[int, ...] = DEFAULT_BITRATES_KBPS,
    max_hours: float | None = None,
    splits: tuple[str, ...] = (),
    num_workers: int = 2,
    on_start: Callable[[float, int], None] | None = None,
    on_shard: Callable[[dict], None] | None = None,
) -> dict:
    """Renders a prepared clean folder at a ladder of bitrates; returns the bank's manifest.

    Args:
        clean_dir: a folder written by `jsqa-tf prepare` (speech).
        bank_dir: a new or empty folder.
        codec: "mp3".
        bitrates_kbps: the ladder's nominal constant bitrates (each one the codec allows at
            the clean folder's sample rate).
        max_hours: at most this much audio of each split (whole utterances, in shard order).
        splits: the splits to render (default: every split of the clean folder).
        num_workers: rendering processes (0: in this process).
        on_start: called with (seconds of audio to render, number of shards).
        on_shard: called with each shard's statistics as it completes.

    Raises:
        CorpusError: the clean folder is not usable or the bank folder is not new.
        ConfigError: a setting is not valid (codec, ladder, max_hours, split).
    """
    clean_dir = os.path.abspath(os.fspath(clean_dir))
    bank_dir = os.path.abspath(os.fspath(bank_dir))
    if codec not in CODECS:
        raise ConfigError(f"--codec must be one of {', '.join(CODECS)}, not {codec!r}")
    manifest = load_manifest(clean_dir)
    if manifest.get("kind") == BANK_KIND:
        raise CorpusError(clean_dir, "is a codec bank, not a prepared clean folder")
    sample_rate = int(manifest["sample_rate"])
    allowed = mp3_rates_kbps(sample_rate)
    wrong = [rate for rate in bitrates_kbps if rate not in allowed]
    if wrong or len(bitrates_kbps) < 2:
        raise ConfigError(
            f"--bitrates: MP3 at {sample_rate} Hz takes two or more of {', '.join(map(str, allowed))} "
            f"kbps; got {', '.join(map(str, bitrates_kbps)) or 'none'}"
        )
    if max_hours is not None and not max_hours > 0:
        raise ConfigError(f"--max-hours must be > 0, got {max_hours}")
    splits = tuple(splits) or tuple(manifest["splits"])
    missing = [split for split in splits if split not in manifest["splits"]]
    if missing:
        raise CorpusError(clean_dir, f"has no {missing[0]!r} split; it has {', '.join(manifest['splits'])}")
    probes = probe_mp3_ladder(bitrates_kbps, sample_rate)
    delays = tuple(probe["delay_samples"] for probe in probes)
    _check_bank_dir(bank_dir)
    atomic.check_writable(os.path.join(bank_dir, MANIFEST_NAME))
    os.makedirs(bank_dir, exist_ok=True)

    jobs, planned = [], 0.0
    for split in splits:
        entries = manifest["splits"][split]["shards"]
        chosen, left = [], None if max_hours is None else max_hours * 3600.0
        for entry in entries:
            if left is not None and left <= 0:
                break
            path = os.path.join(clean_dir, entry["file"])
            check_size(path, entry)
            seconds = float(entry.get("seconds", 0.0))
            cap = None if left is None or seconds <= left else left
            chosen.append((path, cap))
            planned += seconds if cap is None else cap
            if left is not None:
                left -= seconds
        jobs += [_ShardJob(split, i, len(chosen), path, cap) for i, (path, cap) in enumerate(chosen)]
    if on_start:
        on_start(planned, len(jobs))

    stats = {}

    def finished(result: dict) -> None:
        stats[result["name"]] = result
        if on_shard:
            on_shard(result)

    args = (bank_dir, sample_rate, tuple(bitrates_kbps), delays)
    run_each(_render_shard, jobs, args, num_workers, finished)

    bank = _bank_manifest(
        clean_dir, manifest, codec, sample_rate, bitrates_kbps, jobs, stats, max_hours, probes
    )
    atomic.write_json(os.path.join(bank_dir, MANIFEST_NAME), bank)
    return bank


def _bank_manifest(
    clean_dir, clean, codec, sample_rate, bitrates_kbps, jobs, stats, max_hours, probes
) -> dict:
    total_seconds = sum(s["seconds"] for s in stats.values())
    rungs = []
    for rung, nominal in enumerate(bitrates_kbps):
        encoded = sum(s["encoded_bytes"][rung] for s in stats.values())
        measured = encoded * 8 / total_seconds / 1000 if total_seconds else math.nan
        rungs.append(
            {
                "nominal_kbps": nominal,
                "measured_kbps": round(measured, 3),
                "compression_level": round(mp3_compression_level(nominal, sample_rate), 4),
                **probes[rung],
            }
        )
    splits = {}
    for split in dict.fromkeys(job.split for job in jobs):
        entries = [
            {
                "file": f"{job.name}.tfrecord",
                "num_records": stats[job.name]["num_records"],
                "seconds": round(stats[job.name]["seconds"], 3),
                "num_bytes": stats[job.name]["num_bytes"],
                "sha256": stats[job.name]["sha256"],
            }
            for job in jobs
            if job.split == split
        ]
        splits[split] = {
            "num_records": sum(e["num_records"] for e in entries),
            "total_seconds": round(sum(e["seconds"] for e in entries), 3),
            "shards": entries,
        }
    num_bytes = sum(s["num_bytes"] for s in stats.values())
    return {
        "tool": "jsqa-tf",
        "version": jsqa_tf.__version__,
        "format_version": FORMAT_VERSION,  # the shard/manifest layout `jsqa-tf check` reads
        "kind": BANK_KIND,
        "bank_version": BANK_VERSION,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "codec": codec,
        "stored_form": "decoded int16 PCM, every rung of an utterance in one record",
        "sample_rate": sample_rate,
        "clean_dir": clean_dir,
        "synthetic_demo": bool(clean.get("synthetic_demo", False)),
        "max_hours": max_hours,
        "rungs": rungs,
        "splits": splits,
        "num_records": sum(split["num_records"] for split in splits.values()),
        "total_seconds": round(total_seconds, 3),
        "num_bytes": num_bytes,
        "mb_per_hour": round(num_bytes / 1e6 / (total_seconds / 3600), 1) if total_seconds else None,
    }


def load_bank(
    bank_dir: str | os.PathLike, split: str, sample_rate: int | None = None
) -> tuple[dict, list[str]]:
    """(the bank's manifest, the split's shard files), each shard checked to exist with its
    recorded size; with `sample_rate`, the bank checked to hold audio at that rate.

    Raises:
        CorpusError: not a codec bank, no such split, another sample rate, a damaged shard.
    """
    bank_dir = os.path.abspath(os.fspath(bank_dir))
    manifest = load_manifest(bank_dir)
    if manifest.get("kind") != BANK_KIND:
        raise CorpusError(
            bank_dir,
            "is not a codec bank (no kind 'codec_bank' in manifest.json): "
            "write one with `jsqa-tf prepare codec-bank`",
        )
    if manifest.get("bank_version") != BANK_VERSION:
        raise CorpusError(
            bank_dir,
            f"codec bank version {manifest.get('bank_version')}, this jsqa-tf reads "
            f"{BANK_VERSION}: render the bank again",
        )
    if split not in manifest["splits"]:
        raise CorpusError(bank_dir, f"has no {split!r} split; it has {', '.join(manifest['splits'])}")
    if sample_rate is not None and manifest["sample_rate"] != sample_rate:
        raise CorpusError(
            bank_dir,
            f"codec bank rendered at {manifest['sample_rate']} Hz, but {sample_rate} Hz audio is needed "
            "here: render it again from a clean folder prepared at that rate",
        )
    entries = manifest["splits"][split]["shards"]
    paths = [os.path.join(bank_dir, entry["file"]) for entry in entries]
    for path, entry in zip(paths, entries, strict=True):
        check_size(path, entry)
    if not sum(entry["num_records"] for entry in entries):
        raise CorpusError(bank_dir, f"the {split!r} split of the codec bank holds no utterance")
    remember_opened(paths)
    return manifest, paths


def rung_pairs(bitrates_kbps, window_octaves: float) -> list[tuple[int, int]]:
    """The unordered pairs (i < j) of distinct rungs whose bitrates differ by at most
    `window_octaves` (|log2(b_i / b_j)|)."""
    rates = [float(rate) for rate in bitrates_kbps]
    return [
        (i, j)
        for i in range(len(rates))
        for j in range(i + 1, len(rates))
        if abs(math.log2(rates[i] / rates[j])) <= window_octaves + 1e-9
    ]


STREAM_KEYS = ("source_path",)


def _scalar_seed(key):
    """An int64 scalar drawn from a stateless key (what `_block_shuffle` takes)."""
    import tensorflow as tf

    return tf.random.stateless_uniform([], key, minval=None, maxval=None, dtype=tf.int64)


def codec_pair_stream(
    bank_dir: str | os.PathLike,
    split: str,
    *,
    crop_samples: int,
    batch_size: int,
    seed: int,
    window_octaves: float,
    keys: tuple[str, ...] = (),
    sample_rate: int | None = None,
    shuffle_buffer: int = 0,
    pair_buffer: int = 512,
    max_crops_per_record: int | None = None,
):
    """Endless batches of codec pairs from a bank, as a `tf.data.Dataset` of dicts:

        audio_a, audio_b  float32 [batch, crop_samples]  the same crop of one utterance at two
                                                          rungs (zero-padded past its end)
        num_valid_samples int32   [batch]                samples of the crop from the utterance
        bitrate_a_kbps, bitrate_b_kbps  float32 [batch]  the two rungs' measured bitrates
        source_path       string  [batch]                with keys=("source_path",)

    The two rungs of a pair are distinct and their measured bitrates differ by at most
    `window_octaves` (|log2(a / b)|): a pair of rungs drawn uniformly among those allowed, in
    a random order. Reading a record costs most of a pair (it holds every rung of the whole
    utterance), so each record read gives as many non-overlapping crops as fit (at least one,
    at most `max_crops_per_record`), each with its own rung pair, from a random start.
    Order: a shuffled shard order per epoch, 8 shards interleaved (`prepare` already shuffled
    the utterances into its shards), then the pairs permuted in blocks of `pair_buffer` (which
    spreads one utterance's crops apart; two can still share a batch, rarely). Records are not
    permuted themselves unless `shuffle_buffer` > 0: a permuted block of records copies every
    record twice more, and measured (2-core Xeon, 10 min bank, 8 rungs) 64-record blocks
    slowed the stream from ~1,850 to ~1,030 pairs/s. Every draw is stateless, keyed on (seed,
    epoch, block or record): the same seed gives the same batches, also when `seed` is a tensor
    under a global TensorFlow seed (as pretraining sets it), where `Dataset.shuffle` cannot
    take it. Memory: a block of pairs, int16 until the batch is converted (512 pairs of 4 s:
    ~130 MB, twice while it is permuted). Everything on the path is TensorFlow ops: a record
    is parsed once, only its crops' bytes at the two rungs are cut, and each batch is converted
    to float at once.

    Args:
        bank_dir: a folder written by `render_codec_bank`.
        split: "train" or "val" (one the bank has).
        crop_samples: samples of each crop.
        batch_size: pairs per batch.
        seed: the stream's seed (an int or an int64 scalar tensor).
        window_octaves: the largest bitrate difference of a pair, in octaves.
        keys: extra features, of `STREAM_KEYS`.
        sample_rate: when given, a bank at another rate is refused.
        shuffle_buffer: records permuted together (0: none).
        pair_buffer: pairs permuted together after the crops are cut.
        max_crops_per_record: at most this many crops (pairs) a record read (None: as many
            as fit).

    Raises:
        CorpusError: see `load_bank`.
        ConfigError: no two rungs within the window, an unknown key, a bad size.
    """
    import tensorflow as tf

    from jsqa_tf.data.pipeline import _block_shuffle
    from jsqa_tf.data.tfrecords import pcm_to_float

    unknown = sorted(set(keys) - set(STREAM_KEYS))
    if unknown:
        raise ConfigError(f"a codec bank holds no feature(s) {unknown}; it has {', '.join(STREAM_KEYS)}")
    if crop_samples < 1 or batch_size < 1:
        raise ConfigError(f"crop_samples and batch_size must be >= 1, got {crop_samples}, {batch_size}")
    manifest, paths = load_bank(bank_dir, split, sample_rate)
    measured = [rung["measured_kbps"] for rung in manifest["rungs"]]
    pairs = rung_pairs(measured, window_octaves)
    if not pairs:
        ladder = ", ".join(f"{rate:g}" for rate in measured)
        raise ConfigError(
            f"codec window_octaves {window_octaves:g}: no two rungs of the bank {os.path.abspath(bank_dir)} "
            f"are that close (measured kbps {ladder})"
        )
    num_rungs = len(measured)
    pair_table = tf.constant(pairs, tf.int64)
    rates = tf.constant(measured, tf.float32)
    spec = {
        "audio": tf.io.FixedLenFeature([], tf.string),
        "num_samples": tf.io.FixedLenFeature([], tf.int64),
        "num_rungs": tf.io.FixedLenFeature([], tf.int64),
    }
    if "source_path" in keys:
        spec["source_path"] = tf.io.FixedLenFeature([], tf.string)
    seed = tf.cast(seed, tf.int64)
    key = tf.stack([seed, tf.constant(0x636F646563, tf.int64)])  # "codec"
    fold_in = tf.random.experimental.stateless_fold_in
    files = tf.constant(paths)
    cycle = min(len(paths), 8)

    def one_epoch(epoch):
        epoch_key = fold_in(key, epoch)
        order = tf.random.experimental.stateless_shuffle(files, fold_in(epoch_key, 0))
        records = tf.data.Dataset.from_tensor_slices(order).interleave(
            tf.data.TFRecordDataset,
            cycle_length=cycle,
            block_length=1,
            num_parallel_calls=cycle,
            deterministic=True,
        )
        if not shuffle_buffer:
            return records
        return _block_shuffle(records, shuffle_buffer, _scalar_seed(fold_in(epoch_key, 1)))

    def to_pairs(index, serialized):  # one record -> its crops, each a pair
        example = tf.io.parse_single_example(serialized, spec)
        check = tf.debugging.assert_equal(
            example["num_rungs"],
            tf.constant(num_rungs, tf.int64),
            message=f"a record's rungs differ from {os.path.abspath(bank_dir)}/manifest.json",
        )
        count = example["num_samples"]
        valid = tf.minimum(count, crop_samples)
        crops = tf.maximum(count // crop_samples, 1)
        if max_crops_per_record is not None:
            crops = tf.minimum(crops, max_crops_per_record)
        draws = tf.random.stateless_uniform(
            [crops + 1, 2], fold_in(key, index + (1 << 40)), minval=None, maxval=None, dtype=tf.int64
        )
        draws = tf.abs(draws // 2)  # >= 0; floormod of a 63-bit draw: bias <= n / 2**62
        # non-overlapping crops one after another from a random start in the slack
        first = tf.math.floormod(draws[0, 0], count - crops * valid + 1)
        offset = first + tf.range(crops, dtype=tf.int64) * valid
        chosen = tf.gather(pair_table, tf.math.floormod(draws[1:, 0], len(pairs)))
        swap = tf.math.floormod(draws[1:, 1], 2) == 1
        rung_a = tf.where(swap, chosen[:, 1], chosen[:, 0])
        rung_b = tf.where(swap, chosen[:, 0], chosen[:, 1])
        with tf.control_dependencies([check]):  # only the crops' bytes are cut (converted per batch)
            views = [
                tf.strings.substr(example["audio"], (rung * count + offset) * 2, tf.fill([crops], valid * 2))
                for rung in (rung_a, rung_b)
            ]
        element = {
            "audio_a": views[0],
            "audio_b": views[1],
            "num_valid_samples": tf.fill([crops], tf.cast(valid, tf.int32)),
            "bitrate_a_kbps": tf.gather(rates, rung_a),
            "bitrate_b_kbps": tf.gather(rates, rung_b),
        }
        if "source_path" in keys:
            element["source_path"] = tf.fill([crops], example["source_path"])
        return element

    def shuffled_pairs(epoch):  # an epoch's pairs, the crops of one record spread apart
        pairs_of_records = (
            one_epoch(epoch)
            .enumerate()
            .map(lambda i, s: to_pairs(epoch * (1 << 32) + i, s), num_parallel_calls=tf.data.AUTOTUNE)
            .unbatch()
        )
        return _block_shuffle(pairs_of_records, pair_buffer, _scalar_seed(fold_in(key, epoch + (1 << 41))))

    def to_float(batch):  # int16 bytes -> float32, zero-padded to the crop, per batch
        for view in ("audio_a", "audio_b"):
            pcm = tf.io.decode_raw(batch[view], tf.int16, little_endian=True, fixed_length=crop_samples * 2)
            batch[view] = pcm_to_float(pcm)
        return batch

    pairs_stream = tf.data.Dataset.counter().flat_map(shuffled_pairs).batch(batch_size, drop_remainder=True)
    return pairs_stream.map(to_float, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def bank_summary(manifest: dict) -> dict:
    """What `jsqa-tf prepare codec-bank` prints: counts, the ladder, the disk cost."""
    return {
        "codec": manifest["codec"],
        "sample_rate": manifest["sample_rate"],
        "num_records": manifest["num_records"],
        "total_seconds": manifest["total_seconds"],
        "rungs": manifest["rungs"],
        "num_bytes": manifest["num_bytes"],
        "mb_per_hour": manifest["mb_per_hour"],
        "splits": {
            name: {k: split[k] for k in ("num_records", "total_seconds")}
            | {"num_shards": len(split["shards"])}
            for name, split in manifest["splits"].items()
        },
    }
