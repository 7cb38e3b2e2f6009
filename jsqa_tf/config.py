"""Pipeline configuration: frozen dataclasses, loaded from and written to YAML.

Leaf names equal the keyword arguments of the functions they feed; unknown keys are rejected
with the offending key named, so a typo in a YAML file never passes silently.

Each setting is defined once. A stage's file holds `run_dir` and the sections `data`, `model`
and `training`; what several stages share is one class:
    PairSampling  how JND pairs are drawn (crops, pairs per batch, SNR window, placement, cap):
                  a section of its own, `data.pairs` of pretraining, since it names one thing,
                  and the very mapping `jsqa-tf pairs --config` reads (`PairConfig` is a
                  `PairSampling` plus where the audio is).
    RunSettings   how a training stage runs (precision, XLA, strategy, seed, determinism,
                  checkpoints kept): inherited by the three `training` sections, which stay
                  flat, since a `training.run` level would name nothing a reader looks for.

Every numeric setting declares its range beside it (`setting(45, at_least(1))`,
`jsqa_tf.ranges`); `check_ranges`, which each config's `__post_init__` calls first, refuses a
value out of range when the config is built, with the field's path and the value
(`training.learning_rate must be > 0, got -0.001`); `from_dict` adds the file (or command)
it came from.

A key a class has moved (`RENAMED`: old key -> new dotted key) is still read from an older
file (a run folder's config.yaml, a pipeline): one warning line names the new keys.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import types
import typing
from typing import Any, ClassVar, TypeVar

import yaml

from jsqa_tf.atomic import write_text
from jsqa_tf.data.snr import SNR_PLACEMENTS, expected_mean_abs_delta_db
from jsqa_tf.errors import ConfigError
from jsqa_tf.ranges import (
    DECIMATIONS,
    ENCODER_PRESETS,
    FINITE,
    HEAD_KINDS,
    MOS_RANGE,
    PAIR_FAMILIES,
    REVERB_LEVELS,
    SAMPLE_RATES,
    SHARE,
    STUDENT_PRESETS,
    TARGETS,
    Range,
    above,
    at_least,
    check_choice,
    check_interval,
    check_ranges,
    setting,
)

logger = logging.getLogger(__name__)

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
        mos_range: the MOS scale [low, high] of a nisqa or csv corpus; a row outside it is an
            error naming the row.
        targets: the score columns of a csv corpus (any of mos, noi, col, dis, loud; default
            mos). A nisqa corpus keeps all five where its CSV has them.
        target_ranges: [low, high] per csv target, in the order of `targets`; [] (default):
            `mos_range` for mos, [1, 5] else.
    """

    corpus: str
    source: str
    sample_rate: int = setting(16_000, SAMPLE_RATES)
    shard_seconds: float = setting(1800.0, above(0))
    val_fraction: float = setting(0.0, SHARE)
    val_databases: tuple[str, ...] = ()
    seed: int = setting(0, at_least(0))
    min_seconds: float = setting(0.0, at_least(0))
    channel: int | None = setting(None, at_least(0))
    subsets: tuple[str, ...] = ()
    databases: tuple[str, ...] = ()
    chime3_channels: str = "first"
    num_workers: int = setting(2, at_least(0))
    mos_range: tuple[float, ...] = setting(MOS_RANGE, FINITE)
    targets: tuple[str, ...] = ("mos",)
    target_ranges: tuple[tuple[float, ...], ...] = setting((), FINITE)

    def __post_init__(self):
        check_ranges(self)
        check_targets(self.targets, self.target_ranges, section="")
        if self.val_fraction and self.val_databases:
            raise ConfigError("give val_fraction or val_databases, not both")
        check_choice("chime3_channels", self.chime3_channels, ("first", "all"))
        check_interval("mos_range", self.mos_range)


NOISE_BANK_MAX_MB = 1200.0
"""Default memory limit of the in-memory noise bank: CHiME-3's backgrounds, one channel (about
50 h over 6 channels, so ~8.5 h, ~1 GB at 16 kHz int16), fit; all six channels do not."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class PairSampling:
    """How JND pairs are drawn: the same clean crop and noise excerpt at two SNRs.

    Every pair's two SNRs lie inside `snr_range_db` and within `snr_window_db` of each other,
    placed by `snr_placement`: "uniform_window" (both from one window placed uniformly in the
    range; |ΔSNR| triangular, mean window / 3) or "uniform_snr" (single SNRs uniform over the
    range). `jsqa_tf.data.snr` states both and gives the densities that follow.

    Args:
        crop_seconds: length of each clean crop and noise excerpt.
        pairs_per_batch: pairs per batch, each from a different utterance and noise excerpt
            (in pretraining: per replica, each device sees that many).
        snr_range_db: (low, high) that the window is placed in.
        snr_window_db: width of the window both SNRs of a pair are drawn from.
        snr_window_low_db: fix the window at [low, low + width]; None places it at random
            ("uniform_window" only).
        max_abs_delta_db: cap on |ΔSNR|, in (0, snr_window_db]; None: no cap (the paper's).
            E.g. the widest |ΔSNR| that `jsqa-tf jnd curve --target-same P` calibrates.
        snr_placement: "uniform_window" or "uniform_snr" (above).
        noise_bank_max_mb: hold the noise split in memory (`jsqa_tf.data.noise_bank`: int16,
            ~115 MB an hour at 16 kHz; the process holds about twice that) when it needs at
            most this many MB (10**6 bytes), and cut excerpts from it; above it (or at 0),
            read the noise records for every excerpt (logged; ~6x slower on 60 s noise files).
            The default holds CHiME-3's backgrounds with one channel (~8.5 h, ~1 GB), not all six.
        max_crops_per_file: non-overlapping clean crops each utterance gives per epoch, in
            different batches (None: as many as fit, at least one; 1: one crop per utterance
            per epoch). Reading and parsing a record is most of a crop's cost, so several
            crops a record make each cheaper (`jsqa_tf.data.pipeline`).
        families: what the two views of a pair differ by (`jsqa_tf.data.families`):
            "additive" (the SNR, above), "codec" (the bitrate, octaves), "reverb" (CDPAM's DRR
            and RT60 levels, their distance) and "bandwidth" (the low-pass cutoff, octaves).
            Default: additive alone, the paper's pairs.
        family_weights: one weight per family (empty: equal). Every batch holds a fixed
            number of pairs of each family: the largest remainders of pairs_per_batch x
            weight / sum; a family with a weight > 0 that gets no pair is refused.
        noise_under_share: the share of the non-additive pairs that carry one noise excerpt
            at one SNR from `snr_range_db` in both views (set against view a's speech, so the
            noise is identical in both); the other non-additive pairs carry no noise.
        codec_bank_dir: the bank of pre-rendered bitrates (`jsqa-tf prepare codec-bank`);
            required by the codec family.
        codec_window_octaves: the widest |log2(bitrate ratio)| of a codec pair. Default: where
            CDPAM's listeners judged mp3 pairs the same half the time (3.22 octaves; `jsqa-tf
            jnd curve --kinds mp3`), as the paper's 6 dB window is for additive noise (6.16).
        reverb_window: the widest distance between a reverb pair's two (DRR, RT60) level
            points, in CDPAM's level units (0-100 each). Default: CDPAM's reverb P(same) = 0.5
            distance (27.4).
        reverb_levels: [low, high] of both levels (CDPAM's 0-100 scale: DRR level L scales the
            impulse response's tail by 100**(-L/100), RT60 level L stretches it by 7**(L/100)).
        reverb_base_rt60_seconds: [low, high] of the RT60 of a pair's room at level 0.
        reverb_base_drr_db: [low, high] of the DRR of a pair's room at levels 0, in dB.
        bandwidth_window_octaves: the widest |log2(cutoff ratio)| of a bandwidth pair. No
            human data: an assumption (1 octave: the step from narrowband 3.4 kHz to wideband
            7 kHz, which listeners hear, is 1.04).
        bandwidth_range_hz: [low, high] of the low-pass cutoffs, in Hz (high at most the
            Nyquist frequency).
    """

    YAML_SECTION: ClassVar[str] = "data.pairs."

    crop_seconds: float = setting(4.0, above(0))
    pairs_per_batch: int = setting(8, at_least(2))
    snr_range_db: tuple[float, ...] = setting((-3.0, 9.0), FINITE)
    snr_window_db: float = setting(6.0, FINITE)
    snr_window_low_db: float | None = setting(None, FINITE)
    max_abs_delta_db: float | None = setting(None, FINITE)
    snr_placement: str = "uniform_window"
    noise_bank_max_mb: float = setting(NOISE_BANK_MAX_MB, at_least(0))
    max_crops_per_file: int | None = setting(None, at_least(1))
    families: tuple[str, ...] = ("additive",)
    family_weights: tuple[float, ...] = setting((), at_least(0))
    noise_under_share: float = setting(0.0, Range(0.0, 1.0))
    codec_bank_dir: str | None = None
    codec_window_octaves: float = setting(3.22, above(0))
    reverb_window: float = setting(27.4, above(0))
    reverb_levels: tuple[float, ...] = setting((0.0, 100.0), REVERB_LEVELS)
    reverb_base_rt60_seconds: tuple[float, ...] = setting((0.2, 0.6), above(0))
    reverb_base_drr_db: tuple[float, ...] = setting((0.0, 10.0), FINITE)
    bandwidth_window_octaves: float = setting(1.0, above(0))
    bandwidth_range_hz: tuple[float, ...] = setting((1000.0, 8000.0), above(0))

    def __post_init__(self):
        check_ranges(self)
        self._check_snr_window()
        self._check_families()

    def _check_families(self) -> None:
        """Known families, each once; weights one per family; every weighted family gets a
        pair in each batch; the codec family has a bank; the ranges are intervals."""
        section = self.YAML_SECTION
        if not self.families:
            raise ConfigError(f"{section}families must name at least one of {', '.join(PAIR_FAMILIES)}")
        for family in self.families:
            check_choice(f"{section}families", family, PAIR_FAMILIES)
        if len(set(self.families)) != len(self.families):
            raise ConfigError(f"{section}families names a family twice: {list(self.families)}")
        if self.family_weights and len(self.family_weights) != len(self.families):
            raise ConfigError(
                f"{section}family_weights must hold one weight per family ({len(self.families)}: "
                f"{', '.join(self.families)}), got {len(self.family_weights)}"
            )
        if self.family_weights and not sum(self.family_weights) > 0:
            raise ConfigError(f"{section}family_weights must not all be 0, got {list(self.family_weights)}")
        counts = self.family_counts
        starved = [f for f, w in zip(self.families, self.weights, strict=True) if w > 0 and counts[f] == 0]
        if starved:
            raise ConfigError(
                f"{section}family_weights give {', '.join(starved)} no pair in a batch of "
                f"pairs_per_batch {self.pairs_per_batch}: raise pairs_per_batch or the weight"
            )
        if "codec" in self.families and not self.codec_bank_dir:
            raise ConfigError(
                f"{section}codec_bank_dir must be set when families holds codec "
                "(a bank written by `jsqa-tf prepare codec-bank`)"
            )
        for name in ("reverb_levels", "reverb_base_rt60_seconds", "reverb_base_drr_db", "bandwidth_range_hz"):
            check_interval(f"{section}{name}", getattr(self, name))
        low, high = self.reverb_levels
        widest = math.hypot(high - low, high - low)
        if self.reverb_window > widest:
            raise ConfigError(
                f"{section}reverb_window must be in (0, {widest:g}] (the diagonal of reverb_levels "
                f"{list(self.reverb_levels)}), got {self.reverb_window}"
            )
        octaves = math.log2(self.bandwidth_range_hz[1] / self.bandwidth_range_hz[0])
        if self.bandwidth_window_octaves > octaves:
            raise ConfigError(
                f"{section}bandwidth_window_octaves must be in (0, {octaves:g}] (the octaves of "
                f"bandwidth_range_hz {list(self.bandwidth_range_hz)}), got {self.bandwidth_window_octaves}"
            )

    @property
    def weights(self) -> tuple[float, ...]:
        """`family_weights`, or 1 per family when none are given."""
        return tuple(self.family_weights) or (1.0,) * len(self.families)

    @property
    def family_counts(self) -> dict[str, int]:
        """Pairs of each family in a batch of `pairs_per_batch`: the largest remainders of
        pairs_per_batch x weight / sum (ties to the family listed first), in `PAIR_FAMILIES`
        order (the order of a batch's rows)."""
        weights = self.weights
        total = sum(weights)
        quotas = [self.pairs_per_batch * w / total for w in weights]
        counts = [math.floor(q) for q in quotas]
        order = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - counts[i]), i))
        for i in order[: self.pairs_per_batch - sum(counts)]:
            counts[i] += 1
        drawn = dict(zip(self.families, counts, strict=True))
        return {family: drawn[family] for family in PAIR_FAMILIES if family in drawn}

    @property
    def additive_only(self) -> bool:
        """Every pair differs by its SNR alone (the paper's pairs; the sampler yields 4-tuples)."""
        return tuple(self.families) == ("additive",)

    def _check_snr_window(self) -> None:
        """The window inside the range, the cap inside the window, a fixed window only with
        "uniform_window"."""
        section = self.YAML_SECTION
        check_interval(f"{section}snr_range_db", self.snr_range_db)
        low, high = self.snr_range_db
        window = Range(0.0, high - low, low_closed=False, unit="dB (the range's width)")
        if self.snr_window_db not in window:
            raise ConfigError(f"{section}snr_window_db must be {window}, got {self.snr_window_db}")
        window_low = self.snr_window_low_db
        if window_low is not None and not low <= window_low <= high - self.snr_window_db:
            raise ConfigError(
                f"{section}snr_window_low_db={window_low} puts the window outside snr_range_db "
                f"{list(self.snr_range_db)}"
            )
        cap = Range(0.0, self.snr_window_db, low_closed=False, unit="dB (snr_window_db)")
        if self.max_abs_delta_db is not None and self.max_abs_delta_db not in cap:
            raise ConfigError(f"{section}max_abs_delta_db must be {cap}, got {self.max_abs_delta_db}")
        if self.snr_placement not in SNR_PLACEMENTS:
            raise ConfigError(
                f"{section}snr_placement must be one of {SNR_PLACEMENTS}, not {self.snr_placement!r}"
            )
        if self.snr_placement != "uniform_window" and window_low is not None:
            raise ConfigError(
                f"{section}snr_window_low_db fixes the window: it goes with snr_placement "
                "'uniform_window' only"
            )

    @property
    def expected_mean_abs_delta_db(self) -> float:
        """Mean |ΔSNR| of the pairs, in dB (window / 3 without a cap, for "uniform_window")."""
        return expected_mean_abs_delta_db(
            self.snr_window_db,
            self.max_abs_delta_db,
            snr_placement=self.snr_placement,
            snr_range_db=self.snr_range_db,
        )


PAIR_SAMPLING_FIELDS = tuple(field.name for field in dataclasses.fields(PairSampling))
_FAMILY_FIELDS = PAIR_SAMPLING_FIELDS[PAIR_SAMPLING_FIELDS.index("families") :]


@dataclasses.dataclass(frozen=True)
class PairConfig(PairSampling):
    """Everything the pair sampler (`jsqa_tf.data.pairs`) reads: a `PairSampling`, and where
    the prepared audio is. `jsqa-tf pairs --config` reads these fields (a pretraining file's
    `data.pairs` section is one such file).

    Args:
        clean_dir: prepared clean speech (`jsqa-tf prepare librispeech ...`).
        noise_dir: prepared noise (`jsqa-tf prepare chime3 ...`).
        split: "train" or "val" (read from both folders).
        sample_rate: of the prepared data, in Hz.
        seed: seeds crops, excerpts and SNRs.
        crop_seconds ... max_crops_per_file: `PairSampling`.
    """

    YAML_SECTION: ClassVar[str] = ""

    clean_dir: str
    noise_dir: str
    split: str = "train"
    sample_rate: int = setting(16_000, SAMPLE_RATES)
    seed: int = setting(0, at_least(0))

    def __post_init__(self):
        super().__post_init__()
        nyquist = self.sample_rate / 2
        if "bandwidth" in self.families and self.bandwidth_range_hz[1] > nyquist:
            raise ConfigError(
                f"bandwidth_range_hz must end at most at the Nyquist frequency, {nyquist:g} Hz at "
                f"sample_rate {self.sample_rate}; got {list(self.bandwidth_range_hz)}"
            )

    @classmethod
    def of(cls, sampling: PairSampling, clean_dir: str, noise_dir: str, **settings) -> PairConfig:
        """The sampler's settings for `sampling`'s pairs from these folders; `settings` set
        the other fields (split, seed) or replace some of `sampling`'s."""
        drawn = {name: getattr(sampling, name) for name in PAIR_SAMPLING_FIELDS}
        return cls(clean_dir, noise_dir, **{**drawn, **settings})

    @property
    def crop_samples(self) -> int:
        return int(round(self.crop_seconds * self.sample_rate))


PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("default", "mirrored", "multi-worker")


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunSettings:
    """How a training stage runs, whatever it trains: the fields every `training` section
    (pretraining, fine-tuning, distillation) holds besides its own.

    Args:
        precision: float32, mixed_float16 or mixed_bfloat16.
        jit_compile: compile the train step with XLA; None is Keras's "auto" (always under
            JAX, on a GPU under TensorFlow without a distribution strategy, never on a CPU).
        strategy: default (one device), mirrored (all local GPUs) or multi-worker (TF_CONFIG).
        seed: seeds weights, dropout and the data of every epoch.
        deterministic: make TensorFlow ops deterministic (slower; for exact reruns).
        keep_checkpoints: epoch checkpoints kept (the best one is kept besides).
    """

    YAML_SECTION: ClassVar[str] = "training."

    precision: str = "float32"
    jit_compile: bool | None = None
    strategy: str = "default"
    seed: int = setting(0, at_least(0))
    deterministic: bool = False
    keep_checkpoints: int = setting(3, at_least(1))

    def __post_init__(self):
        check_ranges(self)
        check_choice("training.precision", self.precision, PRECISIONS)
        check_choice("training.strategy", self.strategy, STRATEGIES)


RUN_SETTINGS = tuple(field.name for field in dataclasses.fields(RunSettings))


@dataclasses.dataclass(frozen=True)
class PretrainDataConfig:
    """Where pretraining reads its pairs, and how they are drawn.

    Args:
        clean_dir: prepared clean speech, with "train" and "val" splits.
        noise_dir: prepared noise, with "train" and "val" splits.
        demo_dir: when set, the demo corpus is written and prepared here (once) and used
            instead of clean_dir / noise_dir.
        pairs: how the pairs are drawn (`PairSampling`; the seed is `training.seed`).
        val_batches: validation batches per epoch (the same pairs every epoch).
    """

    YAML_SECTION: ClassVar[str] = "data."
    RENAMED: ClassVar[dict[str, str]] = {
        name: f"pairs.{name}" for name in PAIR_SAMPLING_FIELDS if name not in _FAMILY_FIELDS
    }

    clean_dir: str = ""
    noise_dir: str = ""
    demo_dir: str | None = None
    pairs: PairSampling = PairSampling()
    val_batches: int = setting(50, at_least(1))

    def __post_init__(self):
        check_ranges(self)


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """The encoder (a `WaveformEncoder` preset, any field overridden) and projection head.

    Args:
        preset: jsqa (512-d, the paper's stated width), cdpam (1024-d, the paper's stated
            ~26 M parameters), small or tiny (README, "Presets").
        first_filters ... batch_norm_epsilon: `WaveformEncoder` arguments; None keeps the
            preset's.
        projection: add the 2-layer projection head.
        projection_dropout: its dropout rate.
    """

    YAML_SECTION: ClassVar[str] = "model."

    preset: str = "jsqa"
    first_filters: int | None = setting(None, at_least(1))
    num_blocks: int | None = setting(None, at_least(1))
    layers_per_block: int | None = setting(None, at_least(1))
    growth: int | None = setting(None, at_least(1))
    kernel_size: int | None = setting(None, at_least(1))
    embedding_dim: int | None = setting(None, at_least(1))
    contrastive_dim: int | None = setting(None, at_least(1))
    decimation: str | None = None
    batch_norm_epsilon: float | None = setting(None, above(0))
    projection: bool = True
    projection_dropout: float = setting(0.1, SHARE)

    def __post_init__(self):
        check_ranges(self)
        check_choice("model.preset", self.preset, ENCODER_PRESETS)
        if self.decimation is not None:
            check_choice("model.decimation", self.decimation, DECIMATIONS)

    def overrides(self) -> dict:
        """The `WaveformEncoder` arguments that differ from the preset (those set, not None)."""
        head = ("preset", "projection", "projection_dropout")
        names = [field.name for field in dataclasses.fields(self) if field.name not in head]
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


@dataclasses.dataclass(frozen=True)
class PretrainTrainingConfig(RunSettings):
    """Optimisation settings of contrastive pretraining, and its `RunSettings`.

    Args:
        epochs: training epochs.
        steps_per_epoch: batches per epoch; give it or `epoch_hours`, not both (neither:
            `DEFAULT_STEPS_PER_EPOCH`).
        epoch_hours: the length of an epoch as hours of audio through the encoder, from
            which the steps are derived (`PretrainConfig.epoch_steps`): a pair counts twice
            (its two mixtures), so a step is pairs_per_batch × replicas × 2 × crop_seconds
            of audio (64 s at 8 pairs of 4 s on one device), and an epoch of H hours is
            round(H × 3600 / that) steps, whatever the number of devices.
        learning_rate: Adam's.
        temperature: τ of NT-Xent.
        prevent_clipping: peak-limit the mixtures.
        audio_examples: example pairs written to TensorBoard each epoch.
        precision, jit_compile, strategy, seed, deterministic, keep_checkpoints: `RunSettings`.
    """

    epochs: int = setting(45, at_least(1))
    steps_per_epoch: int | None = setting(None, at_least(1))
    epoch_hours: float | None = setting(None, above(0))
    learning_rate: float = setting(1e-3, above(0))
    temperature: float = setting(1.0, above(0))
    prevent_clipping: bool = False
    audio_examples: int = setting(3, at_least(0))

    def __post_init__(self):
        super().__post_init__()
        if self.steps_per_epoch is not None and self.epoch_hours is not None:
            raise ConfigError(
                "give training.steps_per_epoch or training.epoch_hours, not both "
                f"(got {self.steps_per_epoch} and {self.epoch_hours})"
            )


DEFAULT_STEPS_PER_EPOCH = 1000
"""Pretraining steps per epoch when neither steps_per_epoch nor epoch_hours is given."""


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """Everything `jsqa-tf pretrain` needs; written into the run folder as config.yaml."""

    run_dir: str
    data: PretrainDataConfig = PretrainDataConfig()
    model: EncoderConfig = EncoderConfig()
    training: PretrainTrainingConfig = PretrainTrainingConfig()

    def step_audio_seconds(self, num_replicas: int = 1) -> float:
        """Seconds of audio one training step puts through the encoder: both mixtures of
        every pair on every device."""
        pairs = self.data.pairs
        return pairs.pairs_per_batch * num_replicas * 2 * pairs.crop_seconds

    def epoch_steps(self, num_replicas: int = 1) -> int:
        """Steps per epoch: `training.steps_per_epoch`, or `training.epoch_hours` of audio
        (rounded to whole steps, at least 1), or `DEFAULT_STEPS_PER_EPOCH`."""
        training = self.training
        if training.steps_per_epoch is not None:
            return training.steps_per_epoch
        if training.epoch_hours is None:
            return DEFAULT_STEPS_PER_EPOCH
        return max(1, round(training.epoch_hours * 3600 / self.step_audio_seconds(num_replicas)))

    def pair_config(self, split: str, clean_dir: str, noise_dir: str, pairs_per_batch: int) -> PairConfig:
        """The sampler's settings for one split, `pairs_per_batch` pairs a (global) batch."""
        return PairConfig.of(
            self.data.pairs,
            clean_dir,
            noise_dir,
            split=split,
            seed=self.training.seed,
            pairs_per_batch=pairs_per_batch,
        )


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

    YAML_SECTION: ClassVar[str] = "data."

    data_dir: str = ""
    demo_dir: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    train_databases: tuple[str, ...] = ()
    val_databases: tuple[str, ...] = ()
    train_fraction: float = setting(1.0, Range(0.0, 1.0, low_closed=False))
    subset_seed: int = setting(0, at_least(0))
    crop_seconds: float | None = setting(None, above(0))  # None: whole files
    batch_size: int = setting(8, at_least(1))
    window_seconds: float = setting(10.0, above(0))
    length_bucket_seconds: float = setting(1.0, above(0))

    def __post_init__(self):
        check_ranges(self)


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
        targets: what the model predicts: [mos] (the paper's), or any of the NISQA set
            [mos, noi, col, dis, loud], in output order. Several targets share the encoder,
            each with its own head (`heads`).
        target_ranges: [low, high] per target, in the order of `targets`; [] (default):
            `mos_range` for mos, [1, 5] for noi, col, dis and loud.
        target_weights: the loss's weight per target; [] (default): 1 each. The loss is the
            weighted mean of each target's MSE over the files rated on it (a missing rating,
            NaN in the shards, is masked).
        heads: of several targets, "separate" (a hidden stack per target) or "shared" (one
            hidden stack, an output per target).
    """

    YAML_SECTION: ClassVar[str] = "model."

    encoder: str = "scratch"
    encoder_checkpoint: str = "best"
    preset: str = "jsqa"
    hidden_dims: tuple[int, ...] = setting((256, 128, 64), at_least(1))
    embedding: str = "full"
    dropout: float = setting(0.0, SHARE)
    mos_range: tuple[float, ...] = setting(MOS_RANGE, FINITE)
    targets: tuple[str, ...] = ("mos",)
    target_ranges: tuple[tuple[float, ...], ...] = setting((), FINITE)
    target_weights: tuple[float, ...] = setting((), at_least(0))
    heads: str = "separate"

    def __post_init__(self):
        check_ranges(self)
        check_targets(self.targets, self.target_ranges, self.target_weights)
        check_choice("model.heads", self.heads, HEAD_KINDS)
        check_choice("model.preset", self.preset, ENCODER_PRESETS)
        if self.encoder_checkpoint not in ENCODER_SOURCES:
            raise ConfigError(
                f"model.encoder_checkpoint must be one of {ENCODER_SOURCES}, not {self.encoder_checkpoint!r}"
            )
        if self.embedding not in ("full", "contrastive"):
            raise ConfigError(f"model.embedding must be 'full' or 'contrastive', not {self.embedding!r}")
        if not self.hidden_dims:
            raise ConfigError("model.hidden_dims must list at least one width, got []")
        check_interval("model.mos_range", self.mos_range)


def check_targets(targets, target_ranges=(), target_weights=(), section="model.") -> None:
    """Refuses unknown or repeated targets, and ranges or weights that are not one per target."""
    if not targets:
        raise ConfigError(f"{section}targets must name at least one of {', '.join(TARGETS)}")
    for index, target in enumerate(targets):
        check_choice(f"{section}targets[{index}]", target, TARGETS)
    if len(set(targets)) != len(targets):
        raise ConfigError(f"{section}targets names a target twice: {list(targets)}")
    for name, values in (("target_ranges", target_ranges), ("target_weights", target_weights)):
        if values and len(values) != len(targets):
            raise ConfigError(
                f"{section}{name} must give one per target ({len(targets)}: {', '.join(targets)}), "
                f"got {len(values)}"
            )
    for target, pair in zip(targets, target_ranges, strict=False):
        check_interval(f"{section}target_ranges ({target})", tuple(pair))
        if not all(math.isfinite(value) for value in pair):
            raise ConfigError(f"{section}target_ranges ({target}) must be finite, got {list(pair)}")
    if target_weights and sum(target_weights) <= 0:
        raise ConfigError(f"{section}target_weights must not all be 0, got {list(target_weights)}")


@dataclasses.dataclass(frozen=True)
class FinetuneTrainingConfig(RunSettings):
    """Optimisation settings of MOS fine-tuning (paper: Adam 1e-3, batch 8, ~250 epochs), and
    its `RunSettings`.

    Args:
        epochs: training epochs.
        steps_per_epoch: batches per epoch; None: one pass over the train files.
        learning_rate: Adam's, for the head (and the encoder unless set below).
        encoder_learning_rate: a separate (usually lower) rate for the encoder; None: the same.
        weight_decay: decoupled (AdamW-style) decay of kernels, scaled by each group's rate.
        freeze_encoder_epochs: keep the encoder frozen (weights and BatchNorm statistics) for
            the first N epochs, training the head alone.
        early_stopping_patience: stop after this many epochs without a lower validation RMSE.
        precision, jit_compile, strategy, seed, deterministic, keep_checkpoints: `RunSettings`.
    """

    epochs: int = setting(250, at_least(1))
    steps_per_epoch: int | None = setting(None, at_least(1))
    learning_rate: float = setting(1e-3, above(0))
    encoder_learning_rate: float | None = setting(None, at_least(0))
    weight_decay: float = setting(0.0, at_least(0))
    freeze_encoder_epochs: int = setting(0, at_least(0))
    early_stopping_patience: int | None = setting(None, at_least(1))


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

    YAML_SECTION: ClassVar[str] = "evaluate."

    data_dir: str = ""
    split: str = "val"
    databases: tuple[str, ...] = ()
    window_seconds: float = setting(10.0, above(0))
    batch_size: int = setting(8, at_least(1))
    num_bootstrap: int = setting(1000, at_least(0))
    seed: int = setting(0, at_least(0))

    def __post_init__(self):
        check_ranges(self)


@dataclasses.dataclass(frozen=True)
class DistillDataConfig:
    """The audio a student learns from (no labels needed), and what it is validated on.

    Each batch holds `mixtures_per_batch` synthetic mixtures and `mos_clips_per_batch` crops
    of the MOS corpus's train audio. A mixture is a clean crop and a noise excerpt from the
    pair sampler (distinct utterances and noises in a batch), mixed in the training step at
    an SNR drawn uniformly from `snr_range_db` (or left clean with probability
    `clean_share`), then scaled by a gain drawn uniformly from `gain_db_range` and
    peak-limited to 0.999: the student sees far wider conditions than JND pairs (clean to
    very noisy, quiet to loud) and far more audio than the labelled set holds. The teacher
    scores every clip inside the step. Of the pair sampler's settings only the crop length
    and the noise bank's limit apply (its SNRs are not used), so they are fields here.

    Args:
        demo_dir: when set, the demo corpus is written and prepared here (once) and used
            instead of clean_dir, noise_dir and mos_dir.
        clean_dir: prepared clean speech (`jsqa-tf prepare librispeech`), train split read.
        noise_dir: prepared noise (`jsqa-tf prepare chime3`), train split read.
        mos_dir: prepared MOS corpus (`jsqa-tf prepare nisqa|csv|folder`): random crops of
            its `train_split` join every batch; its `val_split` is scored whole each epoch
            by teacher and student.
        train_split, val_split: of mos_dir.
        val_databases: keep only these `db`s of the val split (empty: all).
        crop_seconds: length of every training clip.
        mixtures_per_batch: synthetic mixtures per batch (per replica), >= 2.
        mos_clips_per_batch: MOS-corpus crops per batch (per replica); 0: none.
        snr_range_db: [low, high] of the mixtures' uniform SNR.
        clean_share: share of mixtures left without noise.
        gain_db_range: [low, high] of the uniform gain applied to each mixture, in dB.
        window_seconds: validation scores files longer than this in windows, averaged.
        val_batch_size: windows per validation batch.
        noise_bank_max_mb: as in `PairSampling`.
    """

    YAML_SECTION: ClassVar[str] = "data."

    demo_dir: str | None = None
    clean_dir: str = ""
    noise_dir: str = ""
    mos_dir: str = ""
    train_split: str = "train"
    val_split: str = "val"
    val_databases: tuple[str, ...] = ()
    crop_seconds: float = setting(4.0, above(0))
    mixtures_per_batch: int = setting(24, at_least(2))
    mos_clips_per_batch: int = setting(8, at_least(0))
    snr_range_db: tuple[float, ...] = setting((-5.0, 35.0), FINITE)
    clean_share: float = setting(0.1, Range(0.0, 1.0))
    gain_db_range: tuple[float, ...] = setting((-20.0, 6.0), FINITE)
    window_seconds: float = setting(10.0, above(0))
    val_batch_size: int = setting(8, at_least(1))
    noise_bank_max_mb: float = setting(NOISE_BANK_MAX_MB, at_least(0))

    def __post_init__(self):
        check_ranges(self)
        check_interval("data.snr_range_db", self.snr_range_db)
        check_interval("data.gain_db_range", self.gain_db_range)


@dataclasses.dataclass(frozen=True)
class DistillModelConfig:
    """The teacher, and the student (a `MOSRegressor` on a small encoder).

    Args:
        teacher: the fine-tuned model the student learns from: a fine-tuning or `train`
            run folder, or a `.keras` file (frozen; scored in inference mode).
        preset: the student's encoder preset: a `StudentEncoder` one (README, "The student")
            or a `WaveformEncoder` one (`jsqa_tf.models.encoder_from_preset`).
        hidden_dims: widths of the student head's hidden layers.
        embedding_loss_weight: weight of a second loss matching the teacher's embedding
            through a linear projection of the student's (0: MOS only). The projection is
            not part of the saved student.
    """

    YAML_SECTION: ClassVar[str] = "model."

    teacher: str = ""
    preset: str = "student"
    hidden_dims: tuple[int, ...] = setting((64, 32), at_least(1))
    embedding_loss_weight: float = setting(0.0, at_least(0))

    def __post_init__(self):
        check_ranges(self)
        check_choice("model.preset", self.preset, STUDENT_PRESETS + ENCODER_PRESETS)
        if not self.hidden_dims:
            raise ConfigError("model.hidden_dims must list at least one width, got []")


@dataclasses.dataclass(frozen=True)
class DistillTrainingConfig(RunSettings):
    """Optimisation settings of distillation, and its `RunSettings`.

    Args:
        epochs: training epochs (each ends with a validation pass over the val files).
        steps_per_epoch: batches per epoch.
        learning_rate: Adam's peak rate.
        decay: cosine decay of the rate to 0 over epochs × steps_per_epoch steps (raising
            epochs on --resume moves the rest of the run onto the longer schedule).
        label_loss_weight: weight of the MSE between the student and the MOS labels of the
            MOS-corpus crops (0: labels unused; files without a label never count).
        early_stopping_patience: stop after this many epochs without a lower validation
            student-teacher MAE.
        precision, jit_compile, strategy, seed, deterministic, keep_checkpoints: `RunSettings`.
    """

    epochs: int = setting(30, at_least(1))
    steps_per_epoch: int = setting(500, at_least(1))
    learning_rate: float = setting(1e-3, above(0))
    decay: bool = True
    label_loss_weight: float = setting(0.0, at_least(0))
    early_stopping_patience: int | None = setting(None, at_least(1))


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """Everything `jsqa-tf distill` needs; written into the run folder as config.yaml."""

    run_dir: str = ""
    data: DistillDataConfig = DistillDataConfig()
    model: DistillModelConfig = DistillModelConfig()
    training: DistillTrainingConfig = DistillTrainingConfig()

    def pair_config(self, clean_dir: str, noise_dir: str, pairs_per_batch: int) -> PairConfig:
        """The pair sampler's settings: only its clean crops and noise excerpts are used."""
        return PairConfig(
            clean_dir,
            noise_dir,
            crop_seconds=self.data.crop_seconds,
            pairs_per_batch=pairs_per_batch,
            seed=self.training.seed,
            noise_bank_max_mb=self.data.noise_bank_max_mb,
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


def _convert(value: Any, annotation: Any, path: str, where: str) -> Any:
    """Checks and converts one YAML value to the field's annotated type; `path` is the field's
    dotted path (training.learning_rate), named in errors."""
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value, f"{path}.", where)
    if origin in (typing.Union, types.UnionType):
        options = [option for option in typing.get_args(annotation) if option is not type(None)]
        nullable = len(options) < len(typing.get_args(annotation))
        if value is None and nullable:
            return None
        errors = []
        for option in options:
            try:
                return _convert(value, option, path, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] + (" (or null)" if nullable else ""))
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        (item_type, *_) = typing.get_args(annotation)
        return tuple(_convert(item, item_type, f"{path}[{i}]", where) for i, item in enumerate(value))
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as text
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected text, got {value!r}")
        return value
    return value


def _moved(cls: type, data: dict, prefix: str, where: str) -> dict:
    """`data` with the keys `cls.RENAMED` lists (old key -> new dotted key) moved to their new
    place, said in one warning line. An old key wins over its new one: it is an override
    (`--set data.crop_seconds=...` on a file that has data.pairs.crop_seconds)."""
    old_keys = [key for key in getattr(cls, "RENAMED", {}) if key in data]
    if not old_keys:
        return data
    kept = {key: value for key, value in data.items() if key not in old_keys}
    moves = ", ".join(f"{prefix}{old} -> {prefix}{cls.RENAMED[old]}" for old in old_keys)
    logger.warning("%s: renamed key(s) read under their new names: %s; rename them there", where, moves)
    try:
        return apply_overrides(kept, {cls.RENAMED[old]: data[old] for old in old_keys})
    except ConfigError as error:  # the new key's parent is not a mapping
        raise ConfigError(f"{prefix}{error}") from None


def _build(cls: type[T], data: Any, prefix: str, where: str) -> T:
    """`from_dict` for a section whose keys' paths start with `prefix` ("" or "training.")."""
    section = prefix.rstrip(".")
    here = f"{section}: " if section else ""
    if not isinstance(data, dict):
        raise ConfigError(f"{here}expected a mapping, got {type(data).__name__}")
    data = _moved(cls, data, prefix, where)
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{here}unknown key(s) {', '.join(unknown)}; known: {', '.join(fields)}")
    missing = [
        name
        for name, field in fields.items()
        if name not in data
        and field.default is dataclasses.MISSING
        and field.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{here}missing key(s) {', '.join(missing)}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _convert(value, hints[name], f"{prefix}{name}", where) for name, value in data.items()}
    return cls(**kwargs)  # __post_init__ checks the values, naming each field's path


def from_dict(cls: type[T], data: Any, where: str = "config") -> T:
    """Builds dataclass `cls` from a mapping, rejecting unknown keys, wrong types and values
    out of range; errors read "<where>: <field path> ...", `where` being the file (or the
    command) the mapping came from."""
    try:
        return _build(cls, data, "", where)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


def to_dict(config: Any) -> dict:
    """A dataclass as plain YAML/JSON-ready data (tuples become lists); a class's own fields
    come before those it inherits (a stage's `training` section opens with its epochs, not
    with its `RunSettings`)."""
    if dataclasses.is_dataclass(config):
        own = vars(type(config)).get("__annotations__", {})
        names = [field.name for field in dataclasses.fields(config)]
        names = [name for name in names if name in own] + [name for name in names if name not in own]
        return {name: to_dict(getattr(config, name)) for name in names}
    if isinstance(config, (tuple, list)):
        return [to_dict(value) for value in config]
    if isinstance(config, dict):
        return {key: to_dict(value) for key, value in config.items()}
    return config


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
