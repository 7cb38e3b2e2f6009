"""MOS prediction metrics in NumPy: PCC, SRCC, RMSE, MAE, ITU-T P.1401 mappings, bootstrap CIs.

Per file and per condition, as in NISQA's `calc_eval_metrics` and ITU-T P.1401:
    pcc             Pearson's linear correlation
    srcc            Spearman's rank correlation (tied values share their average rank)
    rmse, mae       root-mean-square and mean absolute error of the raw predictions
    rmse_mapped_1   RMSE after the first-order mapping y_true ~ a + b * y_pred (P.1401 §7.7)
    rmse_mapped_3   RMSE after a third-order polynomial mapping constrained to increase
                    monotonically over the range of the predictions (P.1401, NISQA)
Every RMSE divides by N (the number of files or conditions). P.1401 eq. 7-29 divides the
squared error after a mapping by N - d (d: the mapping's degrees of freedom); `rmse_mapped`
takes `ddof=d` for that, the reports here do not use it.

A per-condition figure compares the mean MOS of each condition with the mean prediction of its
files; the mappings are then fitted on the condition means.

Confidence intervals are percentile bootstraps: per file, files are drawn with replacement;
per condition, whole conditions are (a cluster bootstrap: a drawn condition brings all its
files, so its means are unchanged and the resample is one of condition-level points). A
resample is held as a row of counts (how often each item was drawn), so every metric of all
resamples comes from a few matrix products and sorts, with no Python loop over resamples:
    - Spearman: a tie group's average rank within a resample follows from the counts of the
      groups sorted below it; SRCC is the count-weighted Pearson of those ranks.
    - the monotonic cubic: the constrained least-squares fit is found by enumerating the
      possible active sets of its constraint (unconstrained; slope zero at the lower end, at
      the upper end, at both; a double root of the slope inside the range, searched on a
      grid of positions; a straight line; a constant) and keeping the feasible fit of least
      error. The point estimate keeps the better of this solver's fit and SciPy SLSQP's.
Values that are undefined in a resample (a correlation of a constant) are left out of the
percentiles.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from numpy.polynomial import Polynomial
from scipy import optimize

FILE_METRICS = ("pcc", "srcc", "rmse", "mae", "rmse_mapped_1", "rmse_mapped_3")
CONDITION_METRICS = ("pcc", "srcc", "rmse", "rmse_mapped_1", "rmse_mapped_3")
HIGHER_IS_BETTER = {
    "pcc": True,
    "srcc": True,
    "rmse": False,
    "mae": False,
    "rmse_mapped_1": False,
    "rmse_mapped_3": False,
}
MIN_CONDITIONS = 3  # fewer distinct conditions: no per-condition figures
NUM_SLOPE_SAMPLES = 201  # points of the range where SLSQP's fit must not decrease
NUM_DOUBLE_ROOT_POSITIONS = 64  # grid of the vectorised solver's interior active point

# --- input checks --------------------------------------------------------------------------


def _as_vector(values, name: str) -> np.ndarray:
    try:
        array = np.array(values, dtype=np.float64)  # a copy: inputs are never modified
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: expected numbers ({error})") from None
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]  # a Keras prediction of shape (N, 1)
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of numbers, got shape {array.shape}")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ValueError(
            f"{name}: value {array[bad[0]]} at index {bad[0]} is not a finite number "
            f"({bad.size} such value{'s' if bad.size > 1 else ''})"
        )
    return array


def _as_pair(first, second, names: tuple[str, str] = ("y_true", "y_pred")) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_vector(first, names[0]), _as_vector(second, names[1])
    if a.size != b.size:
        raise ValueError(f"{names[0]} has {a.size} values but {names[1]} has {b.size}")
    if a.size < 2:
        raise ValueError(f"at least 2 points are needed, got {a.size}")
    return a, b


def _is_constant(values: np.ndarray) -> bool:
    return bool(np.all(values == values[0]))


def _check_bootstrap_args(num_bootstrap: int, ci: float) -> None:
    if isinstance(num_bootstrap, bool) or int(num_bootstrap) != num_bootstrap or num_bootstrap < 0:
        raise ValueError(f"num_bootstrap must be an integer >= 0, got {num_bootstrap!r}")
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must be a level between 0 and 1 (e.g. 0.95), got {ci!r}")


def ci_key(ci: float = 0.95) -> str:
    """The key of a confidence interval in the dictionaries made here: "ci95" for 0.95."""
    return f"ci{100 * ci:g}"


# --- metrics -------------------------------------------------------------------------------


def _pcc(a: np.ndarray, b: np.ndarray) -> float:
    if _is_constant(a) or _is_constant(b):
        return math.nan
    ac, bc = a - a.mean(), b - b.mean()
    return float(np.clip((ac @ bc) / math.sqrt((ac @ ac) * (bc @ bc)), -1.0, 1.0))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], values.size]
    ranks = np.empty(values.size)
    ranks[order] = np.repeat((starts + 1 + ends) / 2, ends - starts)  # mean of ranks start+1..end
    return ranks


def pcc(y_true, y_pred) -> float:
    """Pearson's linear correlation coefficient.

    Args:
        y_true: subjective MOS, one value per file (or condition).
        y_pred: predicted MOS, as many values.

    Returns:
        The coefficient; nan when either side is constant (the coefficient is undefined).

    Raises:
        ValueError: fewer than 2 points, lengths that differ, or a value that is not finite.
    """
    return _pcc(*_as_pair(y_true, y_pred))


def srcc(y_true, y_pred) -> float:
    """Spearman's rank correlation coefficient; tied values share their average rank.

    Args:
        y_true: subjective MOS.
        y_pred: predicted MOS, as many values.

    Returns:
        The coefficient; nan when either side is constant.
    """
    a, b = _as_pair(y_true, y_pred)
    return _pcc(_average_ranks(a), _average_ranks(b))


def rmse(y_true, y_pred) -> float:
    """Root-mean-square error of the raw predictions (MOS units).

    Args:
        y_true: subjective MOS.
        y_pred: predicted MOS, as many values.
    """
    a, b = _as_pair(y_true, y_pred)
    return float(np.sqrt(np.mean((a - b) ** 2)))


def mae(y_true, y_pred) -> float:
    """Mean absolute error of the raw predictions (MOS units).

    Args:
        y_true: subjective MOS.
        y_pred: predicted MOS, as many values.
    """
    a, b = _as_pair(y_true, y_pred)
    return float(np.mean(np.abs(a - b)))


# --- P.1401 mappings -----------------------------------------------------------------------


def _first_order(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    if _is_constant(x):
        return float(y.mean()), 0.0
    xc = x - x.mean()
    slope = float(xc @ (y - y.mean()) / (xc @ xc))
    return float(y.mean() - slope * x.mean()), slope


def first_order_mapping(y_pred, y_true) -> tuple[float, float]:
    """Least-squares first-order mapping y_true ~ a + b * y_pred (ITU-T P.1401 §7.7).

    Args:
        y_pred: predicted MOS.
        y_true: subjective MOS, as many values.

    Returns:
        (a, b): offset and slope. Constant predictions give (mean of y_true, 0).
    """
    x, y = _as_pair(y_pred, y_true, names=("y_pred", "y_true"))
    return _first_order(x, y)


def _slopes(coefs: np.ndarray, t) -> np.ndarray:
    """Derivative of the cubic(s) `coefs` (..., 4; increasing order) at t (broadcast)."""
    return coefs[..., 1] + 2 * coefs[..., 2] * t + 3 * coefs[..., 3] * t**2


def _min_slope(coefs: np.ndarray, lo, hi) -> np.ndarray:
    """Least derivative of each cubic over [lo, hi] (exact: the derivative is a parabola)."""
    c2, c3 = coefs[..., 2], coefs[..., 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        vertex = np.where(c3 > 0, -c2 / (3 * np.where(c3 > 0, c3, 1.0)), lo)
    vertex = np.clip(vertex, lo, hi)  # inside the range: where the parabola is lowest if c3 > 0
    return np.minimum(np.minimum(_slopes(coefs, lo), _slopes(coefs, hi)), _slopes(coefs, vertex))


def _slope_tolerance(coefs: np.ndarray) -> np.ndarray:
    return 1e-9 * (np.abs(coefs[..., 1]) + 2 * np.abs(coefs[..., 2]) + 3 * np.abs(coefs[..., 3])) + 1e-15


def _to_x_domain(coefs_t: np.ndarray, centre: float, half_width: float) -> np.ndarray:
    """Coefficients in x of the cubic sum(c_k * ((x - centre) / half_width) ** k)."""
    coefs = Polynomial(coefs_t)(Polynomial([-centre / half_width, 1.0 / half_width])).coef
    return np.pad(coefs, (0, 4 - coefs.size))


def _monotone_linear(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    offset, slope = _first_order(x, y)
    if slope < 0:  # the best non-decreasing straight line is then the mean
        return np.array([float(y.mean()), 0.0, 0.0, 0.0])
    return np.array([offset, slope, 0.0, 0.0])


def third_order_monotonic_mapping(y_pred, y_true) -> np.ndarray:
    """Least-squares cubic y_true ~ a0 + a1 x + a2 x^2 + a3 x^3 of x = y_pred, non-decreasing
    over [min(y_pred), max(y_pred)] (ITU-T P.1401; NISQA's `fit_monotonic_third_order`).

    The fit runs on x scaled to [-1, 1]. If the unconstrained least-squares cubic does not
    decrease on the range it is the answer. Otherwise SciPy's SLSQP minimises the squared error
    from the first-order fit, with the derivative constrained to be >= 0 at 201 points of the
    range; where the slope still dips below zero between those points (by ~1e-5 of its scale),
    the deficit is added to a1. The vectorised solver of the bootstrap gives a second
    candidate; the one with less error is kept. Fewer than 4 distinct predictions, or no
    usable candidate: the first-order fit, or the constant mean if its slope is negative (the
    best non-decreasing straight line).

    Args:
        y_pred: predicted MOS.
        y_true: subjective MOS, as many values.

    Returns:
        The 4 coefficients [a0, a1, a2, a3] (increasing order, for `apply_mapping`).
    """
    x, y = _as_pair(y_pred, y_true, names=("y_pred", "y_true"))
    return _third_order_monotonic(x, y)


def _third_order_monotonic(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    fallback = _monotone_linear(x, y)
    if np.unique(x).size < 4:
        return fallback
    centre, half_width = (x.max() + x.min()) / 2, (x.max() - x.min()) / 2
    t = (x - centre) / half_width
    design = np.vander(t, 4, increasing=True)

    def error(coefs_t: np.ndarray) -> float:
        residual = design @ coefs_t - y
        return float(residual @ residual)

    free = np.linalg.lstsq(design, y, rcond=None)[0]
    if _min_slope(free, -1.0, 1.0) >= 0:
        return _to_x_domain(free, centre, half_width)

    fallback_t = np.array([fallback[0] + fallback[1] * centre, fallback[1] * half_width, 0.0, 0.0])
    candidates = [fallback_t, _slsqp_monotone_cubic(design, y, fallback_t), _active_set_monotone_cubic(t, y)]
    best = min((c for c in candidates if c is not None), key=error)
    return _to_x_domain(best, centre, half_width)


def _slsqp_monotone_cubic(design: np.ndarray, y: np.ndarray, start: np.ndarray) -> np.ndarray | None:
    """SciPy's SLSQP: the least-squares cubic in t (`design`: its Vandermonde matrix, t in
    [-1, 1]) with the slope >= 0 at `NUM_SLOPE_SAMPLES` points of [-1, 1], the slope's dip
    between them added to a1; coefficients in t, or None when SLSQP fails."""
    grid = np.linspace(-1.0, 1.0, NUM_SLOPE_SAMPLES)
    slope_rows = np.stack([np.zeros_like(grid), np.ones_like(grid), 2 * grid, 3 * grid**2], axis=1)

    def objective(coefs_t: np.ndarray) -> tuple[float, np.ndarray]:
        residual = design @ coefs_t - y
        return 0.5 * float(residual @ residual) / y.size, design.T @ residual / y.size

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = optimize.minimize(
            objective,
            start,
            jac=True,
            method="SLSQP",
            constraints=[{"type": "ineq", "fun": lambda c: slope_rows @ c, "jac": lambda c: slope_rows}],
            options={"maxiter": 500, "ftol": 1e-14},
        )
    if not (result.success and np.all(np.isfinite(result.x))):
        return None
    fitted = np.array(result.x, dtype=np.float64)
    fitted[1] -= min(float(_min_slope(fitted, -1.0, 1.0)), 0.0)
    return fitted


def _active_set_monotone_cubic(t: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """The bootstrap's solver (`_monotone_cubic_fits`) on one unweighted sample, t spanning
    [-1, 1] with at least 4 distinct values; coefficients in t, or None when not finite."""
    _, fits = _monotone_cubic_fits(
        t, y, np.ones((1, y.size)), np.array([-1.0]), np.array([1.0]), np.array([4])
    )
    if not np.all(np.isfinite(fits[0])):
        return None
    fitted = fits[0].copy()
    fitted[1] -= min(float(_min_slope(fitted, -1.0, 1.0)), 0.0)
    return fitted


def apply_mapping(coefs, y_pred) -> np.ndarray:
    """Evaluates a mapping polynomial: coefs[0] + coefs[1] * x + coefs[2] * x^2 + ...

    Args:
        coefs: coefficients in increasing order: (a, b) of `first_order_mapping` or the 4 of
            `third_order_monotonic_mapping`.
        y_pred: predicted MOS (any shape).

    Returns:
        The mapped predictions, a float64 array of y_pred's shape.
    """
    coefs = np.asarray(coefs, dtype=np.float64)
    if coefs.ndim != 1 or coefs.size == 0:
        raise ValueError(f"coefs: expected a 1-D sequence of coefficients, got shape {coefs.shape}")
    return np.polynomial.polynomial.polyval(np.asarray(y_pred, dtype=np.float64), coefs)


def _rmse_mapped(y_true: np.ndarray, y_pred: np.ndarray, order: int, ddof: int = 0) -> float:
    if order == 1:
        coefs = np.array(_first_order(y_pred, y_true))
    elif order == 3:
        coefs = _third_order_monotonic(y_pred, y_true)
    else:
        raise ValueError(f"order must be 1 or 3, got {order!r}")
    if y_true.size - ddof < 1:
        return math.nan
    residual = y_true - apply_mapping(coefs, y_pred)
    return float(np.sqrt(residual @ residual / (y_true.size - ddof)))


def rmse_mapped(y_true, y_pred, order: int = 1, *, ddof: int = 0) -> float:
    """RMSE after mapping y_pred onto y_true (ITU-T P.1401 §7.7).

    Args:
        y_true: subjective MOS.
        y_pred: predicted MOS, as many values.
        order: 1 for `first_order_mapping`, 3 for `third_order_monotonic_mapping`.
        ddof: the squared error is divided by N - ddof. 0 (default): a plain RMSE, as in every
            report here; P.1401 eq. 7-29 uses the mapping's degrees of freedom (NISQA: 1 for
            first order, 4 for third order). nan when N - ddof < 1.
    """
    a, b = _as_pair(y_true, y_pred)
    return _rmse_mapped(a, b, order, ddof)


# --- conditions ----------------------------------------------------------------------------


def _condition_labels(conditions, num_files: int) -> tuple[list, np.ndarray]:
    if isinstance(conditions, str | bytes):
        raise ValueError("conditions: expected one condition per file, got a single string")
    labels = list(conditions)
    if len(labels) != num_files:
        raise ValueError(f"conditions has {len(labels)} values but there are {num_files} files")
    missing = [i for i, label in enumerate(labels) if label is None]
    if missing:
        raise ValueError(f"conditions: no condition for the file at index {missing[0]}")
    try:
        names, inverse = np.unique(np.asarray(labels), return_inverse=True)
    except TypeError:
        raise ValueError("conditions: mix strings and numbers; use one kind") from None
    return names.tolist(), inverse.reshape(-1)


def condition_means(y_true, y_pred, conditions) -> tuple[np.ndarray, np.ndarray, list]:
    """Mean MOS and mean prediction of each condition.

    Args:
        y_true: subjective MOS, one value per file.
        y_pred: predicted MOS, one value per file.
        conditions: the condition of each file (strings or numbers).

    Returns:
        (mos_per_condition, pred_per_condition, condition_names), in sorted name order.
    """
    a, b = _as_pair(y_true, y_pred)
    names, inverse = _condition_labels(conditions, a.size)
    counts = np.bincount(inverse, minlength=len(names))
    mos = np.bincount(inverse, weights=a, minlength=len(names)) / counts
    pred = np.bincount(inverse, weights=b, minlength=len(names)) / counts
    return mos, pred, names


# --- vectorised resamples ------------------------------------------------------------------


def _generators(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent streams for the file and the condition resamples of one seed: the
    condition resamples depend only on the conditions, not on how many files there are."""
    return tuple(np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(2))


def _resample_counts(rng: np.random.Generator, num_items: int, num_resamples: int) -> np.ndarray:
    """(num_resamples, num_items): how often each item is drawn in each resample (with replacement)."""
    draws = rng.integers(0, num_items, size=(num_resamples, num_items))
    draws += (np.arange(num_resamples) * num_items)[:, None]
    counts = np.bincount(draws.ravel(), minlength=num_resamples * num_items)
    return counts.reshape(num_resamples, num_items).astype(np.float64)


class _Ties:
    """`values` sorted into groups of equal values, with each row of weights summed per group."""

    def __init__(self, values: np.ndarray, weights: np.ndarray):
        order = np.argsort(values, kind="stable")
        sorted_values = values[order]
        new_group = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
        self.group_values = sorted_values[new_group]
        self.group_of_item = np.empty(values.size, dtype=np.intp)
        self.group_of_item[order] = np.cumsum(new_group) - 1
        sorted_weights = np.take(weights, order, axis=1)
        if self.group_values.size == values.size:  # no ties
            self.totals = sorted_weights
        else:
            self.totals = np.add.reduceat(sorted_weights, np.flatnonzero(new_group), axis=1)
        present = self.totals > 0  # (rows, groups)
        self.num_distinct = present.sum(axis=1)
        self.lowest = self.group_values[np.argmax(present, axis=1)]
        self.highest = self.group_values[present.shape[1] - 1 - np.argmax(present[:, ::-1], axis=1)]

    def centred_ranks(self, num_per_row: np.ndarray) -> np.ndarray:
        """Average ranks within each row (as if its items were repeated as often as weighted),
        minus their weighted mean (n + 1) / 2."""
        below = np.cumsum(self.totals, axis=1)
        below -= self.totals
        group_ranks = below + (self.totals + 1) / 2 - ((num_per_row + 1) / 2)[:, None]
        return np.take(group_ranks, self.group_of_item, axis=1)


def _weighted_pcc(x: np.ndarray, y: np.ndarray, weights: np.ndarray, constant: np.ndarray) -> np.ndarray:
    """Row-wise count-weighted Pearson; x, y of shape (items,) or (rows, items)."""
    n = weights.sum(axis=1)
    if x.ndim == 1:
        moments = weights @ np.stack([x, y, x * x, y * y, x * y], axis=1) / n[:, None]
        mx, my, mxx, myy, mxy = moments.T
    else:
        mx, my = (weights * x).sum(1) / n, (weights * y).sum(1) / n
        mxx, myy, mxy = (
            (weights * x * x).sum(1) / n,
            (weights * y * y).sum(1) / n,
            (weights * x * y).sum(1) / n,
        )
    vx, vy = mxx - mx * mx, myy - my * my
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (mxy - mx * my) / np.sqrt(vx * vy)
    return np.where(constant | ~(vx > 0) | ~(vy > 0), np.nan, np.clip(r, -1.0, 1.0))


def _reduced_fits(gram, moment, energy, basis, usable):
    """Least squares in the span of `basis` columns for each row.

    gram (rows, 4, 4) = A^T W A and moment (rows, 4) = A^T W y of the cubic design A; basis
    (rows, [positions,] 4, k); usable (rows,): rows whose system is regular (the others get
    an identity system and must be discarded by the caller). Returns the coefficients
    (rows, [positions,] 4) and the weighted squared error y^T W y - a^T A^T W y.
    """
    usable = usable[:, None, None]
    if basis.ndim == 4:
        gram, moment, energy, usable = gram[:, None], moment[:, None], energy[:, None], usable[:, None]
    basis_t = np.swapaxes(basis, -1, -2)
    reduced = np.where(usable, basis_t @ gram @ basis, np.eye(basis.shape[-1]))
    rhs = basis_t @ moment[..., None]
    with np.errstate(all="ignore"):
        try:
            solution = np.linalg.solve(reduced, rhs)
        except np.linalg.LinAlgError:  # an exactly singular system among the rows
            solution = np.linalg.pinv(reduced) @ rhs
        coefs = (basis @ solution)[..., 0]
        return coefs, energy - (coefs * moment).sum(-1)


def _monotone_cubic_fits(
    t: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    num_distinct: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least-squares cubic in t, non-decreasing over each row's range [lo, hi] of t.

    Enumerates the active sets of the constraint "slope >= 0 on [lo, hi]": the optimum of a
    convex problem is the least-error feasible point among the optima on each candidate set.
    Rows with fewer than 4 distinct values of t get the best non-decreasing straight line.

    Args:
        t: the predictions, scaled (to about [-1, 1]); y: the targets; weights: (rows, items);
        lo, hi, num_distinct: per row, the lowest and highest t of positive weight and the
            number of distinct values of t among them.

    Returns:
        (squared errors (rows,) from the moments, coefficients (rows, 4) in t and y's units).
    """
    rows = weights.shape[0]
    y_mean = float(y.mean())
    yc = y - y_mean  # less cancellation in y^T W y - a^T A^T W y
    powers = np.vander(t, 7, increasing=True)
    moments = weights @ np.concatenate([powers, yc[:, None] * powers[:, :4], (yc * yc)[:, None]], axis=1)
    gram = moments[:, np.add.outer(np.arange(4), np.arange(4))]
    moment, energy = moments[:, 7:11], moments[:, 11]
    cubic_ok = num_distinct >= 4
    line_ok = num_distinct >= 2

    def columns(*vectors) -> np.ndarray:  # (rows, 4, k) from vectors broadcast to (rows, 4)
        return np.stack([np.broadcast_to(v, (rows, 4)) for v in vectors], axis=-1)

    e0, e1 = np.eye(4)[0], np.eye(4)[1]
    zero, one = np.zeros(rows), np.ones(rows)
    # H(e): slope zero at e; a1 = -2 a2 e - 3 a3 e^2.
    at_lo = columns(e0, np.stack([zero, -2 * lo, one, zero], 1), np.stack([zero, -3 * lo**2, zero, one], 1))
    at_hi = columns(e0, np.stack([zero, -2 * hi, one, zero], 1), np.stack([zero, -3 * hi**2, zero, one], 1))
    at_both = columns(e0, np.stack([zero, 3 * lo * hi, -1.5 * (lo + hi), one], 1))  # 3 a3 (t-lo)(t-hi)
    candidates = [
        (np.broadcast_to(np.eye(4), (rows, 4, 4)), cubic_ok),
        (at_lo, cubic_ok),
        (at_hi, cubic_ok),
        (at_both, cubic_ok),
        (columns(e0, e1), line_ok),
        (columns(e0), np.ones(rows, dtype=bool)),
    ]
    errors, fits = [], []
    for basis, usable in candidates:
        coefs, sse = _reduced_fits(gram, moment, energy, basis, usable)
        feasible = usable & (_min_slope(coefs, lo, hi) >= -_slope_tolerance(coefs)) & np.isfinite(sse)
        errors.append(np.where(feasible, sse, np.inf))
        fits.append(coefs)

    # A double root of the slope at tau inside the range: a0 + a3 (t - tau)^3, a3 >= 0. The
    # best tau: on a grid, then twice on a finer grid around the best point (spacing / 64).
    def double_root_fits(tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tau = np.clip(tau, lo[:, None], hi[:, None])
        cube = np.stack([-(tau**3), 3 * tau**2, -3 * tau, np.ones_like(tau)], axis=-1)
        basis = np.stack([np.broadcast_to(e0, cube.shape), cube], axis=-1)  # (rows, positions, 4, 2)
        coefs, sse = _reduced_fits(gram, moment, energy, basis, cubic_ok)
        sse = np.where((coefs[..., 3] >= 0) & cubic_ok[:, None] & np.isfinite(sse), sse, np.inf)
        best = np.argmin(sse, axis=1)
        return tau[np.arange(rows), best], sse[np.arange(rows), best], coefs[np.arange(rows), best]

    spacing = (hi - lo) / (NUM_DOUBLE_ROOT_POSITIONS + 1)
    tau, sse, coefs = double_root_fits(
        lo[:, None] + spacing[:, None] * np.arange(1, NUM_DOUBLE_ROOT_POSITIONS + 1)
    )
    for _ in range(2):
        tau, sse, coefs = double_root_fits(tau[:, None] + spacing[:, None] * np.linspace(-1, 1, 17))
        spacing = spacing / 8
    errors.append(sse)
    fits.append(coefs)

    errors = np.stack(errors, axis=1)
    choice = np.argmin(errors, axis=1)
    sse = np.maximum(errors[np.arange(rows), choice], 0.0)
    chosen = np.stack(fits, axis=1)[np.arange(rows), choice].copy()
    chosen[:, 0] += y_mean
    return sse, chosen


def _resampled_metrics(y_true: np.ndarray, y_pred: np.ndarray, weights: np.ndarray, names) -> dict:
    """Each metric of `names` for each row of `weights` (counts of a resample), vectorised."""
    n = weights.sum(axis=1)
    x, y = y_pred - y_pred.mean(), y_true - y_true.mean()  # shifts leave the metrics unchanged
    error = y_true - y_pred
    ties_x, ties_y = _Ties(y_pred, weights), _Ties(y_true, weights)
    constant = (ties_x.num_distinct < 2) | (ties_y.num_distinct < 2)
    out = {}
    if "pcc" in names:
        out["pcc"] = _weighted_pcc(x, y, weights, constant)
    if "srcc" in names:
        out["srcc"] = _weighted_pcc(ties_x.centred_ranks(n), ties_y.centred_ranks(n), weights, constant)
    if "rmse" in names or "mae" in names:
        moments = weights @ np.stack([error * error, np.abs(error)], axis=1) / n[:, None]
        out["rmse"], out["mae"] = np.sqrt(moments[:, 0]), moments[:, 1]
    if "rmse_mapped_1" in names:
        moments = weights @ np.stack([x, y, x * x, x * y], axis=1) / n[:, None]
        mx, my, mxx, mxy = moments.T
        vx, cxy = mxx - mx * mx, mxy - mx * my
        flat = ties_x.num_distinct < 2  # the mapping is then the mean
        slope = np.where(flat, 0.0, cxy / np.where(flat, 1.0, vx))
        residual = y - my[:, None] - slope[:, None] * (x - mx[:, None])  # exact even for a perfect fit
        out["rmse_mapped_1"] = np.sqrt((weights * residual * residual).sum(axis=1) / n)
    if "rmse_mapped_3" in names:
        centre = (y_pred.max() + y_pred.min()) / 2
        half_width = max((y_pred.max() - y_pred.min()) / 2, np.finfo(float).tiny)
        t = (y_pred - centre) / half_width
        lo, hi = (ties_x.lowest - centre) / half_width, (ties_x.highest - centre) / half_width
        _, coefs = _monotone_cubic_fits(t, y_true, weights, lo, hi, ties_x.num_distinct)
        residual = y_true - coefs @ np.vander(t, 4, increasing=True).T
        out["rmse_mapped_3"] = np.sqrt((weights * residual * residual).sum(axis=1) / n)
    return {name: out[name] for name in names}


def _point_metrics(y_true: np.ndarray, y_pred: np.ndarray, names) -> dict[str, float]:
    functions = {
        "pcc": lambda: _pcc(y_true, y_pred),
        "srcc": lambda: _pcc(_average_ranks(y_true), _average_ranks(y_pred)),
        "rmse": lambda: float(np.sqrt(np.mean((y_true - y_pred) ** 2))),
        "mae": lambda: float(np.mean(np.abs(y_true - y_pred))),
        "rmse_mapped_1": lambda: _rmse_mapped(y_true, y_pred, 1),
        "rmse_mapped_3": lambda: _rmse_mapped(y_true, y_pred, 3),
    }
    return {name: functions[name]() for name in names}


# --- reports -------------------------------------------------------------------------------


def _json_float(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _interval(samples: np.ndarray, ci: float) -> list | None:
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return None
    lo, hi = np.percentile(samples, [50 * (1 - ci), 50 * (1 + ci)])
    return [float(lo), float(hi)]


def _summary(y_true, y_pred, names, rng, num_bootstrap: int, ci: float) -> dict:
    values = _point_metrics(y_true, y_pred, names)
    samples = None
    if num_bootstrap:
        weights = _resample_counts(rng, y_true.size, num_bootstrap)
        samples = _resampled_metrics(y_true, y_pred, weights, names)
    return {
        name: {
            "value": _json_float(values[name]),
            ci_key(ci): None if samples is None else _interval(samples[name], ci),
        }
        for name in names
    }


def _bootstrap_record(num_bootstrap: int, seed: int, ci: float) -> dict:
    return {
        "num_resamples": int(num_bootstrap),
        "seed": seed,
        "ci": ci,
        "unit_per_file": "file",
        "unit_per_condition": "condition",
    }


def evaluate_predictions(
    y_true, y_pred, conditions=None, *, num_bootstrap: int = 1000, seed: int = 0, ci: float = 0.95
) -> dict:
    """All metrics per file (and per condition) with percentile-bootstrap confidence intervals.

    Args:
        y_true: subjective MOS, one value per file.
        y_pred: predicted MOS, one value per file.
        conditions: the condition of each file, or None. Per-condition figures need at least
            3 distinct conditions.
        num_bootstrap: resamples; 0 gives no intervals (null).
        seed: seed of the resamples (files and conditions draw from independent streams).
        ci: level of the intervals; its key is `ci_key(ci)` ("ci95" for 0.95).

    Returns:
        JSON-ready data (undefined values are None):
        {"num_files", "num_conditions" (None without conditions),
         "per_file": {metric: {"value", "ci95": [lo, hi] or None}} for FILE_METRICS,
         "per_condition": the same for CONDITION_METRICS, or None,
         "bootstrap": {"num_resamples", "seed", "ci", "unit_per_file", "unit_per_condition"}}
    """
    mos, pred = _as_pair(y_true, y_pred)
    _check_bootstrap_args(num_bootstrap, ci)
    file_rng, condition_rng = _generators(seed)
    report = {
        "num_files": int(mos.size),
        "num_conditions": None,
        "per_file": _summary(mos, pred, FILE_METRICS, file_rng, num_bootstrap, ci),
        "per_condition": None,
        "bootstrap": _bootstrap_record(num_bootstrap, seed, ci),
    }
    if conditions is not None:
        mos_c, pred_c, names = condition_means(mos, pred, conditions)
        report["num_conditions"] = len(names)
        if len(names) >= MIN_CONDITIONS:
            report["per_condition"] = _summary(
                mos_c, pred_c, CONDITION_METRICS, condition_rng, num_bootstrap, ci
            )
    return report


def _paired_summary(y_true, pred_a, pred_b, names, rng, num_bootstrap: int, ci: float) -> dict:
    values_a = _point_metrics(y_true, pred_a, names)
    values_b = _point_metrics(y_true, pred_b, names)
    if num_bootstrap:
        weights = _resample_counts(rng, y_true.size, num_bootstrap)  # the same rows for a and b
        samples_a = _resampled_metrics(y_true, pred_a, weights, names)
        samples_b = _resampled_metrics(y_true, pred_b, weights, names)
    summary = {}
    for name in names:
        entry = {
            "difference": _json_float(values_b[name] - values_a[name]),
            ci_key(ci): None,
            "p_b_better": None,
        }
        if num_bootstrap:
            a, b = samples_a[name], samples_b[name]
            valid = np.isfinite(a) & np.isfinite(b)
            entry[ci_key(ci)] = _interval(b - a, ci)
            if valid.any():
                better = b[valid] > a[valid] if HIGHER_IS_BETTER[name] else b[valid] < a[valid]
                entry["p_b_better"] = float(better.mean())
        summary[name] = entry
    return summary


def paired_bootstrap(
    y_true,
    pred_a,
    pred_b,
    conditions=None,
    *,
    num_bootstrap: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> dict:
    """Difference b - a of every metric, with a paired bootstrap (the same resamples for both).

    Args:
        y_true: subjective MOS, one value per file.
        pred_a: model a's predictions (the baseline), one per file.
        pred_b: model b's predictions, one per file.
        conditions: the condition of each file, or None (per condition: >= 3 conditions).
        num_bootstrap: resamples; 0 gives no intervals and no p_b_better (null).
        seed: seed of the resamples.
        ci: level of the intervals of the differences.

    Returns:
        {"num_files", "num_conditions",
         "per_file": {metric: {"difference": b - a, "ci95": [lo, hi], "p_b_better": share of
                               resamples where b is strictly better (higher pcc/srcc, lower
                               errors), among those where both are defined}},
         "per_condition": the same for CONDITION_METRICS, or None,
         "bootstrap": {...as in evaluate_predictions}}
    """
    mos, a = _as_pair(y_true, pred_a, names=("y_true", "pred_a"))
    b = _as_pair(y_true, pred_b, names=("y_true", "pred_b"))[1]
    _check_bootstrap_args(num_bootstrap, ci)
    file_rng, condition_rng = _generators(seed)
    report = {
        "num_files": int(mos.size),
        "num_conditions": None,
        "per_file": _paired_summary(mos, a, b, FILE_METRICS, file_rng, num_bootstrap, ci),
        "per_condition": None,
        "bootstrap": _bootstrap_record(num_bootstrap, seed, ci),
    }
    if conditions is not None:
        names, inverse = _condition_labels(conditions, mos.size)
        report["num_conditions"] = len(names)
        if len(names) >= MIN_CONDITIONS:
            counts = np.bincount(inverse)
            mos_c, a_c, b_c = (np.bincount(inverse, weights=v) / counts for v in (mos, a, b))
            report["per_condition"] = _paired_summary(
                mos_c, a_c, b_c, CONDITION_METRICS, condition_rng, num_bootstrap, ci
            )
    return report


__all__: Sequence[str] = (
    "FILE_METRICS",
    "CONDITION_METRICS",
    "HIGHER_IS_BETTER",
    "ci_key",
    "pcc",
    "srcc",
    "rmse",
    "mae",
    "first_order_mapping",
    "third_order_monotonic_mapping",
    "apply_mapping",
    "rmse_mapped",
    "condition_means",
    "evaluate_predictions",
    "paired_bootstrap",
)
