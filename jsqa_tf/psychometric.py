"""A psychometric function with a floor and a ceiling, fitted to yes/no judgements (NumPy, SciPy).

For a size of difference x >= 0 (|ΔSNR| in dB for the JND curve):

    P(same | x) = floor + (ceiling - floor) * (1 + exp(-midpoint / width))
                                             / (1 + exp((x - midpoint) / width))

a logistic in x with a free lower asymptote (the floor: the share still called "same" however
large the difference) and a free upper level (the ceiling = P(same | x = 0), i.e. 1 - lapse:
listeners who call a difference too small to hear "different"). The logistic is scaled so that
its upper level is reached at x = 0, the edge of the domain, not at x -> -inf: where the curve
already falls at x = 0 (CDPAM's list), a plain four-parameter logistic puts its ceiling at an
asymptote no pair can show. Where midpoint >> width the two are the same curve. A plain
logistic 1 / (1 + exp((x - m) / w)) is floor 0, ceiling 1 / (1 + exp(-m / w)).

Fitted by maximum likelihood (L-BFGS-B on unconstrained parameters, analytic gradient, several
starts), with bootstrap intervals. Thresholds are defined on the model's own range and only
inside the observed x range: a level the model never reaches, or reaches outside the data, gives
None and the reason, never an extrapolated (or negative) x.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from jsqa_tf.errors import ConfigError

PARAMETER_NAMES = ("floor", "ceiling", "midpoint", "width")
_LOGIT_BOUND = 12.0  # floor and the ceiling's share of (1 - floor) within [6e-6, 1 - 6e-6]
_EPS = 1e-12


def _expit(u):
    return 0.5 * (1 + np.tanh(0.5 * np.asarray(u, dtype=np.float64)))


def _softplus(u):
    return np.logaddexp(0.0, u)


def _logit(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))


@dataclasses.dataclass(frozen=True)
class Psychometric:
    """P(same | x), x >= 0, falling from `ceiling` at x = 0 towards `floor` (module docstring).

    Args:
        floor: P(same) for very large x.
        ceiling: P(same) at x = 0 (1 - lapse rate).
        midpoint: centre of the logistic, in x units.
        width: x units per e-fold of the logistic.
    """

    floor: float
    ceiling: float
    midpoint: float
    width: float

    def shape(self, x) -> np.ndarray:
        """The falling part, 1 at x = 0 and -> 0 for large x."""
        a = self.midpoint / self.width
        z = np.asarray(x, dtype=np.float64) / self.width - a
        return np.exp(_softplus(-a) - _softplus(z))

    def __call__(self, x) -> np.ndarray:
        return self.floor + (self.ceiling - self.floor) * self.shape(x)

    def x_at(self, p_same: float) -> float | None:
        """x >= 0 where P(same) = p_same; None unless floor < p_same <= ceiling."""
        if not self.floor < p_same <= self.ceiling:
            return None
        q = (p_same - self.floor) / (self.ceiling - self.floor)
        a = self.midpoint / self.width
        log_term = np.logaddexp(math.log1p(-q) if q < 1 else -math.inf, -a) - math.log(q)
        return max(0.0, self.midpoint + self.width * float(log_term))

    def as_dict(self) -> dict:
        return {name: float(getattr(self, name)) for name in PARAMETER_NAMES}


def _to_model(u: np.ndarray) -> Psychometric:
    floor = float(_expit(u[0]))
    ceiling = floor + (1 - floor) * float(_expit(u[1]))
    return Psychometric(floor, ceiling, float(u[2]), float(math.exp(u[3])))


def _to_free(model: Psychometric) -> np.ndarray:
    share = (model.ceiling - model.floor) / max(1 - model.floor, 1e-9)
    return np.array([_logit(model.floor), _logit(share), model.midpoint, math.log(model.width)])


def _negative_log_likelihood(u, x, trials, same):
    """−log L and its gradient in the free parameters (logit floor, logit of the ceiling's
    share of 1 − floor, midpoint, log width), for `same` of `trials` judgements at each x."""
    floor, share = _expit(u[0]), _expit(u[1])
    ceiling = floor + (1 - floor) * share
    width = math.exp(u[3])
    a = u[2] / width
    z = x / width - a
    shape = np.exp(_softplus(-a) - _softplus(z))
    p = np.clip(floor + (ceiling - floor) * shape, _EPS, 1 - _EPS)
    different = trials - same
    value = -float(np.sum(same * np.log(p) + different * np.log1p(-p)))
    d_p = -(same / p - different / (1 - p))
    d_floor = floor * (1 - floor)
    d_shape_d_midpoint = shape * (_expit(z) - _expit(-a)) / width
    d_shape_d_log_width = shape * (a * _expit(-a) + z * _expit(z))
    gradient = np.array(
        [
            np.sum(d_p * ((1 - shape) * d_floor + shape * d_floor * (1 - share))),
            np.sum(d_p * shape * (1 - floor) * share * (1 - share)),
            np.sum(d_p * (ceiling - floor) * d_shape_d_midpoint),
            np.sum(d_p * (ceiling - floor) * d_shape_d_log_width),
        ]
    )
    return value, gradient


def _bounds(x: np.ndarray) -> list[tuple[float, float]]:
    low, high = float(x.min()), float(x.max())
    span = max(high - low, 1e-6)
    return [
        (-_LOGIT_BOUND, _LOGIT_BOUND),
        (-_LOGIT_BOUND, _LOGIT_BOUND),
        (low - span, high + span),
        (math.log(span * 1e-3), math.log(span * 10)),
    ]


def _minimise(start: np.ndarray, x, trials, same, bounds):
    """Minimises the negative log-likelihood from `start` within `bounds`.

    BFGS on t with u = centre + half · tanh(t) per parameter: the bounds hold without a bounded
    method (scipy's L-BFGS-B takes ~0.5 ms an iteration on 4 parameters, BFGS ~0.1 ms).
    """
    from scipy.optimize import minimize

    centre = np.array([(lo + hi) / 2 for lo, hi in bounds])
    half = np.array([(hi - lo) / 2 for lo, hi in bounds])
    limit = 1 - 1e-9

    def objective(t):
        tanh = np.tanh(t)
        value, gradient = _negative_log_likelihood(centre + half * tanh, x, trials, same)
        return value, gradient * half * (1 - tanh**2)

    t0 = np.arctanh(np.clip((np.asarray(start) - centre) / half, -limit, limit))
    result = minimize(objective, t0, jac=True, method="BFGS", options={"gtol": 1e-6, "maxiter": 500})
    return centre + half * np.tanh(result.x), float(result.fun)


def _grouped(x: np.ndarray, same: np.ndarray, weights: np.ndarray | None = None):
    """Unique x with the count of judgements and of "same" at each (weights: resample counts)."""
    values, inverse = np.unique(x, return_inverse=True)
    weights = np.ones(len(x)) if weights is None else weights
    trials = np.bincount(inverse, weights=weights, minlength=len(values))
    same_count = np.bincount(inverse, weights=weights * same, minlength=len(values))
    return values, inverse, trials, same_count


def _starts(x: np.ndarray, same: np.ndarray) -> list[np.ndarray]:
    order = np.argsort(x)
    fifth = max(1, len(x) // 5)
    top = float(np.mean(same[order[:fifth]]))
    bottom = float(np.mean(same[order[-fifth:]]))
    floor = min(max(min(top, bottom), 0.02), 0.9)
    ceiling = min(max(max(top, bottom), floor + 0.05), 0.99)
    span = max(float(x.max() - x.min()), 1e-6)
    starts = []
    for level_floor, level_ceiling in [(floor, ceiling), (0.01, 0.99)]:
        for midpoint in np.quantile(x, [0.2, 0.4, 0.6, 0.8]):
            for width in (span / 50, span / 10):
                model = Psychometric(level_floor, level_ceiling, float(midpoint), width)
                starts.append(_to_free(model))
    return starts


@dataclasses.dataclass(frozen=True)
class PsychometricFit:
    """A maximum-likelihood fit and its bootstrap replicates.

    Args:
        model: the fitted curve.
        x_range: (smallest, largest) x of the judgements fitted: thresholds live inside it.
        num_judgements: judgements fitted.
        num_same: of them, "same".
        negative_log_likelihood: at the fit.
        bootstrap: [B, 4] (floor, ceiling, midpoint, width) of the fits to B resamples.
    """

    model: Psychometric
    x_range: tuple[float, float]
    num_judgements: int
    num_same: int
    negative_log_likelihood: float
    bootstrap: np.ndarray

    def fall_test(self) -> dict:
        """Likelihood ratio of the fit against a constant P(same) (3 df) and its p-value."""
        from scipy.stats import chi2

        p = self.num_same / self.num_judgements
        constant = -(self.num_same * math.log(p) + (self.num_judgements - self.num_same) * math.log1p(-p))
        ratio = max(0.0, 2 * (constant - self.negative_log_likelihood))
        return {"likelihood_ratio": ratio, "p_value": float(chi2.sf(ratio, 3))}

    def bootstrap_models(self) -> list[Psychometric]:
        return [Psychometric(*row) for row in self.bootstrap]

    def parameters(self) -> dict:
        """The parameters with bootstrap 95% intervals."""
        result = {}
        for index, name in enumerate(PARAMETER_NAMES):
            column = self.bootstrap[:, index]
            result[name] = float(getattr(self.model, name))
            result[f"{name}_ci95"] = percentile_ci95(column) if len(column) else None
        result["fall_test"] = self.fall_test()
        return result


def percentile_ci95(values: np.ndarray) -> list[float]:
    """[2.5th, 97.5th] percentiles."""
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def fit_psychometric(
    x: np.ndarray, same: np.ndarray, *, num_bootstrap: int = 500, seed: int = 0
) -> PsychometricFit:
    """Maximum-likelihood `Psychometric` fit of judgements (`same` True/False at each x).

    Bootstrap: `num_bootstrap` resamples of the judgements with replacement, each refitted from
    the full fit. Raises `ConfigError` when the data cannot support four parameters (fewer than
    20 judgements, fewer than 3 distinct x, or only one kind of judgement).
    """
    x, same = np.asarray(x, dtype=np.float64), np.asarray(same, dtype=bool)
    if num_bootstrap < 0:
        raise ConfigError(f"num_bootstrap must be >= 0, got {num_bootstrap}")
    if len(x) < 20 or len(np.unique(x)) < 3 or same.all() or not same.any():
        raise ConfigError(
            f"need at least 20 judgements at 3 or more distinct values with both answers to fit a "
            f"curve; have {len(x)} at {len(np.unique(x))} value(s), {int(same.sum())} 'same'"
        )
    values, inverse, trials, same_count = _grouped(x, same)
    bounds = _bounds(values)
    best, best_value = None, math.inf
    for start in _starts(x, same):
        u, value = _minimise(start, values, trials, same_count, bounds)
        if value < best_value:
            best, best_value = u, value
    rng = np.random.default_rng(seed)
    replicates = []
    for _ in range(num_bootstrap):
        weights = np.bincount(rng.integers(0, len(x), len(x)), minlength=len(x)).astype(np.float64)
        resampled_trials = np.bincount(inverse, weights=weights, minlength=len(values))
        resampled_same = np.bincount(inverse, weights=weights * same, minlength=len(values))
        u, _ = _minimise(best, values, resampled_trials, resampled_same, bounds)
        replicates.append([getattr(_to_model(u), name) for name in PARAMETER_NAMES])
    return PsychometricFit(
        model=_to_model(best),
        x_range=(float(x.min()), float(x.max())),
        num_judgements=int(len(x)),
        num_same=int(same.sum()),
        negative_log_likelihood=best_value,
        bootstrap=np.array(replicates, dtype=np.float64).reshape(-1, len(PARAMETER_NAMES)),
    )


# --- thresholds ---------------------------------------------------------------------------------


LEVELLED_SHARE = 0.1
"""The half-way threshold needs the curve to come within this share of its fall to the floor
inside the data: otherwise the floor, and so the half-way level, is an extrapolation."""
FALL_P_VALUE = 0.05
"""Thresholds need a fall: the fit must beat a constant P(same) (likelihood ratio, 3 df)."""


def _located(
    model: Psychometric, name: str, p_same: float, x_range: tuple[float, float], unit: str
) -> tuple[float | None, str | None]:
    """(x, None) where the model reaches p_same inside x_range, else (None, the reason)."""
    low, high = x_range
    if name == "half_way" and model.shape(high) > LEVELLED_SHARE:
        return None, (
            f"the curve has not levelled off by the largest value observed ({high:.2f} {unit}): "
            f"its floor ({model.floor:.3f}) and so the half-way level are extrapolated"
        )
    x = model.x_at(p_same)
    if x is None:
        return None, (
            f"P(same) = {p_same:.3f} is outside the fitted range "
            f"(floor {model.floor:.3f}, ceiling {model.ceiling:.3f})"
        )
    if x < low:
        return None, f"reached at {x:.2f} {unit}, below the smallest value observed ({low:.2f} {unit})"
    if x > high:
        return None, f"reached at {x:.2f} {unit}, beyond the largest value observed ({high:.2f} {unit})"
    return x, None


def threshold_levels(model: Psychometric, drop: float, levels: tuple[float, ...] = ()) -> dict:
    """{name: P(same)} of the thresholds: half-way between floor and ceiling, `drop` below the
    ceiling, and any absolute `levels`."""
    named = {
        "half_way": (model.floor + model.ceiling) / 2,
        f"ceiling_minus_{drop:g}": model.ceiling - drop,
    }
    named.update({f"p_same_{level:g}": level for level in levels})
    return named


def thresholds(
    fit: PsychometricFit, *, drop: float = 0.1, levels: tuple[float, ...] = (0.5,), unit: str = ""
) -> dict:
    """Thresholds on the model's range with bootstrap 95% intervals.

    Each: `p_same` (the level), `x` (None with `reason` where the data show no fall, or the
    model does not reach the level inside the observed range, or, for the half-way level, the
    floor lies beyond the data), `ci95` (2.5 and 97.5 percentiles over the resamples where it
    is defined; None when it is undefined in more than 5% of them), `share_of_resamples_defined`.
    The half-way and drop levels follow each resample's own floor and ceiling.
    """
    if not 0 < drop < 1:
        raise ConfigError(f"drop must be in (0, 1), got {drop}")
    report = {}
    boot_models = fit.bootstrap_models()
    fall = fit.fall_test()
    for name, p_same in threshold_levels(fit.model, drop, levels).items():
        if fall["p_value"] >= FALL_P_VALUE:
            reason = (
                "the data show no significant fall in P(same) (likelihood ratio "
                f"{fall['likelihood_ratio']:.1f} against a constant, p = {fall['p_value']:.2f})"
            )
            report[name] = {"p_same": float(p_same), "x": None, "reason": reason, "ci95": None}
            continue
        x, reason = _located(fit.model, name, p_same, fit.x_range, unit)
        located = []
        for model in boot_models:
            level = threshold_levels(model, drop, levels)[name]
            value, _ = _located(model, name, level, fit.x_range, unit)
            if value is not None:
                located.append(value)
        defined = len(located) / len(boot_models) if boot_models else None
        entry = {"p_same": float(p_same), "x": x, "reason": reason, "ci95": None}
        if x is not None and defined is not None:
            if defined >= 0.95:
                entry["ci95"] = percentile_ci95(np.array(located))
            else:
                entry["ci95_reason"] = f"undefined in {1 - defined:.0%} of the bootstrap resamples"
        entry["share_of_resamples_defined"] = defined
        report[name] = entry
    return report


# --- goodness of fit ------------------------------------------------------------------------------


def _plain_logistic(x: np.ndarray, same: np.ndarray, iterations: int = 100) -> np.ndarray:
    """P(same) at x of the two-parameter logistic 1 / (1 + exp(-(a + b x))) fitted by
    Newton–Raphson: the model `jsqa-tf jnd curve` used to fit, for comparison."""
    design = np.stack([np.ones_like(x), x], axis=1)
    target = same.astype(np.float64)
    params = np.zeros(2)
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-np.clip(design @ params, -500, 500)))
        hessian = design.T @ (design * (p * (1 - p) + 1e-12)[:, None])
        step = np.linalg.solve(hessian + 1e-9 * np.eye(2), design.T @ (target - p))
        params += step
        if np.max(np.abs(step)) < 1e-10:
            break
    return 1 / (1 + np.exp(-np.clip(design @ params, -500, 500)))


def _grouped_deviance(group: np.ndarray, same: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    count = np.bincount(group).astype(np.float64)
    observed = np.bincount(group, weights=same.astype(np.float64))
    expected = np.bincount(group, weights=predicted)
    keep = count > 0
    count, observed, expected = count[keep], observed[keep], expected[keep]
    expected = np.clip(expected, _EPS, count - _EPS)

    def term(o, e):
        return np.where(o > 0, o * np.log(np.maximum(o, _EPS) / e), 0.0)

    deviance = 2 * float(np.sum(term(observed, expected) + term(count - observed, count - expected)))
    pearson = float(np.sum((observed - expected) ** 2 / (expected * (1 - expected / count))))
    return deviance, pearson


def merge_small_groups(group: np.ndarray, min_count: int) -> np.ndarray:
    """Relabels ordered groups (0, 1, ...) so that each holds at least `min_count` items, by
    merging each small group into the next one (the last into the one before)."""
    labels = np.unique(group)
    counts = np.array([np.sum(group == label) for label in labels])
    mapping, current, running = {}, 0, 0
    for label, count in zip(labels, counts, strict=True):
        mapping[label] = current
        running += count
        if running >= min_count:
            current, running = current + 1, 0
    if running and current > 0:  # a short tail joins the group before it
        mapping = {label: min(value, current - 1) for label, value in mapping.items()}
    return np.array([mapping[label] for label in group])


def goodness_of_fit(
    fit: PsychometricFit,
    x: np.ndarray,
    same: np.ndarray,
    group: np.ndarray,
    *,
    min_count: int = 10,
    poor_p_value: float = 0.01,
) -> dict:
    """Deviance and Pearson χ² of the fit against grouped judgements (e.g. |ΔSNR| bins).

    Groups (ordered integer labels, one per judgement) with fewer than `min_count` judgements
    are merged with their neighbour first. Degrees of freedom: groups − 4. Also reported: the
    plain two-parameter logistic's deviance on the same groups, the groups with the largest
    Pearson residuals, and `poor` (p < `poor_p_value`).
    """
    from scipy.stats import chi2

    x, same = np.asarray(x, dtype=np.float64), np.asarray(same, dtype=bool)
    group = merge_small_groups(np.asarray(group), min_count)
    predicted = fit.model(x)
    deviance, pearson = _grouped_deviance(group, same, predicted)
    num_groups = int(len(np.unique(group)))
    dof = num_groups - len(PARAMETER_NAMES)
    p_value = float(chi2.sf(deviance, dof)) if dof > 0 else None
    plain, _ = _grouped_deviance(group, same, _plain_logistic(x, same))
    residuals = []
    for label in np.unique(group):
        members = group == label
        n = int(members.sum())
        observed, expected = float(same[members].mean()), float(predicted[members].mean())
        z = (observed - expected) / math.sqrt(max(expected * (1 - expected) / n, _EPS))
        residuals.append(
            {
                "x_low": float(x[members].min()),
                "x_high": float(x[members].max()),
                "num_judgements": n,
                "observed_p_same": observed,
                "model_p_same": expected,
                "pearson_residual": z,
            }
        )
    residuals.sort(key=lambda r: -abs(r["pearson_residual"]))
    return {
        "deviance": deviance,
        "pearson_chi2": pearson,
        "degrees_of_freedom": dof,
        "p_value": p_value,
        "num_groups": num_groups,
        "min_judgements_per_group": min_count,
        "plain_logistic_deviance": plain,
        "poor": p_value is not None and p_value < poor_p_value,
        "largest_residuals": residuals[:3],
    }
