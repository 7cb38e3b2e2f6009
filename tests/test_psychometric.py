import numpy as np
import pytest

from jsqa_tf.errors import ConfigError
from jsqa_tf.psychometric import (
    Psychometric,
    fit_psychometric,
    goodness_of_fit,
    merge_small_groups,
    thresholds,
)


def judgements(model, x, seed=0):
    """Yes/no judgements drawn from a known curve: True = "same"."""
    return np.random.default_rng(seed).random(len(x)) < model(x)


def test_recovers_a_curve_with_floor_and_ceiling():
    """Tolerances: ~3 standard deviations of the estimates over 20 seeds (4000 judgements)."""
    truth = Psychometric(floor=0.35, ceiling=0.95, midpoint=6.0, width=1.0)
    x = np.random.default_rng(1).uniform(0, 30, 4000)
    fit = fit_psychometric(x, judgements(truth, x), num_bootstrap=30, seed=0)
    model = fit.model
    assert model.floor == pytest.approx(0.35, abs=0.03)
    assert model.ceiling == pytest.approx(0.95, abs=0.03)
    assert model.midpoint == pytest.approx(6.0, abs=0.7)
    assert model.width == pytest.approx(1.0, rel=0.4)
    grid = np.linspace(0, 30, 301)
    assert np.max(np.abs(model(grid) - truth(grid))) < 0.05
    levels = thresholds(fit, drop=0.1, unit="dB")
    half_way = levels["half_way"]
    assert half_way["p_same"] == pytest.approx(0.65, abs=0.03)
    assert half_way["x"] == pytest.approx(truth.x_at(0.65), abs=0.6)
    low, high = half_way["ci95"]
    assert low <= half_way["x"] <= high and high - low < 1.5
    assert levels["ceiling_minus_0.1"]["x"] == pytest.approx(truth.x_at(0.85), abs=0.6)
    assert fit.parameters()["floor_ci95"][0] < model.floor < fit.parameters()["floor_ci95"][1]


def test_a_plain_logistic_is_still_recovered():
    """P(same) = 1 / (1 + exp(-(3 - 1.2 x))): floor 0, P = 0.5 at 2.5, P(0) = 0.953.
    Tolerances: above the worst of 20 seeds (3000 judgements)."""

    def truth(x):
        return 1 / (1 + np.exp(-(3.0 - 1.2 * x)))

    x = np.random.default_rng(2).uniform(0, 10, 3000)
    same = np.random.default_rng(3).random(len(x)) < truth(x)
    fit = fit_psychometric(x, same, num_bootstrap=20)
    grid = np.linspace(0, 10, 101)
    assert np.max(np.abs(fit.model(grid) - truth(grid))) < 0.06
    assert fit.model.floor < 0.03
    assert fit.model.ceiling == pytest.approx(truth(0.0), abs=0.06)
    assert thresholds(fit, levels=(0.5, 0.75))["p_same_0.5"]["x"] == pytest.approx(2.5, abs=0.3)
    assert thresholds(fit, levels=(0.5, 0.75))["p_same_0.75"]["x"] == pytest.approx(
        (np.log(3) - 3.0) / -1.2, abs=0.25
    )


def test_thresholds_outside_the_data_or_the_model_are_null_with_a_reason():
    # The drop happens at 10 dB, but the judgements stop at 4 dB: nothing to locate.
    truth = Psychometric(0.3, 0.9, midpoint=10.0, width=1.0)
    x = np.random.default_rng(4).uniform(0, 4, 600)
    levels = thresholds(fit_psychometric(x, judgements(truth, x), num_bootstrap=10), unit="dB")
    for entry in levels.values():
        assert entry["x"] is None and entry["ci95"] is None
        assert "no significant fall" in entry["reason"]
    # The fall starts inside the data but the floor lies beyond them: no half-way level, but
    # the fall below the ceiling and P(same) = 0.5 are located.
    truth = Psychometric(0.2, 0.9, midpoint=4.0, width=1.0)
    x = np.random.default_rng(10).uniform(0, 5.5, 2000)
    levels = thresholds(fit_psychometric(x, judgements(truth, x, 11), num_bootstrap=10), unit="dB")
    assert levels["half_way"]["x"] is None and "not levelled off" in levels["half_way"]["reason"]
    assert levels["ceiling_minus_0.1"]["x"] == pytest.approx(truth.x_at(0.8), abs=0.5)
    assert levels["p_same_0.5"]["x"] == pytest.approx(truth.x_at(0.5), abs=0.5)
    # A floor above 0.5: P(same) = 0.5 is never reached, however far the data go.
    high_floor = Psychometric(0.6, 0.95, midpoint=3.0, width=0.5)
    x = np.random.default_rng(5).uniform(0, 10, 1500)
    levels = thresholds(fit_psychometric(x, judgements(high_floor, x, 6), num_bootstrap=10))
    assert levels["p_same_0.5"]["x"] is None and "outside the fitted range" in levels["p_same_0.5"]["reason"]
    assert levels["half_way"]["x"] == pytest.approx(3.0, abs=0.5)
    # Never a negative x: a level above the ceiling has no |ΔSNR|.
    model = Psychometric(0.2, 0.7, midpoint=-2.0, width=1.0)
    assert model.x_at(0.75) is None and model.x_at(0.7) == 0.0
    assert all(model.x_at(p) >= 0 for p in np.linspace(0.21, 0.7, 20))


def test_goodness_of_fit_flags_a_curve_the_model_cannot_follow():
    truth = Psychometric(0.3, 0.95, midpoint=5.0, width=1.0)
    x = np.random.default_rng(7).uniform(0, 40, 3000)
    same = judgements(truth, x, 8)
    fit = fit_psychometric(x, same, num_bootstrap=0)
    good = goodness_of_fit(fit, x, same, np.floor(x).astype(int))
    assert not good["poor"] and good["degrees_of_freedom"] == good["num_groups"] - 4
    assert good["deviance"] < good["plain_logistic_deviance"]  # the floor matters
    # A second drop at 35 dB (like CDPAM's 400x gain pairs): one floor cannot fit both.
    same_two_step = same & ~((x > 35) & (np.random.default_rng(9).random(len(x)) < 0.95))
    fit = fit_psychometric(x, same_two_step, num_bootstrap=0)
    poor = goodness_of_fit(fit, x, same_two_step, np.floor(x).astype(int))
    assert poor["poor"] and poor["p_value"] < 0.01
    assert poor["largest_residuals"][0]["x_low"] > 30


def test_small_groups_merge_with_their_neighbour():
    group = np.array([0] * 12 + [1] * 3 + [2] * 4 + [3] * 20 + [4] * 2)
    merged = merge_small_groups(group, 5)
    assert [int(np.sum(merged == g)) for g in np.unique(merged)] == [12, 7, 22]


def test_too_little_data_is_refused():
    with pytest.raises(ConfigError, match="at least 20 judgements"):
        fit_psychometric(np.arange(10.0), np.arange(10) % 2 == 0)
    with pytest.raises(ConfigError, match="both answers"):
        fit_psychometric(np.arange(30.0), np.ones(30, dtype=bool))
