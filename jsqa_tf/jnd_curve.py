"""The label-only JND curve: P(same) against the size of the difference, from a list's labels.

No audio and no TensorFlow: NumPy and SciPy only. For each pair of one source recording, the
size of the difference comes from the numbers opening the two file names, per kind:
    additive  |ΔSNR| = |20 log10(gain_2 / gain_1)| in dB (the noise is the same, its gain
              differs; the speech is the same), the default and the only kind read as SNR
    mp3       |log2(bitrate_1 / bitrate_2)|, in octaves of bitrate
    reverb    the Euclidean distance between the two files' three reverb parameters (0-100)
Identical pairs (one file twice) are reported apart and not fitted: they are catch trials, and
the pair sampler never draws |ΔSNR| = 0 exactly.

Reported: the binned judgements with Wilson 95% intervals; the `Psychometric` model fitted by
maximum likelihood with bootstrap intervals, its thresholds and goodness of fit; and, for
additive noise, what the curve says of a pair window (`pair_window_report`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence

import numpy as np

from jsqa_tf.config import PairConfig
from jsqa_tf.data.snr import expected_mean_abs_delta_db
from jsqa_tf.errors import ConfigError
from jsqa_tf.jnd import KINDS, NAME_NUMBERS, SAME, LabelledPair, parse_name, read_cdpam_list, wilson_interval
from jsqa_tf.psychometric import (
    Psychometric,
    PsychometricFit,
    fit_psychometric,
    goodness_of_fit,
    percentile_ci95,
    thresholds,
)


@dataclasses.dataclass(frozen=True)
class Axis:
    """What x means for one kind of degradation."""

    name: str
    label: str
    unit: str
    bin_width: float


AXES = {
    "additive": Axis("abs_delta_snr_db", "|ΔSNR|", "dB", 1.0),
    "mp3": Axis("abs_delta_bitrate_octaves", "|Δ bitrate|", "octaves", 0.5),
    "reverb": Axis("reverb_parameter_distance", "reverb parameter distance", "units", 5.0),
}
"""Per kind: the axis and its default bin width (`--bin-width` sets the additive one)."""


# --- points ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CurvePoints:
    """The same-source pairs of one kind: size of difference, judgement, identical, type."""

    kind: str
    x: np.ndarray
    same: np.ndarray
    identical: np.ndarray
    noise_type: np.ndarray
    num_skipped: dict


def _difference(kind: str, a: tuple[float, ...], b: tuple[float, ...]) -> float | None:
    if kind == "reverb":
        return float(math.dist(a, b))
    if a[0] <= 0 or b[0] <= 0:
        return None
    if kind == "mp3":
        return abs(math.log2(a[0] / b[0]))
    return abs(20 * math.log10(b[0] / a[0]))


def curve_points(pairs: Sequence[LabelledPair], kind: str = "additive") -> CurvePoints:
    """Size of difference of each pair of `kind`; pairs that cannot be placed are counted."""
    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    x, same, identical, types = [], [], [], []
    skipped = {"no_numbers_in_name": 0, "different_sources": 0, "non_positive_value": 0}
    for pair in pairs:
        if pair.kind != kind:
            continue
        a, b = (parse_name(path, NAME_NUMBERS[kind]) for path in (pair.first, pair.second))
        if a is None or b is None:
            skipped["no_numbers_in_name"] += 1
            continue
        if a[1] != b[1]:
            skipped["different_sources"] += 1
            continue
        value = _difference(kind, a[0], b[0])
        if value is None:
            skipped["non_positive_value"] += 1
            continue
        x.append(value)
        same.append(pair.label == SAME)
        identical.append(os.path.basename(pair.first) == os.path.basename(pair.second))
        types.append(pair.noise_type)
    return CurvePoints(
        kind,
        np.array(x, dtype=np.float64),
        np.array(same, dtype=bool),
        np.array(identical, dtype=bool),
        np.array(types, dtype=object),
        skipped,
    )


# --- bins ------------------------------------------------------------------------------------


def bin_index(x: np.ndarray, width: float) -> np.ndarray:
    """Bin of each x: [k w, (k + 1) w) is bin k."""
    return np.floor(np.asarray(x, dtype=np.float64) / width + 1e-9).astype(int)


def _proportion(num_same: int, num_pairs: int) -> dict:
    return {
        "num_pairs": int(num_pairs),
        "num_same": int(num_same),
        "p_same": num_same / num_pairs if num_pairs else None,
        "ci95": list(wilson_interval(num_same, num_pairs)) if num_pairs else None,
    }


def bin_judgements(x: np.ndarray, same: np.ndarray, width: float) -> list[dict]:
    """P(same) per bin [k w, (k + 1) w) with Wilson 95% intervals; empty bins are left out."""
    if not width > 0:
        raise ConfigError(f"bin width must be > 0, got {width}")
    index = bin_index(x, width)
    bins = []
    for k in np.unique(index):
        members = index == k
        entry = {"x_low": float(k * width), "x_high": float((k + 1) * width)}
        entry.update(_proportion(int(same[members].sum()), int(members.sum())))
        entry["mean_x"] = float(np.mean(x[members]))
        bins.append(entry)
    return bins


MODEL_TEXT = "P(same) = floor + (ceiling - floor) (1 + e^(-midpoint/width)) / (1 + e^((x - midpoint)/width))"

# --- one curve -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Curve:
    """One curve's report (JSON-ready) and, where the model was fitted, the fit itself."""

    report: dict
    fit: PsychometricFit | None
    bins: list[dict]


def fit_curve(
    points: CurvePoints,
    chosen: np.ndarray | None = None,
    *,
    bin_width: float,
    drop: float = 0.1,
    num_bootstrap: int = 500,
    seed: int = 0,
    fit_max: float | None = None,
) -> Curve:
    """Bins, identical pairs and the fitted model of the points `chosen` (default: all).

    `fit_max`: fit only pairs with x <= fit_max (the bins still show all of them).
    """
    chosen = np.ones(len(points.x), dtype=bool) if chosen is None else chosen
    axis = AXES[points.kind]
    identical = chosen & points.identical
    varied = chosen & ~points.identical
    x, same = points.x[varied], points.same[varied]
    bins = bin_judgements(x, same, bin_width) if len(x) else []
    report = {
        "num_pairs": int(chosen.sum()),
        "identical": _proportion(int(points.same[identical].sum()), int(identical.sum())),
        "bin_width": bin_width,
        "bins": bins,
    }
    warnings = []
    fitted = x <= fit_max if fit_max is not None else np.ones(len(x), dtype=bool)
    try:
        fit = fit_psychometric(x[fitted], same[fitted], num_bootstrap=num_bootstrap, seed=seed)
    except ConfigError as error:
        report["fit"] = None
        report["fit_reason"] = str(error)
        report["warnings"] = [f"no fit: {error}"]
        return Curve(report, None, bins)
    unit = axis.unit
    gof = goodness_of_fit(fit, x[fitted], same[fitted], bin_index(x[fitted], bin_width))
    levels = thresholds(fit, drop=drop, levels=(0.5,), unit=unit)
    report["fit"] = {
        "model": MODEL_TEXT,
        "num_pairs_fitted": fit.num_judgements,
        "x_range": list(fit.x_range),
        "fit_max": fit_max,
        "num_bootstrap": int(len(fit.bootstrap)),
        **fit.parameters(),
        "thresholds": levels,
        "goodness_of_fit": gof,
    }
    if gof["poor"]:
        worst = gof["largest_residuals"][0]
        warnings.append(
            f"poor fit: deviance {gof['deviance']:.1f} on {gof['degrees_of_freedom']} df "
            f"(p = {gof['p_value']:.1e}); worst at {axis.label} {worst['x_low']:.2f}-{worst['x_high']:.2f} "
            f"{unit}: observed {worst['observed_p_same']:.3f}, model {worst['model_p_same']:.3f} "
            f"({worst['num_judgements']} pairs). Read the bins"
            + ("; --fit-max-db limits the fit" if points.kind == "additive" else "")
        )
    for name, entry in levels.items():
        if entry["x"] is None:
            warnings.append(f"threshold {name} undefined: {entry['reason']}")
    report["warnings"] = warnings
    return Curve(report, fit, bins)


# --- what the curve says of a pair window --------------------------------------------------------


def _step_function(bins: list[dict], width: float) -> Callable[[np.ndarray], np.ndarray]:
    """P(same) of the bin holding each d; NaN where the bin has no pairs."""
    table = {round(b["x_low"] / width): b["p_same"] for b in bins}

    def p_same(d):
        return np.array([table.get(k, np.nan) for k in bin_index(d, width)], dtype=np.float64)

    return p_same


class _Shares:
    """Expected share judged "same" of pair distributions, from cumulative integrals of P(d).

    For a window W and cap M <= W, |ΔSNR| has density 2 (W - d) / (2 W M - M²) on [0, M], so
    the share is (W C0(M) - C1(M)) / (W M - M²/2), C0 and C1 the integrals of P and d P.
    """

    def __init__(self, p_same: Callable[[np.ndarray], np.ndarray], d_max: float, step: float):
        from scipy.integrate import cumulative_trapezoid

        self.d = np.arange(0.0, d_max + step / 2, step)
        p = p_same(self.d)
        self.c0 = cumulative_trapezoid(p, self.d, initial=0.0)
        self.c1 = cumulative_trapezoid(p * self.d, self.d, initial=0.0)

    def share(self, window, cap) -> np.ndarray:
        window, cap = np.asarray(window, dtype=np.float64), np.asarray(cap, dtype=np.float64)
        c0, c1 = np.interp(cap, self.d, self.c0), np.interp(cap, self.d, self.c1)
        return (window * c0 - c1) / (window * cap - cap**2 / 2)


def expected_share_same(
    p_same: Callable[[np.ndarray], np.ndarray],
    snr_window_db: float,
    max_abs_delta_db: float | None = None,
    *,
    step_db: float = 0.01,
) -> float:
    """Expected share of pairs judged "same": P(same | d) integrated against the sampler's
    |ΔSNR| density (`jsqa_tf.data.snr.abs_delta_snr_density`) for this window and cap."""
    cap = snr_window_db if max_abs_delta_db is None else max_abs_delta_db
    return float(_Shares(p_same, cap, min(step_db, cap / 100)).share(snr_window_db, cap))


def _widest(values: np.ndarray, shares: np.ndarray, target: float) -> float | None:
    """The largest value v such that share >= target for every value up to v (None if none)."""
    failing = ~(shares >= target)  # NaN fails
    if failing[0]:
        return None
    return round(float(values[-1] if not failing.any() else values[np.argmax(failing) - 1]), 6)


def pair_window_report(
    curve: Curve,
    pair_config: PairConfig,
    targets: Sequence[float] = (),
    *,
    step_db: float = 0.01,
) -> dict:
    """What the additive curve says of the configured pair distribution, and of other windows.

    Expected share of pairs judged "same": the integral of P(same | d) against the sampler's
    |ΔSNR| density, from the fitted model (bootstrap 95% interval) and from the bins (None where
    a bin inside the window has no pairs). For each target P: the widest window (no cap) inside
    the SNR range, and the largest cap `max_abs_delta_db` for the configured window, whose
    expected share is >= P. Nothing is extrapolated beyond the largest |ΔSNR| observed.
    """
    window, cap = pair_config.snr_window_db, pair_config.max_abs_delta_db
    low, high = pair_config.snr_range_db
    range_width = high - low
    report = {
        "snr_range_db": [low, high],
        "snr_window_db": window,
        "max_abs_delta_db": cap,
        "abs_delta_density": "2 (W - d) / (2 W M - M^2) on [0, M]; W the window, M the cap (W without)",
        "mean_abs_delta_db": expected_mean_abs_delta_db(window, cap),
    }
    cap_value = window if cap is None else cap
    observed_max = max((b["x_high"] for b in curve.bins), default=0.0)
    if curve.fit is not None:
        observed_max = curve.fit.x_range[1]
    d_max = min(max(range_width, window), observed_max)
    share_bins = _Shares(_step_function(curve.bins, curve.report["bin_width"]), d_max, step_db)
    expected = {"bins": None, "fit": None, "fit_ci95": None}
    if cap_value > observed_max:
        expected["reason"] = f"the window reaches {cap_value:g} dB, beyond the largest |ΔSNR| observed"
    else:
        from_bins = float(share_bins.share(window, cap_value))
        expected["bins"] = from_bins if math.isfinite(from_bins) else None
        if expected["bins"] is None:
            expected["bins_reason"] = "a |ΔSNR| bin inside the window holds no pairs"
    models: list[Psychometric] = []
    if curve.fit is not None:
        models = [curve.fit.model, *curve.fit.bootstrap_models()]
    shares = [_Shares(model, d_max, step_db) for model in models]
    if shares and "reason" not in expected:
        values = np.array([float(s.share(window, cap_value)) for s in shares])
        expected["fit"] = float(values[0])
        if len(values) > 1:
            expected["fit_ci95"] = percentile_ci95(values[1:])
    report["expected_share_same"] = expected

    windows = np.arange(step_db, min(range_width, observed_max) + step_db / 2, step_db)
    caps = np.arange(step_db, min(window, observed_max) + step_db / 2, step_db)
    answers = []
    for target in targets:
        entry = {"target_same": target}
        for name, values, limit, limit_name, compute in (
            ("widest_snr_window_db", windows, range_width, "snr_range_db", lambda s, v: s.share(v, v)),
            ("max_abs_delta_db", caps, window, "snr_window_db", lambda s, v: s.share(window, v)),
        ):
            result = {"fit": None, "fit_ci95": None, "bins": None}
            if len(values) == 0:
                result["reason"] = "no |ΔSNR| observed"
                entry[name] = result
                continue
            result["bins"] = _widest(values, compute(share_bins, values), target)
            found = [_widest(values, compute(s, values), target) for s in shares]
            if found:
                result["fit"] = found[0]
                boot = np.array([np.nan if v is None else v for v in found[1:]])
                defined = float(np.mean(np.isfinite(boot))) if len(boot) else 0.0
                if defined >= 0.95:
                    result["fit_ci95"] = percentile_ci95(boot[np.isfinite(boot)])
                elif len(boot):
                    result["fit_ci95_reason"] = (
                        f"the target is out of reach in {1 - defined:.0%} of the resamples"
                    )
            if result["fit"] is None and shares:
                start = float(compute(shares[0], values[:1])[0])
                result["reason"] = f"even {values[0]:g} dB gives an expected share of {start:.3f} < {target}"
            elif result["fit"] is not None and result["fit"] >= values[-1] - step_db / 2:
                below_limit = values[-1] < limit - step_db / 2
                result["limited_by"] = "the largest |ΔSNR| observed" if below_limit else limit_name
            entry[name] = result
        answers.append(entry)
    report["targets"] = answers
    return report


# --- the human window of each kind -----------------------------------------------------------------


def human_p_same(
    pairs: str | os.PathLike | Sequence[LabelledPair],
    kind: str,
    *,
    fit_max: float | None = None,
) -> Psychometric:
    """The fitted P(same | difference) of one kind of degradation, from a CDPAM list: a
    callable of the difference in the kind's unit (`AXES[kind].unit`: dB of |ΔSNR| for
    additive, octaves of bitrate for mp3, the reverb parameter distance for reverb), NumPy in
    and out. The pooled maximum-likelihood fit of `fit_curve` (identical pairs left out), with
    only the pairs with difference <= `fit_max` when given.

    Args:
        pairs: the list's path, or its pairs already read (`jsqa_tf.jnd.read_cdpam_list`).
        kind: "additive", "mp3" or "reverb".
        fit_max: fit only differences up to this.

    Raises:
        ConfigError: an unknown kind or one without human judgements (bandwidth), or too few
            pairs of the kind to fit.
    """
    if kind not in KINDS:
        raise ConfigError(
            f"no human judgements of {kind!r} in a CDPAM list; kinds with them: {', '.join(KINDS)}"
        )
    if not isinstance(pairs, Sequence) or isinstance(pairs, str):
        pairs = read_cdpam_list(pairs)
    points = curve_points(pairs, kind)
    chosen = ~points.identical
    if fit_max is not None:
        chosen &= points.x <= fit_max
    try:
        return fit_psychometric(points.x[chosen], points.same[chosen], num_bootstrap=0).model
    except ConfigError as error:
        raise ConfigError(f"{kind}: {error}")


def allowed_differences(
    curve: Curve, kind: str, targets: Sequence[float], *, step: float | None = None
) -> list:
    """What a `--target-same P` means for one kind's fitted curve, for each P:

    - `max_difference`: the largest difference d with P(same | d) >= P (the curve falls, so
      every pair whose degrees differ by at most d is judged the same with probability >= P),
      with a bootstrap 95% interval; None with a reason where P is above the ceiling, below the
      floor or reached outside the differences observed (nothing is extrapolated);
    - `widest_uniform_window`: the largest W whose differences drawn uniformly on [0, W] are
      judged the same with a mean probability >= P (the fit alone), within the range observed.
    """
    unit = AXES[kind].unit
    if curve.fit is None:
        reason = curve.report.get("fit_reason", "no fit")
        return [{"target_same": t, "max_difference": None, "unit": unit, "reason": reason} for t in targets]
    levels = thresholds(curve.fit, levels=tuple(targets), unit=unit)
    low, high = curve.fit.x_range
    step = step or high / 2000
    d = np.arange(0.0, high + step / 2, step)
    from scipy.integrate import cumulative_trapezoid

    mean_p = cumulative_trapezoid(curve.fit.model(d), d, initial=0.0)[1:] / d[1:]
    answers = []
    for target in targets:
        entry = levels[f"p_same_{target:g}"]
        answer = {"target_same": target, "max_difference": entry["x"], "ci95": entry["ci95"], "unit": unit}
        if entry["x"] is None:
            answer["reason"] = entry["reason"]
        elif entry.get("ci95_reason"):
            answer["ci95_reason"] = entry["ci95_reason"]
        answer["widest_uniform_window"] = _widest(d[1:], mean_p, target)
        answers.append(answer)
    return answers


# --- the whole report ------------------------------------------------------------------------------


def curve_report(
    pairs: Sequence[LabelledPair],
    *,
    kinds: Sequence[str] = ("additive",),
    pair_config: PairConfig,
    bin_width_db: float = 1.0,
    drop: float = 0.1,
    num_bootstrap: int = 500,
    seed: int = 0,
    targets: Sequence[float] = (),
    fit_max_db: float | None = None,
    per_type: bool = True,
) -> tuple[dict, dict[str, Curve]]:
    """The full `jsqa-tf jnd curve` report, and the pooled curve of each kind (for plots).

    Additive noise is pooled over its noise types and also reported per type; mp3 and reverb,
    when chosen in `kinds`, have their own axes and are never mixed with |ΔSNR|.
    """
    check_curve_settings(bin_width_db=bin_width_db, drop=drop, num_bootstrap=num_bootstrap, targets=targets)
    if fit_max_db is not None and not fit_max_db > 0:
        raise ConfigError(f"fit_max_db must be > 0, got {fit_max_db}")
    counts = {kind: sum(1 for p in pairs if p.kind == kind) for kind in KINDS}
    report = {
        "kinds": list(kinds),
        "num_lines": len(pairs),
        "num_lines_by_kind": counts,
        "not_used": {kind: n for kind, n in counts.items() if kind not in kinds and n},
    }
    curves = {}
    warnings = []
    for kind in kinds:
        points = curve_points(pairs, kind)
        axis = AXES[kind]
        width = bin_width_db if kind == "additive" else axis.bin_width
        options = dict(bin_width=width, drop=drop, num_bootstrap=num_bootstrap, seed=seed)
        options["fit_max"] = fit_max_db if kind == "additive" else None
        section = {"axis": axis.name, "label": axis.label, "unit": axis.unit, "skipped": points.num_skipped}
        if not len(points.x):
            section["reason"] = f"no {kind} pairs of one source with numbers in their names"
            report[kind] = section
            warnings.append(f"{kind}: {section['reason']}")
            continue
        pooled = fit_curve(points, **options)
        curves[kind] = pooled
        section["pooled"] = pooled.report
        if targets:
            section["target_same"] = allowed_differences(pooled, kind, targets)
        warnings += [f"{kind} pooled: {w}" for w in pooled.report["warnings"]]
        types = sorted({t for t in points.noise_type if t})
        if per_type and kind == "additive" and len(types) > 1:
            section["per_noise_type"] = {}
            for noise_type in types:
                curve = fit_curve(points, points.noise_type == noise_type, **options)
                section["per_noise_type"][noise_type] = curve.report
                warnings += [f"{kind} {noise_type}: {w}" for w in curve.report["warnings"]]
        report[kind] = section
    if "additive" in curves:
        report["pair_window"] = pair_window_report(curves["additive"], pair_config, targets)
    else:
        report["pair_window"] = None
        report["pair_window_reason"] = "needs additive-noise pairs (the sampler mixes additive noise)"
    report["warnings"] = warnings
    return report, curves


def curve_from_list(
    pair_list: str | os.PathLike,
    *,
    pair_config: PairConfig,
    plot_path: str | os.PathLike | None = None,
    **options,
) -> dict:
    """`jsqa-tf jnd curve`: the `curve_report` of a CDPAM list (its path in "list"), and,
    with `plot_path`, the curve as a PNG there (its path in "plot"; checked writable before
    the list is read). `options`: those of `curve_report`."""
    from jsqa_tf import atomic

    if plot_path:
        atomic.check_writable(plot_path)
    report, curves = curve_report(read_cdpam_list(pair_list), pair_config=pair_config, **options)
    report["list"] = os.path.abspath(pair_list)
    if plot_path:
        from jsqa_tf.plots import jnd_curve_png

        png = jnd_curve_png(report, curves, pair_config)
        with atomic.atomic_path(plot_path) as temp_path, open(temp_path, "wb") as stream:
            stream.write(png)
        report["plot"] = os.path.abspath(plot_path)
    return report


def _threshold_text(entry: dict, unit: str) -> str:
    if entry["x"] is None:
        return "undefined"
    interval = entry.get("ci95")
    ci = f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else ""
    return f"{entry['x']:.2f}{ci} {unit}"


def summary_lines(report: dict) -> list[str]:
    """A `curve_report` in a few lines for people: each kind's fitted floor, ceiling and
    thresholds; the pair window's expected share judged same; each --target-same answer."""
    lines = []
    for kind in report["kinds"]:
        fit = (report.get(kind) or {}).get("pooled", {}).get("fit")
        if fit:
            levels, unit = fit["thresholds"], report[kind]["unit"]
            lines.append(
                f"{kind}: floor {fit['floor']:.3f}, ceiling {fit['ceiling']:.3f}; "
                + "; ".join(f"{name} {_threshold_text(levels[name], unit)}" for name in levels)
                + f" ({fit['num_pairs_fitted']} pairs)"
            )
    for kind in report["kinds"]:
        if kind == "additive":
            continue  # its answer is the pair window's, below
        for answer in (report.get(kind) or {}).get("target_same", []):
            label = AXES[kind].label
            if answer["max_difference"] is None:
                lines.append(f"{kind} --target-same {answer['target_same']:g}: none ({answer['reason']})")
                continue
            interval = answer.get("ci95")
            ci = f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else ""
            lines.append(
                f"{kind} --target-same {answer['target_same']:g}: {label} <= "
                f"{answer['max_difference']:.2f}{ci} {answer['unit']}"
            )
    window = report.get("pair_window")
    if not window:
        return lines
    share = window["expected_share_same"]
    if share["fit"] is not None:
        lines.append(
            f"pair window {window['snr_window_db']:g} dB"
            + (f", |ΔSNR| <= {window['max_abs_delta_db']:g} dB" if window["max_abs_delta_db"] else "")
            + f": expected share judged same {share['fit']:.3f} (fit), "
            + (f"{share['bins']:.3f} (bins)" if share["bins"] is not None else "bins: n/a")
        )
    for answer in window["targets"]:
        parts = []
        for name, option in (
            ("widest_snr_window_db", "--snr-window"),
            ("max_abs_delta_db", "--max-abs-delta"),
        ):
            value = answer[name]["fit"]
            parts.append(f"{option} {value:.2f}" if value is not None else f"{option}: none")
        lines.append(f"--target-same {answer['target_same']:g}: " + ", or ".join(parts))
    return lines


def check_curve_settings(
    *, bin_width_db: float, drop: float, num_bootstrap: int, targets: Sequence[float] = ()
) -> None:
    """Raises `ConfigError` for settings `curve_report` cannot use (run before reading a list)."""
    if not bin_width_db > 0:
        raise ConfigError(f"bin width must be > 0 dB, got {bin_width_db}")
    if not 0 < drop < 1:
        raise ConfigError(f"drop must be in (0, 1), got {drop}")
    if num_bootstrap < 1:
        raise ConfigError(f"bootstrap resamples must be >= 1, got {num_bootstrap}")
    for target in targets:
        if not 0 < target < 1:
            raise ConfigError(f"target share judged same must be in (0, 1), got {target}")


HUMAN_KINDS = {"additive": "additive", "codec": "mp3", "reverb": "reverb"}
"""The kind of CDPAM's human judgements (`human_p_same`) each pair family's
|Δ| is read against; bandwidth has none."""
ADDITIVE_FIT_MAX_DB = 52.0
"""The additive curve is fitted below the list's largest step (52.04 dB), where one floor
follows the data (docs/jnd.md, "What CDPAM's labels say")."""


def family_curves(jnd_list: str | os.PathLike, families) -> dict:
    """{pair family: CDPAM's fitted P(same | |Δ|) for its kind (`human_p_same`), or None
    (bandwidth: no human data)}: what `jsqa-tf pairs --jnd-list` reads each family's |Δ| against."""
    labelled = read_cdpam_list(jnd_list)
    return {
        family: human_p_same(
            labelled, HUMAN_KINDS[family], fit_max=ADDITIVE_FIT_MAX_DB if family == "additive" else None
        )
        if family in HUMAN_KINDS
        else None
        for family in families
    }
