"""The JND classifier and the label-only JND curve.

Classifier: a pair of signals is described by PESQ (wide-band, 16 kHz) and SI-SDR, computed
with the less noisy signal as reference; an RBF support-vector machine on standardised
features, trained on human JND labels (0 = same, 1 = different; CDPAM's format), tells whether
a pair is within the just-noticeable difference. Saved as JSON (scaler, support vectors, dual
coefficients): loading it never executes code.

Curve: CDPAM's linear-noise list names each file `<noise gain>_<rest>.wav`; for two files of
one source (same `<rest>`), |ΔSNR| = |20 log10(gain_b / gain_a)|. A logistic psychometric
function P(same | |ΔSNR|) fitted to the human labels gives the |ΔSNR| at which listeners hear a
difference, from the list alone (no audio).
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import json
import math
import multiprocessing
import os
import re
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from jsqa_tf import atomic
from jsqa_tf.audio import read_audio
from jsqa_tf.errors import AudioError, ConfigError, CorpusError

FEATURE_NAMES = ("pesq_wb", "si_sdr_db")
CLASSIFIER_FORMAT = "jsqa-tf/jnd-svm/1"
SAME, DIFFERENT = 0, 1


# --- features ------------------------------------------------------------------------------


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (zero-mean signals, Le Roux et al.)."""
    length = min(len(reference), len(estimate))
    reference = reference[:length].astype(np.float64) - np.mean(reference[:length])
    estimate = estimate[:length].astype(np.float64) - np.mean(estimate[:length])
    target = (np.dot(estimate, reference) / (np.dot(reference, reference) + 1e-12)) * reference
    residual = estimate - target
    return float(10 * np.log10((np.dot(target, target) + 1e-12) / (np.dot(residual, residual) + 1e-12)))


def pair_features(reference: np.ndarray, degraded: np.ndarray, sample_rate: int = 16_000) -> np.ndarray:
    """[PESQ-WB, SI-SDR] of a pair (reference = the less noisy signal), float64 [2].

    Raises:
        pesq.PesqError: PESQ cannot score the pair (e.g. no utterance detected).
    """
    from pesq import pesq

    length = min(len(reference), len(degraded))
    reference, degraded = reference[:length], degraded[:length]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pesq divides silent input by 0
        score = pesq(sample_rate, reference, degraded, "wb")
    return np.array([score, si_sdr(reference, degraded)])


def _features_of_files(paths: tuple[str, str]) -> tuple[np.ndarray | None, str]:
    """Worker: features of (reference path, degraded path), or (None, the reason)."""
    from pesq import PesqError

    try:
        reference, degraded = (read_audio(path) for path in paths)
        return pair_features(reference, degraded), ""
    except AudioError as error:
        return None, str(error)
    except PesqError as error:
        reason = error.args[0].decode() if error.args and isinstance(error.args[0], bytes) else str(error)
        return None, f"PESQ: {reason}"


def extract_features(
    pairs: Sequence[tuple[str, str]],
    *,
    num_workers: int = 2,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features of many (reference, degraded) file pairs, in parallel processes.

    Returns:
        (features float64 [N, 2] with NaN rows where a pair failed, ok mask bool [N],
        reasons [N] ("" where ok)). A pair that PESQ cannot score is not fatal.
    """
    features = np.full((len(pairs), len(FEATURE_NAMES)), np.nan)
    reasons = [""] * len(pairs)
    if num_workers > 0 and len(pairs) > 1:
        context = multiprocessing.get_context("spawn")
        pool = concurrent.futures.ProcessPoolExecutor(min(num_workers, len(pairs)), mp_context=context)
        results = pool.map(_features_of_files, pairs, chunksize=4)
    else:
        pool, results = None, map(_features_of_files, pairs)
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


@dataclasses.dataclass(frozen=True)
class LabelledPair:
    """Two files and a human judgement: 0 = same (within JND), 1 = different."""

    reference: str
    degraded: str
    label: int
    noise_type: str = ""
    line_number: int = 0


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

    Paths resolve against `audio_root` (default: the list's folder); where a file is not found
    there and the line names a noise type, `<audio_root>/<type>_list/<file>` (CDPAM's layout) is
    used. Malformed lines raise `CorpusError` naming the line.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CorpusError(path, "pair list not found")
    root = os.fspath(audio_root) if audio_root is not None else os.path.dirname(os.path.abspath(path))
    pairs = []
    with open(path, encoding="utf-8") as stream:
        for line_number, line in enumerate(stream, start=1):
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
                return (
                    nested if noise_type and not os.path.exists(direct) and os.path.exists(nested) else direct
                )

            label = _parse_label(fields[2], path, line_number)
            pairs.append(LabelledPair(resolve(fields[0]), resolve(fields[1]), label, noise_type, line_number))
    if not pairs:
        raise CorpusError(path, "no pairs in the list")
    return pairs


def read_pair_csv(path: str | os.PathLike) -> list[LabelledPair]:
    """Reads a CSV with columns `ref, deg, label[, type]`; paths relative to the CSV."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CorpusError(path, "pair CSV not found")
    root = os.path.dirname(os.path.abspath(path))
    with open(path, newline="", encoding="utf-8-sig") as stream:
        reader = csv.DictReader(stream)
        missing = {"ref", "deg", "label"} - set(reader.fieldnames or [])
        if missing:
            raise CorpusError(path, f"missing column(s) {', '.join(sorted(missing))}")
        pairs = [
            LabelledPair(
                os.path.join(root, row["ref"]),
                os.path.join(root, row["deg"]),
                _parse_label(row["label"], path, line_number),
                row.get("type") or "",
                line_number,
            )
            for line_number, row in enumerate(reader, start=2)
        ]
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


_GAIN_NAME = re.compile(r"^(?P<gain>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)_(?P<rest>.+)$")


def parse_gain(path: str) -> tuple[float, str] | None:
    """`<noise gain>_<rest>.wav` -> (gain, rest); None when the name has no gain prefix."""
    match = _GAIN_NAME.match(os.path.basename(path))
    return (float(match["gain"]), match["rest"]) if match else None


def less_noisy_first(pair: LabelledPair) -> tuple[str, str]:
    """(reference, degraded) with the lower noise gain as reference when names carry gains."""
    gains = parse_gain(pair.reference), parse_gain(pair.degraded)
    if gains[0] and gains[1] and gains[1][0] < gains[0][0]:
        return pair.degraded, pair.reference
    return pair.reference, pair.degraded


# --- the classifier ----------------------------------------------------------------------------


@dataclasses.dataclass
class JNDClassifier:
    """RBF SVM on standardised [PESQ-WB, SI-SDR]; predicts 0 (same) or 1 (different).

    The decision function is evaluated in NumPy from the stored parameters, identically to
    scikit-learn's `SVC.decision_function` (checked by the tests).
    """

    mean: np.ndarray
    scale: np.ndarray
    support_vectors: np.ndarray
    dual_coef: np.ndarray
    intercept: float
    gamma: float
    classes: tuple[int, int] = (SAME, DIFFERENT)
    info: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def fit(
        cls, features: np.ndarray, labels: np.ndarray, *, C: float = 1.0, seed: int = 0, folds: int = 5
    ) -> JNDClassifier:
        """Fits on all data; `info` records the stratified k-fold cross-validated accuracy."""
        from sklearn.model_selection import StratifiedKFold, cross_val_score
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        labels = np.asarray(labels, dtype=int)
        counts = np.bincount(labels, minlength=2)
        if counts.min() < folds:
            raise ConfigError(
                f"need at least {folds} pairs of each label to fit and cross-validate; have {counts.tolist()}"
            )
        model = make_pipeline(
            StandardScaler(), SVC(kernel="rbf", C=C, gamma="scale", class_weight="balanced")
        )
        cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
        scores = cross_val_score(model, features, labels, cv=cv)
        model.fit(features, labels)
        scaler, svm = model.named_steps["standardscaler"], model.named_steps["svc"]
        return cls(
            mean=scaler.mean_.copy(),
            scale=scaler.scale_.copy(),
            support_vectors=svm.support_vectors_.copy(),
            dual_coef=svm.dual_coef_[0].copy(),
            intercept=float(svm.intercept_[0]),
            gamma=float(svm._gamma),
            classes=tuple(int(c) for c in svm.classes_),
            info={
                "cv_accuracy": float(np.mean(scores)),
                "cv_accuracy_std": float(np.std(scores)),
                "cv_folds": folds,
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
                "features": list(FEATURE_NAMES),
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
        """Reads a classifier saved by `save`; plain JSON, no code is executed."""
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
        try:
            support_vectors = np.asarray(data["support_vectors"], dtype=np.float64).reshape(
                -1, len(FEATURE_NAMES)
            )
            classifier = cls(
                mean=np.asarray(data["mean"], dtype=np.float64),
                scale=np.asarray(data["scale"], dtype=np.float64),
                support_vectors=support_vectors,
                dual_coef=np.asarray(data["dual_coef"], dtype=np.float64),
                intercept=float(data["intercept"]),
                gamma=float(data["gamma"]),
                classes=tuple(int(c) for c in data["classes"]),
                info=dict(data.get("info", {})),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(f"{path}: malformed classifier ({error})")
        if classifier.dual_coef.shape != (support_vectors.shape[0],) or classifier.mean.shape != (2,):
            raise ConfigError(f"{path}: malformed classifier (inconsistent shapes)")
        return classifier


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if trials == 0:
        return (0.0, 1.0)
    p = successes / trials
    denominator = 1 + z**2 / trials
    center = (p + z**2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2)) / denominator
    return (max(0.0, center - half), min(1.0, center + half))


# --- the label-only curve -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CurvePoints:
    """|ΔSNR| and the judgement for each same-source pair of a list."""

    abs_delta_db: np.ndarray
    same: np.ndarray
    noise_type: np.ndarray
    num_skipped: dict


def curve_points(pairs: Sequence[LabelledPair]) -> CurvePoints:
    """|ΔSNR| of each pair from the gains in its file names; other pairs are counted, skipped."""
    deltas, same, types = [], [], []
    skipped = {"no_gain_in_name": 0, "different_sources": 0, "zero_gain": 0}
    for pair in pairs:
        a, b = parse_gain(pair.reference), parse_gain(pair.degraded)
        if a is None or b is None:
            skipped["no_gain_in_name"] += 1
        elif a[1] != b[1]:
            skipped["different_sources"] += 1
        elif a[0] <= 0 or b[0] <= 0:
            skipped["zero_gain"] += 1
        else:
            deltas.append(abs(20 * math.log10(b[0] / a[0])))
            same.append(pair.label == SAME)
            types.append(pair.noise_type)
    return CurvePoints(np.array(deltas), np.array(same, dtype=bool), np.array(types, dtype=object), skipped)


def _logistic_fit(delta: np.ndarray, same: np.ndarray, iterations: int = 50) -> tuple[float, float]:
    """Maximum-likelihood (intercept, slope) of P(same) = 1 / (1 + exp(-(a + b·delta))).

    Newton-Raphson (iteratively reweighted least squares) on two parameters.
    """
    design = np.stack([np.ones_like(delta), delta], axis=1)
    target = same.astype(np.float64)
    params = np.zeros(2)
    for _ in range(iterations):
        probability = 1 / (1 + np.exp(-np.clip(design @ params, -500, 500)))
        weights = probability * (1 - probability) + 1e-12
        hessian = design.T @ (design * weights[:, None])
        step = np.linalg.solve(hessian + 1e-9 * np.eye(2), design.T @ (target - probability))
        params += step
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(params[0]), float(params[1])


def _threshold(intercept: float, slope: float, probability: float) -> float:
    """|ΔSNR| at which P(same) = probability (inf when the curve does not fall)."""
    if slope >= 0:
        return math.inf
    return (math.log(probability / (1 - probability)) - intercept) / slope


def fit_psychometric(delta: np.ndarray, same: np.ndarray, *, num_bootstrap: int = 500, seed: int = 0) -> dict:
    """Logistic P(same | |ΔSNR|) with |ΔSNR| at P = 0.5 and 0.75 and bootstrap 95% intervals."""
    delta, same = np.asarray(delta, dtype=np.float64), np.asarray(same, dtype=bool)
    if len(delta) < 10 or same.all() or not same.any():
        raise ConfigError(f"need at least 10 pairs with both judgements to fit a curve; have {len(delta)}")
    intercept, slope = _logistic_fit(delta, same)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(num_bootstrap):
        index = rng.integers(0, len(delta), len(delta))
        if same[index].all() or not same[index].any():
            continue
        a, b = _logistic_fit(delta[index], same[index])
        boot.append((_threshold(a, b, 0.5), _threshold(a, b, 0.75)))
    boot = np.array(boot)

    def interval(column):
        finite = boot[:, column][np.isfinite(boot[:, column])]
        return (
            [float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5))] if len(finite) else None
        )

    return {
        "num_pairs": int(len(delta)),
        "share_same": float(np.mean(same)),
        "intercept": intercept,
        "slope_per_db": slope,
        "delta_db_at_p50": _threshold(intercept, slope, 0.5),
        "delta_db_at_p50_ci95": interval(0),
        "delta_db_at_p75": _threshold(intercept, slope, 0.75),
        "delta_db_at_p75_ci95": interval(1),
    }


def pair_abs_delta_db(snr_window_db: float, num_pairs: int, seed: int = 0) -> np.ndarray:
    """|ΔSNR| of `num_pairs` pairs drawn as `jsqa_tf.data.pairs` draws them.

    Both SNRs of a pair are uniform in one window `snr_window_db` wide; where the window lies
    inside the SNR range does not change their difference, so only the width matters.
    """
    draws = np.random.default_rng(seed).uniform(0.0, snr_window_db, size=(num_pairs, 2))
    return np.abs(draws[:, 0] - draws[:, 1])


def share_within_jnd(fit: dict, abs_delta_db: np.ndarray) -> dict:
    """What a fitted curve says of a pair distribution (samples of |ΔSNR|)."""
    probability = 1 / (1 + np.exp(-(fit["intercept"] + fit["slope_per_db"] * abs_delta_db)))
    return {
        "expected_share_judged_same": float(np.mean(probability)),
        "share_below_p50_threshold": float(np.mean(abs_delta_db < fit["delta_db_at_p50"])),
        "share_below_p75_threshold": float(np.mean(abs_delta_db < fit["delta_db_at_p75"])),
    }
