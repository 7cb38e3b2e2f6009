import json
import math
from collections import Counter

import numpy as np
import pytest
from scipy import optimize, stats

from jsqa_tf import metrics


def synthetic(num_files: int, noise: float, seed: int = 0, decimals: int | None = 1):
    """MOS in [1, 5] and a prediction of it with Gaussian noise (rounded: ties)."""
    rng = np.random.default_rng(seed)
    mos = np.clip(rng.normal(3.0, 0.9, num_files), 1, 5)
    pred = 0.8 * mos + 0.7 + rng.normal(0.0, noise, num_files)
    if decimals is not None:
        mos, pred = np.round(mos, decimals), np.round(pred, decimals)
    return mos, pred


# --- point metrics -------------------------------------------------------------------------


def test_hand_computed_values():
    mos = [1.0, 2.0, 3.0, 4.0]
    pred = [2.0, 2.0, 4.0, 4.0]
    # deviations: mos [-1.5, -0.5, 0.5, 1.5] (sum of squares 5), pred [-1, -1, 1, 1] (4);
    # cross products 1.5 + 0.5 + 0.5 + 1.5 = 4 -> PCC = 4 / sqrt(5 * 4) = 2 / sqrt(5).
    assert metrics.pcc(mos, pred) == pytest.approx(2 / math.sqrt(5), abs=1e-12)
    # ranks: mos [1, 2, 3, 4]; pred ties -> [1.5, 1.5, 3.5, 3.5], deviations [-1, -1, 1, 1]: the same.
    assert metrics.srcc(mos, pred) == pytest.approx(2 / math.sqrt(5), abs=1e-12)
    # errors [-1, 0, -1, 0]: RMSE = sqrt(2 / 4), MAE = 2 / 4.
    assert metrics.rmse(mos, pred) == pytest.approx(math.sqrt(0.5), abs=1e-12)
    assert metrics.mae(mos, pred) == pytest.approx(0.5, abs=1e-12)
    # first order: slope 4 / 4 = 1, offset 2.5 - 3 = -0.5; mapped [1.5, 1.5, 3.5, 3.5];
    # residuals +-0.5 -> mapped RMSE 0.5 (P.1401 with d = 1: sqrt(4 * 0.25 / 3)).
    assert metrics.first_order_mapping(pred, mos) == pytest.approx((-0.5, 1.0), abs=1e-12)
    assert metrics.rmse_mapped(mos, pred, order=1) == pytest.approx(0.5, abs=1e-12)
    assert metrics.rmse_mapped(mos, pred, order=1, ddof=1) == pytest.approx(math.sqrt(1 / 3), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_correlations_match_scipy_with_ties(seed):
    mos, pred = synthetic(300, noise=0.5, seed=seed, decimals=1)
    assert len(np.unique(pred)) < pred.size  # there are ties
    assert metrics.pcc(mos, pred) == pytest.approx(stats.pearsonr(mos, pred)[0], abs=1e-10)
    assert metrics.srcc(mos, pred) == pytest.approx(stats.spearmanr(mos, pred)[0], abs=1e-10)


def test_input_checks_and_constant_predictions():
    with pytest.raises(ValueError, match="at least 2 points"):
        metrics.pcc([3.0], [3.0])
    with pytest.raises(ValueError, match="y_true has 3 values but y_pred has 2"):
        metrics.rmse([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="index 1 is not a finite number"):
        metrics.mae([1, np.nan, 3], [1, 2, 3])
    with pytest.raises(ValueError, match="expected numbers"):
        metrics.pcc(["a", "b"], [1, 2])
    with pytest.raises(ValueError, match="order must be 1 or 3"):
        metrics.rmse_mapped([1, 2, 3], [1, 2, 3], order=2)
    assert math.isnan(metrics.pcc([1, 2, 3], [2, 2, 2]))
    assert math.isnan(metrics.srcc([1, 2, 3], [2, 2, 2]))
    assert metrics.first_order_mapping([2, 2, 2], [1, 2, 3]) == (2.0, 0.0)
    # (N, 1) predictions as Keras returns them; lists; the inputs are left as they were.
    mos, pred = synthetic(20, noise=0.3)
    mos_copy, column = mos.copy(), pred[:, None].copy()
    report = metrics.evaluate_predictions(mos, column, num_bootstrap=10)
    assert report["per_file"]["pcc"]["value"] == pytest.approx(metrics.pcc(list(mos), list(pred)))
    np.testing.assert_array_equal(mos, mos_copy)
    np.testing.assert_array_equal(column[:, 0], pred)


# --- P.1401 mappings -----------------------------------------------------------------------


def test_first_order_mapping_known_case():
    pred = np.array([1.0, 2.0, 2.5, 4.0, 5.0])
    mos = 2 + 0.5 * pred
    a, b = metrics.first_order_mapping(pred, mos)
    assert (a, b) == pytest.approx((2.0, 0.5), abs=1e-12)
    np.testing.assert_allclose(metrics.apply_mapping((a, b), pred), mos, atol=1e-12)
    assert metrics.rmse_mapped(mos, pred, order=1) == pytest.approx(0.0, abs=1e-12)


def _slope_on_range(coefs, x):
    grid = np.linspace(x.min(), x.max(), 2001)
    return coefs[1] + 2 * coefs[2] * grid + 3 * coefs[3] * grid**2


def reference_monotone_fit(x, y, num_constraints=2001):
    """The fitted values of the least-squares cubic of x that does not decrease over [min x,
    max x], by SciPy's SLSQP with the slope constrained at `num_constraints` points (written
    here, apart from jsqa_tf.metrics); the best non-decreasing line below 4 distinct x (the
    convention of `third_order_monotonic_mapping`). Between the points the slope may dip a
    little below zero: the error is a lower bound of the constrained optimum's."""
    if np.ptp(x) == 0:
        return np.full(y.shape, y.mean())
    t = (x - (x.max() + x.min()) / 2) / (np.ptp(x) / 2)
    design = np.vander(t, 4, increasing=True)
    slope, offset = np.polyfit(t, y, 1)
    start = np.array([offset, slope, 0, 0]) if slope >= 0 else np.array([y.mean(), 0, 0, 0])
    if np.unique(x).size < 4:
        return design @ start
    grid = np.linspace(-1.0, 1.0, num_constraints)
    slope_rows = np.stack([np.zeros_like(grid), np.ones_like(grid), 2 * grid, 3 * grid**2], axis=1)
    result = optimize.minimize(
        lambda c: (np.sum((design @ c - y) ** 2) / y.size, 2 * design.T @ (design @ c - y) / y.size),
        start,
        jac=True,
        method="SLSQP",
        constraints=[{"type": "ineq", "fun": lambda c: slope_rows @ c, "jac": lambda c: slope_rows}],
        options={"maxiter": 1000, "ftol": 1e-15},
    )
    assert result.success, result.message
    return design @ result.x


def test_third_order_recovers_a_monotone_cubic():
    x = np.random.default_rng(0).uniform(1, 5, 80)
    true_coefs = np.array([0.5, 1.0, -0.3, 0.05])  # slope 1 - 0.6 x + 0.15 x^2 > 0 everywhere
    y = metrics.apply_mapping(true_coefs, x)
    coefs = metrics.third_order_monotonic_mapping(x, y)
    assert coefs.shape == (4,)
    np.testing.assert_allclose(coefs, true_coefs, atol=1e-6)
    assert metrics.rmse_mapped(y, x, order=3) == pytest.approx(0.0, abs=1e-8)
    assert _slope_on_range(coefs, x).min() >= -1e-9


def _slope_gradient(s):
    """d slope(s) / d coefficients, for a cubic in increasing order."""
    return np.array([0.0, 1.0, 2 * s, 3 * s**2])


TAU = 0.37  # an interior point where the optimum's slope has a double root
KNOWN_OPTIMA = {
    # name: (optimal coefficients in t, [(point where the slope is zero, multiplier > 0)])
    "unconstrained": ([3.0, 1.0, 0.2, 0.1], []),
    "line": ([3.0, 0.5, 0.0, 0.0], []),
    "slope zero at the upper end": ([3.0, 1.0, -1 / 4, -1 / 6], [(1.0, 0.3)]),  # (1 - t)(t + 2) / 2
    "slope zero at the lower end": ([3.0, 1.0, 1 / 4, -1 / 6], [(-1.0, 0.3)]),  # (1 + t)(2 - t) / 2
    "slope zero at both ends": ([3.0, 1.0, 0.0, -1 / 3], [(-1.0, 0.2), (1.0, 0.4)]),  # 1 - t^2
    "interior double root": ([3.0 - 0.8 * TAU**3, 2.4 * TAU**2, -2.4 * TAU, 0.8], [(TAU, 0.3)]),
    "constant": ([3.0, 0.0, 0.0, 0.0], [(-1.0, 0.2), (0.1, 0.5), (1.0, 0.3)]),
}


def data_with_known_optimum(coefs, active, t, seed=0):
    """y whose least-squares cubic in t, non-decreasing on [-1, 1], is exactly `coefs`.

    With A the cubic design of t, y = A a* - A (A'A)^-1 sum_j l_j g(s_j) + r, where g(s) is
    the gradient of slope(s), l_j >= 0 and r (noise) is orthogonal to A's columns: then
    A'(A a* - y) = sum_j l_j g(s_j), the KKT conditions. For any feasible a, by convexity,
    |Aa - y|^2 - |Aa* - y|^2 >= 2 sum_j l_j (slope_a(s_j) - slope_a*(s_j)) = 2 sum_j l_j
    slope_a(s_j) >= 0, because a* is feasible with zero slope at each s_j: a* is the optimum
    (the only one: A has full column rank).
    """
    design = np.vander(t, 4, increasing=True)
    push = sum((weight * _slope_gradient(s) for s, weight in active), np.zeros(4))
    noise = np.random.default_rng(seed).normal(0, 0.1, t.size)
    noise -= design @ np.linalg.lstsq(design, noise, rcond=None)[0]
    return design @ np.asarray(coefs) - design @ np.linalg.solve(design.T @ design, push) + noise


@pytest.mark.parametrize("case", sorted(KNOWN_OPTIMA))
def test_each_monotone_cubic_solver_finds_a_known_optimum(case):
    """SLSQP and the vectorised active-set solver, each alone, then the mapping that keeps
    the better of them, on data built so that the constrained optimum is known exactly."""
    coefs, active = KNOWN_OPTIMA[case]
    t = np.r_[-1.0, 1.0, np.random.default_rng(1).uniform(-1, 1, 58)]
    y = data_with_known_optimum(coefs, active, t)
    design = np.vander(t, 4, increasing=True)
    assert _slope_on_range(np.asarray(coefs), t).min() >= -1e-12  # the optimum is feasible

    def excess_error(fit):  # relative to the optimum's squared error
        return np.sum((design @ fit - y) ** 2) / np.sum((design @ np.asarray(coefs) - y) ** 2) - 1

    slsqp = metrics._slsqp_monotone_cubic(design, y, np.array([y.mean(), 0.0, 0.0, 0.0]))
    np.testing.assert_allclose(slsqp, coefs, atol=1e-6)
    active_set = metrics._active_set_monotone_cubic(t, y)
    # The interior root's position is searched on a grid (~5e-4 apart at the finest).
    grid_search = case == "interior double root"
    np.testing.assert_allclose(active_set, coefs, atol=1e-3 if grid_search else 1e-9)
    assert excess_error(active_set) <= (2e-6 if grid_search else 1e-12)
    for fit in (slsqp, active_set):
        assert _slope_on_range(fit, t).min() >= -1e-9
    # The mapping on MOS-like predictions (t scaled to [1.5, 4.5]); so does the test's reference.
    x = 3.0 + 1.5 * t
    mapped = metrics.apply_mapping(metrics.third_order_monotonic_mapping(x, y), x)
    np.testing.assert_allclose(mapped, design @ np.asarray(coefs), atol=1e-6)
    np.testing.assert_allclose(reference_monotone_fit(x, y), design @ np.asarray(coefs), atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_third_order_is_monotone_for_a_non_monotone_relation(seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(1, 5, 120)
    y = 5 - (x - 3.8) ** 2 + rng.normal(0, 0.2, x.size)  # rises, then falls above 3.8
    free = np.polyfit(x, y, 3)[::-1]
    assert _slope_on_range(free, x).min() < -0.5  # the unconstrained cubic does fall
    coefs = metrics.third_order_monotonic_mapping(x, y)
    assert _slope_on_range(coefs, x).min() >= -1e-9
    rmse_3 = metrics.rmse_mapped(y, x, order=3)
    assert rmse_3 <= metrics.rmse_mapped(y, x, order=1) + 1e-12  # a straight line is a monotone cubic
    # Against the test's SLSQP (its error is a lower bound of the optimum's), the mapping and
    # the bootstrap's vectorised solver alone. Their RMSE above it, measured: 1.3e-7 to 3.9e-7.
    lower_bound = math.sqrt(np.mean((y - reference_monotone_fit(x, y)) ** 2))
    t = (x - (x.max() + x.min()) / 2) / ((x.max() - x.min()) / 2)
    sse, fits = metrics._monotone_cubic_fits(
        t, y, np.ones((1, x.size)), np.array([-1.0]), np.array([1.0]), np.array([x.size])
    )
    fitted = np.vander(t, 4, increasing=True) @ fits[0]
    assert _slope_on_range(fits[0], t).min() >= -1e-9
    for rmse in (rmse_3, math.sqrt(sse[0] / x.size), math.sqrt(np.mean((y - fitted) ** 2))):
        assert lower_bound * (1 - 1e-9) <= rmse <= lower_bound * (1 + 2e-6)


def test_third_order_falls_back_to_a_monotone_line():
    # Fewer than 4 distinct predictions: the first-order fit; a falling line becomes the mean.
    pred, mos = [1.0, 2.0, 3.0, 3.0], [1.0, 2.0, 3.5, 2.5]
    np.testing.assert_allclose(
        metrics.third_order_monotonic_mapping(pred, mos), [*metrics.first_order_mapping(pred, mos), 0, 0]
    )
    np.testing.assert_allclose(metrics.third_order_monotonic_mapping([1, 2, 3], [3, 2, 1]), [2, 0, 0, 0])


# --- conditions ----------------------------------------------------------------------------


def test_condition_means():
    mos = [1.0, 2.0, 3.0, 4.0, 5.0, 3.0]
    pred = [1.5, 2.5, 2.0, 4.0, 4.0, 1.0]
    names = ["b", "a", "b", "c", "a", "c"]
    mos_c, pred_c, conditions = metrics.condition_means(mos, pred, names)
    assert conditions == ["a", "b", "c"]
    np.testing.assert_allclose(mos_c, [3.5, 2.0, 3.5])  # a: (2 + 5) / 2, b: (1 + 3) / 2, c: (4 + 3) / 2
    np.testing.assert_allclose(pred_c, [3.25, 1.75, 2.5])
    with pytest.raises(ValueError, match="conditions has 2 values but there are 6 files"):
        metrics.condition_means(mos, pred, ["a", "b"])
    with pytest.raises(ValueError, match="index 1"):
        metrics.condition_means(mos, pred, ["a", None, "b", "c", "a", "c"])


def _three_files_per_condition(num_conditions: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    condition_mos = rng.uniform(1.5, 4.5, num_conditions)
    conditions = np.repeat([f"c{i:02d}" for i in range(num_conditions)], 3)
    mos = np.repeat(condition_mos, 3) + rng.normal(0, 0.3, conditions.size)
    pred = mos + rng.normal(0, 0.4, conditions.size)
    return mos, pred, conditions


def test_per_condition_figures_and_cluster_bootstrap():
    mos, pred, conditions = _three_files_per_condition()
    report = metrics.evaluate_predictions(mos, pred, conditions, num_bootstrap=200, seed=3)
    assert report["num_conditions"] == 12 and set(report["per_condition"]) == set(metrics.CONDITION_METRICS)
    mos_c, pred_c, names = metrics.condition_means(mos, pred, conditions)
    assert report["per_condition"]["pcc"]["value"] == pytest.approx(metrics.pcc(mos_c, pred_c))
    assert report["per_condition"]["rmse_mapped_1"]["value"] == pytest.approx(
        metrics.rmse_mapped(mos_c, pred_c, 1)
    )
    # The cluster bootstrap written out: draw conditions, take all files of each drawn
    # condition, recompute the condition means.
    _, condition_rng = metrics._generators(3)
    draws = condition_rng.integers(0, len(names), size=(200, len(names)))
    index = {name: np.flatnonzero(conditions == name) for name in names}
    values = {"pcc": [], "rmse": []}
    for row in draws:
        files = [index[names[k]] for k in row]
        values["pcc"].append(metrics.pcc([mos[f].mean() for f in files], [pred[f].mean() for f in files]))
        values["rmse"].append(metrics.rmse([mos[f].mean() for f in files], [pred[f].mean() for f in files]))
    for name in values:
        expected = np.percentile(values[name], [2.5, 97.5])
        np.testing.assert_allclose(report["per_condition"][name]["ci95"], expected, rtol=1e-10)
    # Each condition's files come together: twice as many files per condition, same intervals.
    doubled = metrics.evaluate_predictions(
        np.r_[mos, mos], np.r_[pred, pred], np.r_[conditions, conditions], num_bootstrap=200, seed=3
    )
    for name, entry in doubled["per_condition"].items():
        assert entry["value"] == pytest.approx(report["per_condition"][name]["value"], rel=1e-12)
        assert entry["ci95"] == pytest.approx(report["per_condition"][name]["ci95"], rel=1e-12)
    # Fewer than 3 conditions: no per-condition figures.
    two = metrics.evaluate_predictions(mos, pred, ["a", "b"] * 18, num_bootstrap=10)
    assert two["per_condition"] is None and two["num_conditions"] == 2
    assert metrics.evaluate_predictions(mos, pred, num_bootstrap=10)["num_conditions"] is None


# --- bootstrap -----------------------------------------------------------------------------


@pytest.mark.parametrize("num_files,decimals", [(7, 0), (40, 1), (200, None)])
def test_vectorised_resamples_equal_a_loop(num_files, decimals):
    """Each resample's metrics, computed from counts, equal the metrics of the resampled arrays."""
    mos, pred = synthetic(num_files, noise=0.6, seed=num_files, decimals=decimals)
    if num_files > 100:
        pred = 5 - (pred - 3.5) ** 2 / 2  # non-monotone: the constrained cubic is active
    weights = metrics._resample_counts(np.random.default_rng(5), num_files, 25)
    draws = np.random.default_rng(5).integers(0, num_files, size=(25, num_files))
    vectorised = metrics._resampled_metrics(mos, pred, weights, metrics.FILE_METRICS)
    for name in metrics.FILE_METRICS:
        if name == "rmse_mapped_3":  # the test's own SLSQP, not the library's solvers
            looped = [
                math.sqrt(np.mean((mos[r] - reference_monotone_fit(pred[r], mos[r], 201)) ** 2))
                for r in draws
            ]
        else:
            looped = [metrics._point_metrics(mos[row], pred[row], [name])[name] for row in draws]
        np.testing.assert_allclose(vectorised[name], looped, rtol=1e-9, atol=1e-9, err_msg=name)


def test_intervals_contain_the_estimate_shrink_and_repeat():
    mos, pred = synthetic(300, noise=0.5)
    report = metrics.evaluate_predictions(mos, pred, num_bootstrap=500, seed=1)
    for name, entry in report["per_file"].items():
        lo, hi = entry["ci95"]
        assert lo <= entry["value"] <= hi, name
    big = metrics.evaluate_predictions(*synthetic(3000, noise=0.5), num_bootstrap=500, seed=1)
    for name in metrics.FILE_METRICS:
        width = np.diff(report["per_file"][name]["ci95"])[0]
        assert np.diff(big["per_file"][name]["ci95"])[0] < width / 2, name  # ~ 1 / sqrt(10)
    assert metrics.evaluate_predictions(mos, pred, num_bootstrap=500, seed=1) == report
    assert metrics.evaluate_predictions(mos, pred, num_bootstrap=500, seed=2) != report
    none = metrics.evaluate_predictions(mos, pred, ["a", "b", "c"] * 100, num_bootstrap=0)
    assert all(
        entry["ci95"] is None for part in ("per_file", "per_condition") for entry in none[part].values()
    )
    assert none["per_file"]["rmse"] == {"value": report["per_file"]["rmse"]["value"], "ci95": None}
    assert none["bootstrap"] == {
        "num_resamples": 0,
        "seed": 0,
        "ci": 0.95,
        "unit_per_file": "file",
        "unit_per_condition": "condition",
    }
    ninety = metrics.evaluate_predictions(mos, pred, num_bootstrap=100, ci=0.9)
    assert metrics.ci_key(0.9) == "ci90" and "ci90" in ninety["per_file"]["pcc"]


def test_json_ready_with_undefined_values():
    mos = [1.0, 2.0, 3.0, 4.0, 2.0, 3.0]
    report = metrics.evaluate_predictions(mos, [3.0] * 6, ["a", "b", "c"] * 2, num_bootstrap=50)
    assert report["per_file"]["pcc"] == {"value": None, "ci95": None}  # constant prediction
    assert report["per_file"]["rmse"]["value"] > 0
    json.dumps(report, allow_nan=False)


def test_the_bootstrap_is_vectorised(monkeypatch):
    """However many resamples, each vectorised step runs once per report section (files,
    conditions) and the point estimates once: no Python loop over resamples."""
    calls = Counter()

    def counting(module, name):
        original = getattr(module, name)

        def counted(*args, **kwargs):
            calls[name] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)

    for name in ("_resampled_metrics", "_point_metrics", "_monotone_cubic_fits"):
        counting(metrics, name)
    counting(metrics.optimize, "minimize")  # SLSQP
    rng = np.random.default_rng(0)
    pred = np.round(rng.uniform(1, 5, 2000), 2)
    mos = 5 - (pred - 3.8) ** 2 + rng.normal(0, 0.2, pred.size)  # non-monotone: SLSQP runs
    conditions = np.repeat(np.arange(100), 20)
    counts = {}
    for num_bootstrap in (10, 1000):
        calls.clear()
        report = metrics.evaluate_predictions(mos, pred, conditions, num_bootstrap=num_bootstrap)
        counts[num_bootstrap] = dict(calls)
        assert report["num_files"] == 2000 and report["num_conditions"] == 100
    assert counts[10] == counts[1000], counts
    assert counts[1000]["_resampled_metrics"] == counts[1000]["_point_metrics"] == 2, counts
    assert 1 <= counts[1000]["minimize"] <= 2, counts  # the point estimates' SLSQP fits


def test_paired_bootstrap():
    rng = np.random.default_rng(0)
    mos = rng.uniform(1, 5, 400)
    conditions = np.repeat(np.arange(40), 10)
    pred_a = mos + rng.normal(0, 0.8, mos.size)
    pred_b = mos + rng.normal(0, 0.2, mos.size)
    paired = metrics.paired_bootstrap(mos, pred_a, pred_b, conditions, num_bootstrap=500)
    rmse = paired["per_file"]["rmse"]
    assert rmse["difference"] == pytest.approx(metrics.rmse(mos, pred_b) - metrics.rmse(mos, pred_a))
    assert rmse["ci95"][1] < 0 and rmse["p_b_better"] > 0.95
    assert paired["per_file"]["pcc"]["ci95"][0] > 0 and paired["per_file"]["pcc"]["p_b_better"] > 0.95
    assert set(paired["per_condition"]) == set(metrics.CONDITION_METRICS)
    assert paired["per_condition"]["rmse"]["ci95"][1] < 0
    # The same resamples as evaluate_predictions: the difference of the two bootstrap
    # distributions, resample by resample, not of two independent ones.
    same = metrics.paired_bootstrap(mos, pred_a, pred_a, conditions, num_bootstrap=200)
    for part in ("per_file", "per_condition"):
        for entry in same[part].values():
            assert entry["difference"] == 0 and entry["ci95"] == [0.0, 0.0] and entry["p_b_better"] == 0.0
    nothing = metrics.paired_bootstrap(mos, pred_a, pred_b, num_bootstrap=0)
    assert nothing["per_condition"] is None
    assert nothing["per_file"]["mae"]["ci95"] is None and nothing["per_file"]["mae"]["p_b_better"] is None
    with pytest.raises(ValueError, match="pred_b"):
        metrics.paired_bootstrap(mos, pred_a, pred_b[:-1])
