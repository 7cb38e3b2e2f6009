"""Pipeline configuration: frozen dataclasses, loaded from and written to YAML.

Leaf names equal the keyword arguments of the functions they feed; unknown keys are rejected
with the offending key named, so a typo in a YAML file never passes silently.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import types
import typing
from typing import Any, TypeVar

import numpy as np
import yaml

from jsqa_tf.atomic import write_text
from jsqa_tf.errors import ConfigError

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class PrepareConfig:
    """How `prepare` turns a corpus into TFRecord shards.

    Args:
        corpus: librispeech, chime3, nisqa, folder or csv.
        source: corpus folder (librispeech, chime3, folder) or CSV file (nisqa, csv).
        sample_rate: rate of the stored audio, in Hz.
        shard_seconds: audio per shard, in seconds (1800 s of 16 kHz int16 is ~58 MB).
        val_fraction: share of the audio held out for validation, by whole groups (speakers
            for LibriSpeech, recordings for CHiME-3, conditions for NISQA and CSV).
        val_databases: instead of `val_fraction`, put these NISQA `db`s (or LibriSpeech
            subsets) in the val split, e.g. NISQA_VAL_SIM; the rest is train.
        seed: fixes the split and the order of files in shards.
        min_seconds: files shorter than this are reported and skipped.
        channel: keep this channel (0-based); None averages all channels.
        subsets: LibriSpeech subsets to keep (empty: all).
        databases: NISQA `db` values to keep (empty: all).
        chime3_channels: "first" (CH1 only) or "all" (every channel file as its own noise).
        num_workers: decoding processes; 0 decodes in this process.
    """

    corpus: str
    source: str
    sample_rate: int = 16_000
    shard_seconds: float = 1800.0
    val_fraction: float = 0.0
    val_databases: tuple[str, ...] = ()
    seed: int = 0
    min_seconds: float = 0.0
    channel: int | None = None
    subsets: tuple[str, ...] = ()
    databases: tuple[str, ...] = ()
    chime3_channels: str = "first"
    num_workers: int = 2

    def __post_init__(self):
        if self.shard_seconds <= 0:
            raise ConfigError(f"shard_seconds must be > 0, got {self.shard_seconds}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.val_fraction and self.val_databases:
            raise ConfigError("give val_fraction or val_databases, not both")
        if self.sample_rate <= 0:
            raise ConfigError(f"sample_rate must be > 0, got {self.sample_rate}")
        if self.num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.chime3_channels not in ("first", "all"):
            raise ConfigError(f"chime3_channels must be 'first' or 'all', not {self.chime3_channels!r}")


NOISE_BANK_MAX_MB = 1200.0
"""Default memory limit of the in-memory noise bank: CHiME-3's backgrounds, one channel (about
50 h over 6 channels, so ~8.5 h, ~1 GB at 16 kHz int16), fit; all six channels do not."""


@dataclasses.dataclass(frozen=True)
class PairConfig:
    """How JND pairs are drawn: the same clean crop and noise excerpt at two SNRs.

    Both SNRs of a pair are drawn independently from one uniform window `snr_window_db` wide,
    placed uniformly at random inside `snr_range_db` for each pair (or fixed at
    `snr_window_low_db`). |ΔSNR| is then triangular on [0, window], mean window / 3 (2 dB for
    the paper's 6 dB window inside [-3, 9] dB). With `max_abs_delta_db` M, the pairs are those
    same pairs conditioned on |ΔSNR| <= M (drawn directly, no rejection): |ΔSNR| has density
    2 (W - d) / (2 W M - M²) on [0, M] (W the window), and given |ΔSNR| the pair lies uniformly
    in the window, in random order. `abs_delta_snr_density` is that density.

    Args:
        clean_dir: prepared clean speech (`jsqa-tf prepare librispeech ...`).
        noise_dir: prepared noise (`jsqa-tf prepare chime3 ...`).
        split: "train" or "val" (read from both folders).
        crop_seconds: length of each clean crop and noise excerpt.
        pairs_per_batch: pairs per batch, each from a different utterance and noise excerpt.
        snr_range_db: (low, high) that the window is placed in.
        snr_window_db: width of the window both SNRs of a pair are drawn from.
        snr_window_low_db: fix the window at [low, low + width]; None places it at random.
        max_abs_delta_db: cap on |ΔSNR|, in (0, snr_window_db]; None: no cap (the paper's).
            E.g. the widest |ΔSNR| that `jsqa-tf jnd curve --target-same P` calibrates.
        sample_rate: of the prepared data, in Hz.
        seed: seeds crops, excerpts and SNRs.
        noise_bank_max_mb: hold the noise split in memory (`jsqa_tf.data.noise_bank`: int16,
            ~115 MB an hour at 16 kHz; the process holds about twice that) when it needs at
            most this many MB (10**6 bytes), and cut excerpts from it; above it (or at 0),
            read the noise records for every excerpt (logged; ~6x slower on 60 s noise files).
            The default holds CHiME-3's backgrounds with one channel (~8.5 h, ~1 GB), not all six.
    """

    clean_dir: str
    noise_dir: str
    split: str = "train"
    crop_seconds: float = 4.0
    pairs_per_batch: int = 8
    snr_range_db: tuple[float, ...] = (-3.0, 9.0)
    snr_window_db: float = 6.0
    snr_window_low_db: float | None = None
    max_abs_delta_db: float | None = None
    sample_rate: int = 16_000
    seed: int = 0
    noise_bank_max_mb: float = NOISE_BANK_MAX_MB

    def __post_init__(self):
        if self.noise_bank_max_mb < 0:
            raise ConfigError(f"noise_bank_max_mb must be >= 0 (0: off), got {self.noise_bank_max_mb}")
        if len(self.snr_range_db) != 2 or self.snr_range_db[0] >= self.snr_range_db[1]:
            raise ConfigError(f"snr_range_db must be [low, high] with low < high, got {self.snr_range_db}")
        low, high = self.snr_range_db
        if not 0 < self.snr_window_db <= high - low:
            raise ConfigError(
                f"snr_window_db must be in (0, {high - low:g}] (the range's width), got {self.snr_window_db}"
            )
        window_low = self.snr_window_low_db
        if window_low is not None and not low <= window_low <= high - self.snr_window_db:
            raise ConfigError(
                f"snr_window_low_db={window_low} puts the window outside snr_range_db {self.snr_range_db}"
            )
        if self.crop_seconds <= 0 or self.pairs_per_batch < 2:
            raise ConfigError("crop_seconds must be > 0 and pairs_per_batch >= 2")
        _check_max_abs_delta(self.max_abs_delta_db, self.snr_window_db)

    @property
    def crop_samples(self) -> int:
        return int(round(self.crop_seconds * self.sample_rate))

    @property
    def expected_mean_abs_delta_db(self) -> float:
        """Mean |ΔSNR| of the pairs, in dB (window / 3 without a cap)."""
        return expected_mean_abs_delta_db(self.snr_window_db, self.max_abs_delta_db)


def _check_max_abs_delta(max_abs_delta_db: float | None, snr_window_db: float) -> None:
    if max_abs_delta_db is not None and not 0 < max_abs_delta_db <= snr_window_db:
        raise ConfigError(
            f"max_abs_delta_db must be in (0, {snr_window_db:g}] (snr_window_db), got {max_abs_delta_db}"
        )


def abs_delta_snr_density(
    abs_delta_db: np.ndarray, snr_window_db: float, max_abs_delta_db: float | None = None
) -> np.ndarray:
    """Density of |ΔSNR| (per dB) of the pairs `PairConfig` describes, at `abs_delta_db`.

    2 (W - d) / (2 W M - M²) on [0, M], 0 elsewhere (W the window, M the cap, M = W without
    one: the triangle 2 (W - d) / W²). Where the window lies in the SNR range does not matter.
    """
    window = float(snr_window_db)
    cap = window if max_abs_delta_db is None else float(max_abs_delta_db)
    d = np.asarray(abs_delta_db, dtype=np.float64)
    inside = (d >= 0) & (d <= cap)
    return np.where(inside, 2 * (window - d) / (2 * window * cap - cap**2), 0.0)


def expected_mean_abs_delta_db(snr_window_db: float, max_abs_delta_db: float | None = None) -> float:
    """Mean of `abs_delta_snr_density`: (W M²/2 - M³/3) / (W M - M²/2); W / 3 without a cap."""
    window = float(snr_window_db)
    cap = window if max_abs_delta_db is None else float(max_abs_delta_db)
    return (window * cap**2 / 2 - cap**3 / 3) / (window * cap - cap**2 / 2)


PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("default", "mirrored", "multi-worker")


@dataclasses.dataclass(frozen=True)
class PretrainDataConfig:
    """Where pretraining reads its pairs, and how they are drawn (see `PairConfig`).

    Args:
        clean_dir: prepared clean speech, with "train" and "val" splits.
        noise_dir: prepared noise, with "train" and "val" splits.
        demo_dir: when set, the demo corpus is written and prepared here (once) and used
            instead of clean_dir / noise_dir.
        crop_seconds, pairs_per_batch, snr_range_db, snr_window_db, snr_window_low_db,
            max_abs_delta_db, noise_bank_max_mb: as in `PairConfig`; pairs_per_batch is per
            replica (each device sees that many).
        val_batches: validation batches per epoch (the same pairs every epoch).
    """

    clean_dir: str = ""
    noise_dir: str = ""
    demo_dir: str | None = None
    crop_seconds: float = 4.0
    pairs_per_batch: int = 8
    snr_range_db: tuple[float, ...] = (-3.0, 9.0)
    snr_window_db: float = 6.0
    snr_window_low_db: float | None = None
    max_abs_delta_db: float | None = None
    val_batches: int = 50
    noise_bank_max_mb: float = NOISE_BANK_MAX_MB

    def __post_init__(self):
        _check_max_abs_delta(self.max_abs_delta_db, self.snr_window_db)


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """The encoder (a `WaveformEncoder` preset, any field overridden) and projection head.

    Args:
        preset: jsqa (the paper's, 512-d), cdpam (1024-d), small or tiny.
        first_filters ... decimation: `WaveformEncoder` arguments; None keeps the preset's.
        projection: add the 2-layer projection head.
        projection_dropout: its dropout rate.
    """

    preset: str = "jsqa"
    first_filters: int | None = None
    num_blocks: int | None = None
    layers_per_block: int | None = None
    growth: int | None = None
    kernel_size: int | None = None
    embedding_dim: int | None = None
    contrastive_dim: int | None = None
    decimation: str | None = None
    projection: bool = True
    projection_dropout: float = 0.1

    def overrides(self) -> dict:
        """The `WaveformEncoder` arguments that differ from the preset."""
        names = (
            "first_filters",
            "num_blocks",
            "layers_per_block",
            "growth",
            "kernel_size",
            "embedding_dim",
            "contrastive_dim",
            "decimation",
        )
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


@dataclasses.dataclass(frozen=True)
class PretrainTrainingConfig:
    """Optimisation and run settings of contrastive pretraining.

    Args:
        epochs: training epochs.
        steps_per_epoch: batches per epoch.
        learning_rate: Adam's.
        temperature: τ of NT-Xent.
        precision: float32, mixed_float16 or mixed_bfloat16.
        jit_compile: compile the train step with XLA; None is Keras's "auto" (always under
            JAX, on a GPU under TensorFlow without a distribution strategy, never on a CPU).
        strategy: default (one device), mirrored (all local GPUs) or multi-worker (TF_CONFIG).
        prevent_clipping: peak-limit the mixtures.
        seed: seeds weights, dropout and the pairs of every epoch.
        deterministic: make TensorFlow ops deterministic (slower; for exact reruns).
        keep_checkpoints: epoch checkpoints kept (the best one is kept besides).
        audio_examples: example pairs written to TensorBoard each epoch.
    """

    epochs: int = 45
    steps_per_epoch: int = 1000
    learning_rate: float = 1e-3
    temperature: float = 1.0
    precision: str = "float32"
    jit_compile: bool | None = None
    strategy: str = "default"
    prevent_clipping: bool = False
    seed: int = 0
    deterministic: bool = False
    keep_checkpoints: int = 3
    audio_examples: int = 3

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, not {self.precision!r}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {STRATEGIES}, not {self.strategy!r}")
        if self.epochs < 1 or self.steps_per_epoch < 1:
            raise ConfigError("epochs and steps_per_epoch must be >= 1")


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """Everything `jsqa-tf pretrain` needs; written into the run folder as config.yaml."""

    run_dir: str
    data: PretrainDataConfig = PretrainDataConfig()
    model: EncoderConfig = EncoderConfig()
    training: PretrainTrainingConfig = PretrainTrainingConfig()

    def pair_config(self, split: str, clean_dir: str, noise_dir: str, pairs_per_batch: int) -> PairConfig:
        data = self.data
        return PairConfig(
            clean_dir=clean_dir,
            noise_dir=noise_dir,
            split=split,
            crop_seconds=data.crop_seconds,
            pairs_per_batch=pairs_per_batch,
            snr_range_db=data.snr_range_db,
            snr_window_db=data.snr_window_db,
            snr_window_low_db=data.snr_window_low_db,
            max_abs_delta_db=data.max_abs_delta_db,
            seed=self.training.seed,
            noise_bank_max_mb=data.noise_bank_max_mb,
        )


def apply_overrides(data: dict, overrides: dict) -> dict:
    """Sets dotted keys ("training.epochs") in a nested mapping; returns a new mapping."""
    result = copy.deepcopy(data)
    for dotted, value in overrides.items():
        node = result
        *parents, leaf = dotted.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{dotted}: {parent} is not a section")
        node[leaf] = value
    return result


def _convert(value: Any, annotation: Any, where: str) -> Any:
    """Checks and converts one YAML value to the field's annotated type."""
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        return from_dict(annotation, value, where)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: {value!r} is not a valid {annotation}")
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_type, *_) = typing.get_args(annotation)
        return tuple(_convert(item, item_type, f"{where}[{i}]") for i, item in enumerate(value))
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as text
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected text, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: Any, where: str = "config") -> T:
    """Builds dataclass `cls` from a mapping, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _convert(value, hints[name], f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as error:  # a required key is missing
        raise ConfigError(f"{where}: {error}")
    except ConfigError as error:  # a value out of range: say in which file / section
        raise ConfigError(f"{where}: {error}")


def to_dict(config: Any) -> dict:
    """A dataclass as plain YAML/JSON-ready data (tuples become lists)."""

    def plain(value):
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def load_yaml(path: str | os.PathLike) -> dict:
    """Reads a YAML mapping, with the file named in any error."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as stream:
            data = yaml.safe_load(stream)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found")
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def dump_yaml(config: Any, path: str | os.PathLike) -> None:
    """Writes a dataclass config as YAML, atomically."""
    write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))


@dataclasses.dataclass(frozen=True)
class MOSDataConfig:
    """Where fine-tuning reads MOS-labelled speech (shards of `jsqa-tf prepare nisqa|csv`).

    Args:
        data_dir: the prepared folder, with the train split and a validation split.
        demo_dir: when set, the demo corpus's NISQA part is written and prepared here (once)
            and used instead of data_dir (train: NISQA_TRAIN_SIM, val: NISQA_VAL_SIM).
        train_split: the split trained on.
        val_split: the split validated on (each epoch, whole files, in windows).
        train_databases: keep only these `db`s of the train split (empty: all).
        val_databases: keep only these `db`s of the val split (empty: all).
        train_fraction: share of the train files used (label-efficiency runs): the files
            whose hash of (subset_seed, path) falls below it, so 5% ⊂ 10% ⊂ ... ⊂ 100%.
        subset_seed: seeds that choice.
        crop_seconds: train on random crops of this length; None trains on whole files
            (zero-padded per batch, masked out of every convolution and the pooling).
        batch_size: files per batch (per replica).
        window_seconds: validation scores files longer than this in windows, averaged.
        length_bucket_seconds: whole-file batches are padded up to a multiple of this, so
            that an XLA-compiled step sees a few shapes, not one per batch.
    """

    data_dir: str = ""
    demo_dir: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    train_databases: tuple[str, ...] = ()
    val_databases: tuple[str, ...] = ()
    train_fraction: float = 1.0
    subset_seed: int = 0
    crop_seconds: float | None = None
    batch_size: int = 8
    window_seconds: float = 10.0
    length_bucket_seconds: float = 1.0

    def __post_init__(self):
        if not 0.0 < self.train_fraction <= 1.0:
            raise ConfigError(f"data.train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.crop_seconds is not None and self.crop_seconds <= 0:
            raise ConfigError(f"data.crop_seconds must be > 0 or null (whole files), got {self.crop_seconds}")
        if self.batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {self.batch_size}")
        if self.window_seconds <= 0 or self.length_bucket_seconds <= 0:
            raise ConfigError("data.window_seconds and data.length_bucket_seconds must be > 0")


ENCODER_SOURCES = ("best", "last")


@dataclasses.dataclass(frozen=True)
class MOSModelConfig:
    """The `MOSRegressor`: which encoder, and the head.

    Args:
        encoder: "scratch" (a freshly initialised `preset` encoder), a pretraining run
            folder, or an encoder `.keras` file.
        encoder_checkpoint: of a pretraining run folder, the "best" encoder (lowest
            validation NT-Xent loss; `encoder-best.keras`) or the "last" one (`encoder.keras`).
        preset: the encoder preset of a "scratch" model.
        hidden_dims: widths of the head's hidden layers (the paper's 256, 128, 64).
        embedding: "full" (all embedding dimensions) or "contrastive" (the leading half that
            NT-Xent saw).
        dropout: dropout in the head.
        mos_range: the scaled sigmoid's range.
    """

    encoder: str = "scratch"
    encoder_checkpoint: str = "best"
    preset: str = "jsqa"
    hidden_dims: tuple[int, ...] = (256, 128, 64)
    embedding: str = "full"
    dropout: float = 0.0
    mos_range: tuple[float, ...] = (1.0, 5.0)

    def __post_init__(self):
        if self.encoder_checkpoint not in ENCODER_SOURCES:
            raise ConfigError(
                f"model.encoder_checkpoint must be one of {ENCODER_SOURCES}, not {self.encoder_checkpoint!r}"
            )
        if self.embedding not in ("full", "contrastive"):
            raise ConfigError(f"model.embedding must be 'full' or 'contrastive', not {self.embedding!r}")
        if not self.hidden_dims or any(width < 1 for width in self.hidden_dims):
            raise ConfigError(f"model.hidden_dims must be positive widths, got {list(self.hidden_dims)}")
        if len(self.mos_range) != 2 or self.mos_range[0] >= self.mos_range[1]:
            raise ConfigError(
                f"model.mos_range must be [low, high] with low < high, got {list(self.mos_range)}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")


@dataclasses.dataclass(frozen=True)
class FinetuneTrainingConfig:
    """Optimisation and run settings of MOS fine-tuning (paper: Adam 1e-3, batch 8, ~250 epochs).

    Args:
        epochs: training epochs.
        steps_per_epoch: batches per epoch; None: one pass over the train files.
        learning_rate: Adam's, for the head (and the encoder unless set below).
        encoder_learning_rate: a separate (usually lower) rate for the encoder; None: the same.
        weight_decay: decoupled (AdamW-style) decay of kernels, scaled by each group's rate.
        freeze_encoder_epochs: keep the encoder frozen (weights and BatchNorm statistics) for
            the first N epochs, training the head alone.
        early_stopping_patience: stop after this many epochs without a lower validation RMSE.
        precision, jit_compile, strategy, seed, deterministic, keep_checkpoints: as in
            pretraining.
    """

    epochs: int = 250
    steps_per_epoch: int | None = None
    learning_rate: float = 1e-3
    encoder_learning_rate: float | None = None
    weight_decay: float = 0.0
    freeze_encoder_epochs: int = 0
    early_stopping_patience: int | None = None
    precision: str = "float32"
    jit_compile: bool | None = None
    strategy: str = "default"
    seed: int = 0
    deterministic: bool = False
    keep_checkpoints: int = 3

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ConfigError(f"training.precision must be one of {PRECISIONS}, not {self.precision!r}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"training.strategy must be one of {STRATEGIES}, not {self.strategy!r}")
        if self.epochs < 1 or (self.steps_per_epoch is not None and self.steps_per_epoch < 1):
            raise ConfigError("training.epochs and training.steps_per_epoch must be >= 1")
        if self.learning_rate <= 0 or (
            self.encoder_learning_rate is not None and self.encoder_learning_rate < 0
        ):
            raise ConfigError(
                f"training.learning_rate must be > 0 and encoder_learning_rate >= 0, got "
                f"{self.learning_rate}, {self.encoder_learning_rate}"
            )
        if self.weight_decay < 0 or self.freeze_encoder_epochs < 0 or self.keep_checkpoints < 1:
            raise ConfigError(
                "training.weight_decay, freeze_encoder_epochs must be >= 0, keep_checkpoints >= 1"
            )
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ConfigError(
                f"training.early_stopping_patience must be >= 1, got {self.early_stopping_patience}"
            )


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Everything `jsqa-tf finetune` needs; written into the run folder as config.yaml."""

    run_dir: str = ""
    data: MOSDataConfig = MOSDataConfig()
    model: MOSModelConfig = MOSModelConfig()
    training: FinetuneTrainingConfig = FinetuneTrainingConfig()


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """How a model is scored on labelled files (`jsqa-tf evaluate`, the pipeline's last stage).

    Args:
        data_dir: prepared shards; empty: the fine-tuning data (demo included).
        split: the split scored.
        databases: keep only these `db`s (e.g. NISQA_TEST_FOR); empty: all.
        window_seconds: files longer than this are scored in windows, averaged.
        batch_size: windows per batch.
        num_bootstrap: bootstrap resamples for the 95% intervals.
        seed: seeds the bootstrap.
    """

    data_dir: str = ""
    split: str = "val"
    databases: tuple[str, ...] = ()
    window_seconds: float = 10.0
    batch_size: int = 8
    num_bootstrap: int = 1000
    seed: int = 0

    def __post_init__(self):
        if self.window_seconds <= 0 or self.batch_size < 1 or self.num_bootstrap < 0:
            raise ConfigError("evaluate: window_seconds must be > 0, batch_size >= 1, num_bootstrap >= 0")
