"""The JND classifier and the labelled pair lists it learns from.

Lists: CDPAM's `ref<TAB>per<TAB>label<TAB>type` (0 = same, 1 = different), type names stripped
(the real list has " reverb_noise"). Three kinds of degradation, told apart by the type:
    additive  noise types (applause, crickets, pink_noise, ...): `<noise gain>_<source>.wav`
    mp3       `<bitrate>_<source>.wav`
    reverb    `<p1>_<p2>_<p3>_<source>.wav`, three reverb parameters (0-100)
CDPAM's list puts the less degraded file first (the lower noise gain, the higher bitrate, the
base reverb setting), so the list's own order gives the reference (`reference_and_degraded`).

Classifier: a pair of signals is described by PESQ (wide-band, 16 kHz; the paper's final SVM)
and/or SI-SDR, computed against the reference; an RBF support-vector machine on standardised
features, trained on human JND labels, tells whether a pair is within the just-noticeable
difference. Cross-validation is grouped by source recording. Saved as JSON (feature names,
scaler, support vectors, dual coefficients): loading it never executes code.

`fit_from_list` and `validate_pairs` are `jsqa-tf jnd fit` and `jnd validate` as functions.
The label-only curve (no audio) is in `jsqa_tf.jnd_curve`.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import logging
import math
import os
import re
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from jsqa_tf import atomic
from jsqa_tf.audio import read_audio
from jsqa_tf.errors import AudioError, ConfigError, CorpusError, OutputError
from jsqa_tf.progress import Progress

logger = logging.getLogger(__name__)

FEATURE_NAMES = ("pesq_wb", "si_sdr_db")
"""Every feature `pair_features` computes, in its order."""
FEATURE_ALIASES = {"pesq": "pesq_wb", "sisdr": "si_sdr_db", "pesq_wb": "pesq_wb", "si_sdr_db": "si_sdr_db"}
DEFAULT_FEATURES = ("pesq_wb",)
"""The paper's final SVM: PESQ alone."""
LEGACY_FEATURES = ("pesq_wb", "si_sdr_db")
"""What a classifier file without a `features` field was trained on."""
CLASSIFIER_FORMAT = "jsqa-tf/jnd-svm/1"
SAME, DIFFERENT = 0, 1
KINDS = ("additive", "mp3", "reverb")
REFERENCES = ("first", "second", "by-name")


def _comma_list(text: str, option: str, names: dict[str, str], order: Sequence[str], listed: str):
    """ "a,b" -> the values of the names given (`names`: accepted name -> value), in `order`."""
    given = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [name for name in given if name not in names]
    if not given or unknown:
        raise ConfigError(
            f"{option} {text!r}: expected a comma-separated list of {listed}"
            + (f" (unknown: {', '.join(unknown)})" if unknown else "")
        )
    chosen = {names[name] for name in given}
    return tuple(value for value in order if value in chosen)


def parse_feature_names(text: str) -> tuple[str, ...]:
    """ "pesq", "pesq,sisdr", "sisdr" ... -> feature names in `FEATURE_NAMES` order."""
    return _comma_list(text, "--features", FEATURE_ALIASES, FEATURE_NAMES, "pesq, sisdr")


def parse_kinds(text: str) -> tuple[str, ...]:
    """ "additive", "additive,mp3,reverb" ... -> kinds in `KINDS` order."""
    return _comma_list(text, "--kinds", {kind: kind for kind in KINDS}, KINDS, ", ".join(KINDS))


# --- features ------------------------------------------------------------------------------


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (zero-mean signals, Le Roux et al.)."""
    length = min(len(reference), len(estimate))
    reference = reference[:length].astype(np.float64) - np.mean(reference[:length])
    estimate = estimate[:length].astype(np.float64) - np.mean(estimate[:length])
    target = (np.dot(estimate, reference) / (np.dot(reference, reference) + 1e-12)) * reference
    residual = estimate - target
    return float(10 * np.log10((np.dot(target, target) + 1e-12) / (np.dot(residual, residual) + 1e-12)))


def pair_features(
    reference: np.ndarray,
    degraded: np.ndarray,
    sample_rate: int = 16_000,
    names: Sequence[str] = FEATURE_NAMES,
) -> np.ndarray:
    """The features `names` (default: PESQ-WB, SI-SDR) of a pair, float64 [len(names)].

    Raises:
        pesq.PesqError: PESQ cannot score the pair (e.g. no utterance detected).
    """
    length = min(len(reference), len(degraded))
    reference, degraded = reference[:length], degraded[:length]
    values = []
    for name in names:
        if name == "pesq_wb":
            from pesq import pesq

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # pesq divides silent input by 0
                values.append(pesq(sample_rate, reference, degraded, "wb"))
        elif name == "si_sdr_db":
            values.append(si_sdr(reference, degraded))
        else:
            raise ConfigError(f"unknown feature {name!r}; known: {', '.join(FEATURE_NAMES)}")
    return np.array(values, dtype=np.float64)


def _features_of_files(paths: tuple[str, str], names: Sequence[str] = FEATURE_NAMES):
    """Worker: features of (reference path, degraded path), or (None, the reason).

    Never raises for one pair: whatever PESQ makes of odd input (silence, NaN) becomes the
    pair's reason, so a list's other features are kept."""
    from pesq import PesqError

    from jsqa_tf.audio import is_silent

    try:
        reference, degraded = (read_audio(path) for path in paths)
    except AudioError as error:
        return None, str(error)
    if "pesq_wb" in names:
        for path, samples in zip(paths, (reference, degraded), strict=True):
            if is_silent(samples):
                return None, f"{path}: silent (below -60 dBFS); PESQ needs speech"
    try:
        values = pair_features(reference, degraded, names=names)
    except PesqError as error:
        reason = error.args[0].decode() if error.args and isinstance(error.args[0], bytes) else str(error)
        return None, f"PESQ: {reason}"
    except (ValueError, ArithmeticError) as error:  # pesq on NaN-producing input
        return None, f"PESQ failed ({type(error).__name__}: {error})"
    if not np.all(np.isfinite(values)):
        return (
            None,
            f"features not finite ({', '.join(f'{n}={v}' for n, v in zip(names, values, strict=True))})",
        )
    return values, ""


def extract_features(
    pairs: Sequence[tuple[str, str]],
    *,
    names: Sequence[str] = FEATURE_NAMES,
    num_workers: int = 2,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features `names` of many (reference, degraded) file pairs, in parallel processes.

    Returns:
        (features float64 [N, len(names)] with NaN rows where a pair failed, ok mask bool [N],
        reasons [N] ("" where ok)). A pair that PESQ cannot score is not fatal.
    """
    names = tuple(names)
    work = functools.partial(_features_of_files, names=names)
    features = np.full((len(pairs), len(names)), np.nan)
    reasons = [""] * len(pairs)
    if num_workers > 0 and len(pairs) > 1:
        from jsqa_tf.processes import process_pool

        pool = process_pool(min(num_workers, len(pairs)))  # workers die with this process
        results = pool.map(work, pairs, chunksize=4)
    else:
        pool, results = None, map(work, pairs)
    try:
        for index, (values, reason) in enumerate(results):
            if values is not None:
                features[index] = values
            reasons[index] = reason
            if on_progress:
                on_progress(1)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    ok = np.array([reason == "" for reason in reasons], dtype=bool)
    return features, ok, reasons


# --- labelled pair lists ------------------------------------------------------------------------


_NUMBER = re.compile(r"^-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$")
NAME_NUMBERS = {"additive": 1, "mp3": 1, "reverb": 3}
"""How many `<number>_` fields open a file name, per kind of degradation."""


def degradation_kind(noise_type: str) -> str:
    """ "mp3" for mp3 types, "reverb" for reverb types, else "additive" (a noise type, or none)."""
    name = noise_type.strip().lower()
    if name.startswith("mp3"):
        return "mp3"
    if "reverb" in name:
        return "reverb"
    return "additive"


def parse_name(path: str, num_values: int = 1) -> tuple[tuple[float, ...], str] | None:
    """`<v1>_..._<vn>_<rest>` -> ((v1, ..., vn), rest); None when the name does not open so."""
    parts = os.path.basename(path).split("_")
    if len(parts) <= num_values or not all(_NUMBER.match(part) for part in parts[:num_values]):
        return None
    return tuple(float(part) for part in parts[:num_values]), "_".join(parts[num_values:])


@dataclasses.dataclass(frozen=True)
class LabelledPair:
    """One line of a list: two files and a human judgement, 0 = same (within JND), 1 = different.

    `first` and `second` are in the list's order (CDPAM's: the less degraded file first).
    """

    first: str
    second: str
    label: int
    noise_type: str = ""
    line_number: int = 0

    @property
    def kind(self) -> str:
        """additive, mp3 or reverb (`degradation_kind` of the type)."""
        return degradation_kind(self.noise_type)

    @property
    def source(self) -> str:
        """The recording the pair is made from: the first file's name after its leading numbers
        (gain, bitrate or reverb parameters), or its whole name where it has none."""
        parsed = parse_name(self.first, NAME_NUMBERS[self.kind])
        return parsed[1] if parsed else os.path.basename(self.first)


def _parse_label(text: str, path: str, line_number: int) -> int:
    try:
        value = float(text)
    except ValueError:
        raise CorpusError(path, f"line {line_number}: label {text!r} is not 0 or 1")
    if value not in (0.0, 1.0):
        raise CorpusError(path, f"line {line_number}: label {text!r} is not 0 or 1")
    return int(value)


def read_cdpam_list(
    path: str | os.PathLike, audio_root: str | os.PathLike | None = None
) -> list[LabelledPair]:
    """Reads CDPAM's `ref<TAB>per<TAB>label[<TAB>type]` list (0 = same, 1 = different).

    Fields are stripped (CDPAM's list writes " reverb_noise" in places). Paths resolve against
    `audio_root` (default: the list's folder); where a file is not found there and the line
    names a type, `<audio_root>/<type>_list/<file>` (CDPAM's layout) is used. Malformed lines
    raise `CorpusError` naming the line.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CorpusError(path, "pair list not found")
    root = os.fspath(audio_root) if audio_root is not None else os.path.dirname(os.path.abspath(path))
    pairs = []
    for line_number, line in enumerate(_text_lines(path), start=1):
        line = line.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [field.strip() for field in line.split("\t")]
        if len(fields) not in (3, 4) or not fields[0] or not fields[1]:
            raise CorpusError(
                path,
                f"line {line_number}: expected ref<TAB>per<TAB>label[<TAB>type], "
                f"got {len(fields)} field(s): {line[:80]!r}",
            )
        noise_type = fields[3] if len(fields) == 4 else ""

        def resolve(name, noise_type=noise_type):
            direct = os.path.join(root, name)
            nested = os.path.join(root, f"{noise_type}_list", name)
            return nested if noise_type and not os.path.exists(direct) and os.path.exists(nested) else direct

        label = _parse_label(fields[2], path, line_number)
        pairs.append(LabelledPair(resolve(fields[0]), resolve(fields[1]), label, noise_type, line_number))
    if not pairs:
        raise CorpusError(path, "no pairs in the list")
    return pairs


def _text_lines(path: str) -> list[str]:
    """The lines of a UTF-8 text file (a BOM is dropped); a clear error for other encodings."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as stream:
            return list(stream)
    except UnicodeDecodeError as error:
        raise CorpusError(path, f"not UTF-8 text (a byte {error.object[error.start]:#04x}); save it as UTF-8")


def read_pair_csv(path: str | os.PathLike) -> list[LabelledPair]:
    """Reads a CSV with columns `ref, deg, label[, type]`; paths relative to the CSV.

    A row with a field missing or too many fields stops with its line number."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CorpusError(path, "pair CSV not found")
    root = os.path.dirname(os.path.abspath(path))
    reader = csv.DictReader(_text_lines(path))
    columns = [name.strip() for name in reader.fieldnames or []]
    missing = {"ref", "deg", "label"} - set(columns)
    if missing:
        raise CorpusError(path, f"missing column(s) {', '.join(sorted(missing))}")
    reader.fieldnames = columns
    pairs = []
    for row in reader:
        line_number = reader.line_num
        if None in row or any(row[name] is None for name in ("ref", "deg", "label")):
            given = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None) or [])
            raise CorpusError(
                path,
                f"line {line_number}: {given} field(s), expected those of the header: {', '.join(columns)}",
            )
        ref, deg, label = (row[name].strip() for name in ("ref", "deg", "label"))
        if not ref or not deg:
            raise CorpusError(path, f"line {line_number}: empty ref or deg")
        pairs.append(
            LabelledPair(
                os.path.join(root, ref),
                os.path.join(root, deg),
                _parse_label(label, path, line_number),
                (row.get("type") or "").strip(),
                line_number,
            )
        )
    if not pairs:
        raise CorpusError(path, "no pairs in the CSV")
    return pairs


def read_labelled_pairs(
    path: str | os.PathLike, audio_root: str | os.PathLike | None = None
) -> list[LabelledPair]:
    """A `.csv` is read with `read_pair_csv`, anything else as a CDPAM list."""
    if os.fspath(path).lower().endswith(".csv"):
        return read_pair_csv(path)
    return read_cdpam_list(path, audio_root)


def reference_and_degraded(pair: LabelledPair, reference: str = "first") -> tuple[str, str]:
    """(reference, degraded) file of a pair: the PESQ / SI-SDR reference is the less degraded one.

    Args:
        pair: a line of a list.
        reference: "first" (the list's order; CDPAM's list puts the less degraded file first),
            "second", or "by-name": the lower noise gain (additive) or the higher bitrate (mp3)
            from the names; reverb parameters give no order, so reverb pairs keep the list's.
    """
    if reference not in REFERENCES:
        raise ConfigError(f"reference must be one of {', '.join(REFERENCES)}, not {reference!r}")
    if reference == "second":
        return pair.second, pair.first
    if reference == "by-name" and pair.kind in ("additive", "mp3"):
        a, b = parse_name(pair.first, 1), parse_name(pair.second, 1)
        if a and b:
            swap = b[0][0] < a[0][0] if pair.kind == "additive" else b[0][0] > a[0][0]
            if swap:
                return pair.second, pair.first
    return pair.first, pair.second


# --- the classifier ----------------------------------------------------------------------------


@dataclasses.dataclass
class JNDClassifier:
    """RBF SVM on standardised features (PESQ-WB by default); predicts 0 (same) or 1 (different).

    The decision function is evaluated in NumPy from the stored parameters, identically to
    scikit-learn's `SVC.decision_function` (checked by the tests).
    """

    mean: np.ndarray
    scale: np.ndarray
    support_vectors: np.ndarray
    dual_coef: np.ndarray
    intercept: float
    gamma: float
    feature_names: tuple[str, ...] = DEFAULT_FEATURES
    classes: tuple[int, int] = (SAME, DIFFERENT)
    info: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def fit(
        cls,
        features: np.ndarray,
        labels: np.ndarray,
        *,
        feature_names: Sequence[str] = DEFAULT_FEATURES,
        groups: Sequence[str] | None = None,
        C: float = 1.0,
        seed: int = 0,
        folds: int = 5,
    ) -> JNDClassifier:
        """Fits on all data; `info` records the k-fold cross-validated accuracy.

        Args:
            features: [N, len(feature_names)].
            labels: [N], 0 = same, 1 = different.
            feature_names: the columns of `features` (names in `FEATURE_NAMES`).
            groups: [N] source recording of each pair: the folds then never split a recording
                between training and test (StratifiedGroupKFold). None: plain stratified folds.
            C: SVM regularisation, > 0.
            seed: shuffles the folds.
            folds: >= 2.
        """
        from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_score
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        feature_names = tuple(feature_names)
        features = np.asarray(features, dtype=np.float64).reshape(len(labels), -1)
        if features.shape[1] != len(feature_names):
            raise ConfigError(f"{features.shape[1]} feature column(s) for {len(feature_names)} name(s)")
        labels = np.asarray(labels, dtype=int)
        check_fit_settings(labels, groups, C=C, folds=folds)
        model = make_pipeline(
            StandardScaler(), SVC(kernel="rbf", C=C, gamma="scale", class_weight="balanced")
        )
        if groups is None:
            cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
        else:
            cv = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
        try:
            scores = cross_val_score(model, features, labels, cv=cv, groups=groups, error_score="raise")
        except ValueError as error:
            raise ConfigError(f"cross-validation failed: {error}")
        model.fit(features, labels)
        scaler, svm = model.named_steps["standardscaler"], model.named_steps["svc"]
        counts = np.bincount(labels, minlength=2)
        return cls(
            mean=scaler.mean_.copy(),
            scale=scaler.scale_.copy(),
            support_vectors=svm.support_vectors_.copy(),
            dual_coef=svm.dual_coef_[0].copy(),
            intercept=float(svm.intercept_[0]),
            gamma=float(svm._gamma),
            feature_names=feature_names,
            classes=tuple(int(c) for c in svm.classes_),
            info={
                "features": list(feature_names),
                "cv_accuracy": float(np.mean(scores)),
                "cv_accuracy_std": float(np.std(scores)),
                "cv_folds": folds,
                "cv_grouped_by": "source recording" if groups is not None else None,
                "num_sources": int(len(set(groups))) if groups is not None else None,
                "num_pairs": int(len(labels)),
                "num_same": int(counts[SAME]),
                "num_different": int(counts[DIFFERENT]),
                "C": C,
            },
        )

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        scaled = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        distances = (
            np.sum(scaled**2, axis=1)[:, None]
            - 2 * scaled @ self.support_vectors.T
            + np.sum(self.support_vectors**2, axis=1)[None, :]
        )
        return np.exp(-self.gamma * distances) @ self.dual_coef + self.intercept

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.where(self.decision_function(features) > 0, self.classes[1], self.classes[0])

    def save(self, path: str | os.PathLike) -> None:
        """Writes the classifier as JSON (atomically)."""
        atomic.write_json(
            path,
            {
                "format": CLASSIFIER_FORMAT,
                "features": list(self.feature_names),
                "labels": {"0": "same", "1": "different"},
                "mean": self.mean.tolist(),
                "scale": self.scale.tolist(),
                "gamma": self.gamma,
                "intercept": self.intercept,
                "classes": list(self.classes),
                "dual_coef": self.dual_coef.tolist(),
                "support_vectors": self.support_vectors.tolist(),
                "info": self.info,
            },
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> JNDClassifier:
        """Reads a classifier saved by `save`; plain JSON, no code is executed.

        A file without a `features` field is read as PESQ-WB + SI-SDR (`LEGACY_FEATURES`), what
        every classifier was trained on before the field decided the features.
        """
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as stream:
                data = json.load(stream)
        except FileNotFoundError:
            raise ConfigError(f"{path}: classifier file not found")
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path}: not a JSON classifier ({error})")
        if not isinstance(data, dict) or data.get("format") != CLASSIFIER_FORMAT:
            raise ConfigError(f"{path}: not a jsqa-tf JND classifier (format {CLASSIFIER_FORMAT})")
        names = data.get("features", list(LEGACY_FEATURES))
        if (
            not isinstance(names, list)
            or not names
            or any(name not in FEATURE_NAMES for name in names)
            or len(set(names)) != len(names)
        ):
            raise ConfigError(f"{path}: unknown features {names!r}; known: {', '.join(FEATURE_NAMES)}")
        try:
            support_vectors = np.asarray(data["support_vectors"], dtype=np.float64).reshape(-1, len(names))
            classifier = cls(
                mean=np.asarray(data["mean"], dtype=np.float64),
                scale=np.asarray(data["scale"], dtype=np.float64),
                support_vectors=support_vectors,
                dual_coef=np.asarray(data["dual_coef"], dtype=np.float64),
                intercept=float(data["intercept"]),
                gamma=float(data["gamma"]),
                feature_names=tuple(names),
                classes=tuple(int(c) for c in data["classes"]),
                info=dict(data.get("info", {})),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(f"{path}: malformed classifier ({error})")
        if classifier.dual_coef.shape != (support_vectors.shape[0],) or classifier.mean.shape != (
            len(names),
        ):
            raise ConfigError(f"{path}: malformed classifier (inconsistent shapes)")
        return classifier


def check_fit_settings(
    labels: np.ndarray, groups: Sequence[str] | None = None, *, C: float = 1.0, folds: int = 5
) -> None:
    """Raises `ConfigError` unless the SVM can be fitted and cross-validated: C > 0, folds >= 2,
    at least `folds` pairs of each label and `folds` source recordings. Cheap: run it before
    computing features."""
    if not C > 0:
        raise ConfigError(f"C must be > 0, got {C}")
    if folds < 2:
        raise ConfigError(f"folds must be >= 2, got {folds}")
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=2)
    if counts.min() < folds:
        raise ConfigError(
            f"need at least {folds} pairs of each label to fit and cross-validate; have {counts.tolist()}"
        )
    if groups is not None and len(set(groups)) < folds:
        raise ConfigError(
            f"cross-validation grouped by source recording needs at least {folds} recordings; "
            f"the pairs come from {len(set(groups))}"
        )


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if trials == 0:
        return (0.0, 1.0)
    p = successes / trials
    denominator = 1 + z**2 / trials
    center = (p + z**2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2)) / denominator
    return (max(0.0, center - half), min(1.0, center + half))


# --- fitting on a list, validating drawn pairs ---------------------------------------------------


def _scored(pairs: Sequence[tuple[str, str]], names, names_of_pairs, num_workers, progress, label):
    """Features of (reference, degraded) file pairs; the pairs that could not be scored are
    said in one warning (their count, three of them named by `names_of_pairs`)."""
    update = progress(label, len(pairs)) if progress else None
    features, ok, reasons = extract_features(pairs, names=names, num_workers=num_workers, on_progress=update)
    failed = [f"{name}: {reason}" for name, reason in zip(names_of_pairs, reasons, strict=True) if reason]
    if failed:
        examples = "".join(f"\n  {reason}" for reason in failed[:3])
        logger.warning("%d pair(s) could not be scored and were skipped; e.g.:%s", len(failed), examples)
    return features, ok, failed


def fit_from_list(
    pair_list: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    audio_root: str | os.PathLike | None = None,
    feature_names: Sequence[str] = DEFAULT_FEATURES,
    kinds: Sequence[str] = ("additive",),
    reference: str = "first",
    C: float = 1.0,
    folds: int = 5,
    seed: int = 0,
    num_workers: int = 2,
    progress: Progress | None = None,
) -> JNDClassifier:
    """Trains the classifier on a human-labelled list and saves it to `out_path`.

    Everything that can fail cheaply fails first, before any audio is read: `out_path` must
    be new and writable (nothing is ever overwritten), the list readable, hold pairs of
    `kinds`, and suit the settings (`check_fit_settings`). Each pair is then scored against
    its reference (`reference_and_degraded`); a pair that cannot be scored is skipped (one
    warning names up to three), the SVM fitted with cross-validation grouped by source
    recording, and `info` records what was used (kinds, reference, the list, pairs skipped
    and pairs of other kinds).

    Args:
        pair_list: a CDPAM list or a pair CSV (`read_labelled_pairs`).
        out_path: the classifier JSON to write.
        audio_root: folder the list's paths are relative to (default: the list's folder).
        feature_names, C, folds, seed: as in `JNDClassifier.fit`.
        kinds: the kinds of degradation used (`KINDS`).
        reference: "first", "second" or "by-name" (`reference_and_degraded`).
        num_workers: feature processes (0: none).
        progress: `progress(label, length) -> update(n)`, for the feature extraction.

    Raises:
        OutputError: `out_path` exists or cannot be written.
        CorpusError: the list cannot be read, or no pair could be scored.
        ConfigError: no pairs of `kinds`, or settings the pairs cannot support.
    """
    feature_names = tuple(feature_names)
    if os.path.exists(out_path):
        raise OutputError(out_path, "exists already; choose another name (nothing was overwritten)")
    atomic.check_writable(out_path)
    listed = read_labelled_pairs(pair_list, audio_root)
    pairs = [pair for pair in listed if pair.kind in kinds]
    if not pairs:
        raise ConfigError(f"{pair_list}: no pairs of kind(s) {', '.join(kinds)}")
    labels = np.array([pair.label for pair in pairs])
    check_fit_settings(labels, [pair.source for pair in pairs], C=C, folds=folds)
    features, ok, failed = _scored(
        [reference_and_degraded(pair, reference) for pair in pairs],
        feature_names,
        [f"line {p.line_number} ({os.path.basename(p.first)} / {os.path.basename(p.second)})" for p in pairs],
        num_workers,
        progress,
        " + ".join(feature_names),
    )
    if not ok.any():
        raise CorpusError(pair_list, f"no pair could be scored; e.g. {failed[0]}")
    classifier = JNDClassifier.fit(
        features[ok],
        labels[ok],
        feature_names=feature_names,
        groups=[pair.source for pair, keep in zip(pairs, ok, strict=True) if keep],
        C=C,
        seed=seed,
        folds=folds,
    )
    classifier.info.update(
        num_skipped=len(failed),
        num_not_used=len(listed) - len(pairs),
        kinds=list(kinds),
        reference=reference,
        trained_on=os.path.abspath(pair_list),
    )
    classifier.save(out_path)
    return classifier


def validate_pairs(
    classifier: JNDClassifier,
    pairs_dir: str | os.PathLike,
    *,
    num_workers: int = 2,
    progress: Progress | None = None,
) -> dict:
    """The share of drawn pairs (`jsqa-tf pairs`, with audio) the classifier judges within JND.

    A drawn pair's reference is its view at the higher SNR (`snr_a_db` >= `snr_b_db`: view a),
    the less degraded one, as in the lists the classifier learned from. Pairs that cannot be
    scored are skipped (one warning); the share has a Wilson 95% interval over those scored.

    Returns:
        {num_pairs, num_scored, num_skipped, features, num_within_jnd, share_within_jnd,
        share_within_jnd_ci95, mean_pesq_wb, mean_si_sdr_db}.

    Raises:
        CorpusError: no pairs.csv, pairs written without audio, or no pair could be scored.
    """
    from jsqa_tf.data.pairs import PAIRS_CSV

    pairs_dir = os.fspath(pairs_dir)
    csv_path = os.path.join(pairs_dir, PAIRS_CSV)
    if not os.path.exists(csv_path):
        raise CorpusError(pairs_dir, f"no {PAIRS_CSV}; write pairs with `jsqa-tf pairs` first")
    with open(csv_path, newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    if not rows or not rows[0].get("file_a"):
        raise CorpusError(csv_path, "the pairs were written without audio (--no-audio)")
    files = []
    for row in rows:
        a, b = (os.path.join(pairs_dir, row[key]) for key in ("file_a", "file_b"))
        files.append((a, b) if float(row["snr_a_db"]) >= float(row["snr_b_db"]) else (b, a))
    names = [f"pair {row['pair']}" for row in rows]
    features, ok, failed = _scored(files, FEATURE_NAMES, names, num_workers, progress, "PESQ + SI-SDR")
    scored = int(ok.sum())
    if scored == 0:
        raise CorpusError(pairs_dir, "no pair could be scored")
    columns = [FEATURE_NAMES.index(name) for name in classifier.feature_names]
    same = int(np.sum(classifier.predict(features[ok][:, columns]) == SAME))
    low, high = wilson_interval(same, scored)
    return {
        "num_pairs": len(rows),
        "num_scored": scored,
        "num_skipped": len(failed),
        "features": list(classifier.feature_names),
        "num_within_jnd": same,
        "share_within_jnd": same / scored,
        "share_within_jnd_ci95": [low, high],
        "mean_pesq_wb": float(np.mean(features[ok, 0])),
        "mean_si_sdr_db": float(np.mean(features[ok, 1])),
    }
