import math

import numpy as np
import pytest

from jsqa_tf.config import PairConfig
from jsqa_tf.data.snr import abs_delta_snr_density
from jsqa_tf.errors import OutputError
from jsqa_tf.jnd import read_cdpam_list
from jsqa_tf.jnd_curve import (
    Curve,
    bin_judgements,
    curve_from_list,
    curve_points,
    curve_report,
    expected_share_same,
    pair_window_report,
    summary_lines,
)
from jsqa_tf.psychometric import Psychometric
from tests.test_jnd import write_cdpam_list


def test_points_and_bins_match_a_hand_count(tmp_path):
    pairs = read_cdpam_list(write_cdpam_list(tmp_path / "list.txt"))
    additive = curve_points(pairs)  # the default: additive noise only, mp3 and reverb never as SNR
    assert len(additive.x) == 8 and additive.identical.tolist() == [True] + [False] * 7
    expected_db = [0.0, 52.04, 11.45, 14.58, 0.83, 1.34, 1.94, 1.58]  # |20 log10(gain ratio)|
    np.testing.assert_allclose(additive.x, expected_db, atol=0.01)
    assert set(additive.noise_type) == {"crickets", "pink_noise", "blue_noise", "siren"}
    varied = ~additive.identical
    bins = bin_judgements(additive.x[varied], additive.same[varied], 1.0)
    counted = [(b["x_low"], b["num_pairs"], b["num_same"]) for b in bins]
    assert counted == [(0.0, 1, 1), (1.0, 3, 1), (11.0, 1, 1), (14.0, 1, 0), (52.0, 1, 0)]
    assert bins[1]["p_same"] == pytest.approx(1 / 3) and bins[1]["ci95"][0] < 1 / 3 < bins[1]["ci95"][1]
    wide = bin_judgements(additive.x[varied], additive.same[varied], 2.0)
    assert (wide[0]["num_pairs"], wide[0]["num_same"]) == (4, 2)

    mp3 = curve_points(pairs, "mp3")  # octaves of bitrate below the reference
    np.testing.assert_allclose(mp3.x, [0.0, math.log2(300), math.log2(300 / 18.3372)])
    reverb = curve_points(pairs, "reverb")  # distance between the parameter triples
    np.testing.assert_allclose(
        reverb.x,
        [
            math.dist((13, 24, 45), (27.8, 60.19, 55.23)),
            0.0,
            math.dist((100, 8, 51), (68.57, 6.32, 42.31)),
            math.dist((51, 60, 60), (93.75, 0, 0.33)),
        ],
    )
    assert reverb.identical.tolist() == [False, True, False, False]


def test_report_keeps_kinds_apart_and_identical_pairs_aside(tmp_path):
    pairs = read_cdpam_list(write_cdpam_list(tmp_path / "list.txt"))
    config = PairConfig("", "")
    report, curves = curve_report(pairs, pair_config=config, num_bootstrap=5)
    assert report["num_lines_by_kind"] == {"additive": 8, "mp3": 3, "reverb": 4}
    assert report["not_used"] == {"mp3": 3, "reverb": 4} and "mp3" not in report
    pooled = report["additive"]["pooled"]
    assert pooled["identical"] == {
        "num_pairs": 1,
        "num_same": 1,
        "p_same": 1.0,
        "ci95": pytest.approx([0.2065, 1.0], abs=1e-3),
    }
    assert sum(b["num_pairs"] for b in pooled["bins"]) == 7
    assert pooled["fit"] is None and "at least 20 judgements" in pooled["fit_reason"]  # 7 pairs: no model
    report, _ = curve_report(pairs, kinds=("additive", "mp3", "reverb"), pair_config=config, num_bootstrap=5)
    assert report["mp3"]["axis"] == "abs_delta_bitrate_octaves" and report["mp3"]["pooled"]["num_pairs"] == 3
    assert report["reverb"]["unit"] == "units" and report["reverb"]["pooled"]["identical"]["num_pairs"] == 1


def simulated_list(path, truth, num_pairs, seed=0, max_db=30.0):
    """A CDPAM-style additive list whose judgements come from a known curve."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(num_pairs):
        gain = rng.uniform(0.01, 0.5)
        delta = rng.uniform(0, max_db)
        same = rng.random() < truth(delta)
        noise = ["pink_noise", "white_noise"][i % 2]
        second = gain * 10 ** (delta / 20)
        lines.append(f"{gain:.6f}_p{i % 50}.wav\t{second:.6f}_p{i % 50}.wav\t{int(not same)}\t{noise}")
    lines += ["0.1_p1.wav\t0.1_p1.wav\t0\twhite_noise", "0.1_p1.wav\t0.2_p2.wav\t1\twhite_noise"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_expected_share_integrates_against_the_sampler_density():
    assert expected_share_same(lambda d: np.full_like(d, 0.7), 6.0) == pytest.approx(0.7)
    step = lambda d: (d < 3.0).astype(float)  # noqa: E731
    assert expected_share_same(step, 6.0) == pytest.approx(1 - (3 / 6) ** 2, abs=1e-3)  # triangle's CDF
    capped = (6 * 3 - 3**2 / 2) / (6 * 4 - 4**2 / 2)  # ∫0^3 (W - d) dd / ∫0^4 (W - d) dd
    assert expected_share_same(step, 6.0, 4.0) == pytest.approx(capped, abs=1e-3)
    d = np.linspace(0, 4, 4001)
    assert np.trapezoid(abs_delta_snr_density(d, 6.0, 4.0), d) == pytest.approx(1.0, abs=1e-6)


def test_target_share_gives_the_widest_window_and_cap():
    # Bins: P(same) = 1 below 3 dB, 0 above; the triangle of window W keeps 1 - ((W - 3) / W)^2,
    # >= 0.75 up to W = 6; a cap M on a 6 dB window keeps (6*3 - 4.5) / (6 M - M^2 / 2) >= 0.9 up to
    # M = 3.4 (to the 0.01 dB grid).
    bins = [
        {"x_low": float(k), "x_high": k + 1.0, "num_pairs": 10, "p_same": 1.0 if k < 3 else 0.0}
        for k in range(12)
    ]
    curve = Curve({"bin_width": 1.0}, None, bins)
    report = pair_window_report(curve, PairConfig("", ""), targets=(0.75, 0.9))
    assert report["expected_share_same"]["bins"] == pytest.approx(0.75, abs=2e-3)
    assert report["targets"][0]["widest_snr_window_db"]["bins"] == pytest.approx(6.0, abs=0.02)
    cap = report["targets"][1]["max_abs_delta_db"]["bins"]
    assert (
        (6 * 3 - 4.5) / (6 * cap - cap**2 / 2)
        >= 0.9
        > (6 * 3 - 4.5) / (6 * (cap + 0.02) - (cap + 0.02) ** 2 / 2)
    )


def test_the_curve_report_on_a_known_curve(tmp_path):
    truth = Psychometric(floor=0.35, ceiling=0.95, midpoint=6.0, width=1.0)
    pairs = read_cdpam_list(simulated_list(tmp_path / "l.txt", truth, 2500))
    report, curves = curve_report(
        pairs, pair_config=PairConfig("", ""), num_bootstrap=20, targets=(0.93, 0.2)
    )
    section = report["additive"]
    assert section["skipped"] == {"no_numbers_in_name": 0, "different_sources": 1, "non_positive_value": 0}
    fit = section["pooled"]["fit"]
    assert fit["floor"] == pytest.approx(0.35, abs=0.04) and fit["ceiling"] == pytest.approx(0.95, abs=0.04)
    assert fit["thresholds"]["half_way"]["x"] == pytest.approx(truth.x_at(0.65), abs=0.7)
    assert not fit["goodness_of_fit"]["poor"]
    assert set(section["per_noise_type"]) == {"pink_noise", "white_noise"}
    assert section["pooled"]["identical"]["num_pairs"] == 1
    window = report["pair_window"]
    assert window["mean_abs_delta_db"] == pytest.approx(2.0)
    truth_share = expected_share_same(truth, 6.0)
    assert window["expected_share_same"]["fit"] == pytest.approx(truth_share, abs=0.03)
    low, high = window["expected_share_same"]["fit_ci95"]
    assert low <= window["expected_share_same"]["fit"] <= high
    model = curves["additive"].fit.model
    answer = window["targets"][0]["widest_snr_window_db"]["fit"]  # the share at the answer is the target
    assert answer < 6.0 and expected_share_same(model, answer) == pytest.approx(0.93, abs=0.005)
    cap = window["targets"][0]["max_abs_delta_db"]["fit"]
    assert cap < answer and expected_share_same(model, 6.0, cap) == pytest.approx(0.93, abs=0.005)
    everything = window["targets"][1]  # P(same) >= 0.35 everywhere: any window keeps 20%
    assert everything["widest_snr_window_db"]["limited_by"] == "snr_range_db"
    assert everything["widest_snr_window_db"]["fit"] == pytest.approx(12.0)


def test_curve_from_list_writes_the_plot_and_summary_lines_say_the_figures(tmp_path):
    truth = Psychometric(floor=0.35, ceiling=0.95, midpoint=6.0, width=1.0)
    path = simulated_list(tmp_path / "l.txt", truth, 400)
    capped = PairConfig("", "", max_abs_delta_db=3.0)
    report = curve_from_list(
        path, pair_config=capped, num_bootstrap=5, targets=(0.9,), plot_path=tmp_path / "c.png"
    )
    assert report["list"] == str(path) and report["plot"] == str(tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    fit = report["additive"]["pooled"]["fit"]
    first, window, target = summary_lines(report)
    assert first.startswith(f"additive: floor {fit['floor']:.3f}, ceiling {fit['ceiling']:.3f}; half_way ")
    assert first.endswith(f" dB ({fit['num_pairs_fitted']} pairs)")
    share = report["pair_window"]["expected_share_same"]["fit"]
    assert window.startswith(
        f"pair window 6 dB, |ΔSNR| <= 3 dB: expected share judged same {share:.3f} (fit)"
    )
    assert target.startswith("--target-same 0.9: --snr-window ") and ", or --max-abs-delta " in target
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder"):  # before the list is read
        curve_from_list(tmp_path / "none.txt", pair_config=capped, plot_path=tmp_path / "f" / "c.png")


def simulated_mp3_list(path, truth, num_pairs, seed=0):
    """A CDPAM-style mp3 list (bitrates from CDPAM's level mapping) judged by a known curve of
    |log2(bitrate ratio)|, plus reverb lines (three levels) judged by the same curve scaled."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(num_pairs):
        a, b = 300 * (1 / 300) ** (rng.uniform(0, 100, 2) / 100)
        same = rng.random() < truth(abs(math.log2(a / b)))
        lines.append(f"{a:.4f}_m{i % 9}_s.wav\t{b:.4f}_m{i % 9}_s.wav\t{int(not same)}\tmp3")
        first, second = rng.uniform(0, 100, 3), rng.uniform(0, 100, 3)
        same = rng.random() < truth(math.dist(first, second) / 10)
        names = ["_".join(f"{v:.2f}" for v in levels) + f"_f{i % 7}_s.wav" for levels in (first, second)]
        lines.append(f"{names[0]}\t{names[1]}\t{int(not same)}\t reverb_noise")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_human_windows_per_kind_recover_a_known_curve(tmp_path):
    from jsqa_tf.errors import ConfigError
    from jsqa_tf.jnd_curve import human_p_same

    truth = Psychometric(floor=0.15, ceiling=0.95, midpoint=3.0, width=0.4)
    path = simulated_mp3_list(tmp_path / "list.txt", truth, 1500)
    p_same = human_p_same(path, "mp3")
    d = np.linspace(0, 6, 13)
    np.testing.assert_allclose(p_same(d), truth(d), atol=0.06)  # a callable of octaves
    reverb = human_p_same(read_cdpam_list(path), "reverb")  # the same curve, 10 units an octave
    np.testing.assert_allclose(reverb(10 * d), truth(d), atol=0.08)
    with pytest.raises(ConfigError, match="no human judgements of 'bandwidth'"):
        human_p_same(path, "bandwidth")
    with pytest.raises(ConfigError, match="additive: need at least 20 judgements"):
        human_p_same(path, "additive")

    report, _ = curve_report(
        read_cdpam_list(path), kinds=("mp3", "reverb"), pair_config=PairConfig("", ""), num_bootstrap=20,
        targets=(0.5, 0.8, 0.99),
    )  # fmt: skip
    half, eight, too_high = report["mp3"]["target_same"]
    assert half["unit"] == "octaves" and half["max_difference"] == pytest.approx(truth.x_at(0.5), abs=0.2)
    assert eight["max_difference"] == pytest.approx(truth.x_at(0.8), abs=0.2)
    assert half["ci95"][0] <= half["max_difference"] <= half["ci95"][1]
    assert too_high["max_difference"] is None and "outside the fitted range" in too_high["reason"]
    assert eight["widest_uniform_window"] > eight["max_difference"]  # a mean over [0, W] falls slower
    assert report["reverb"]["target_same"][0]["max_difference"] == pytest.approx(
        10 * truth.x_at(0.5), abs=2.5
    )
    lines = summary_lines(report)
    assert f"mp3 --target-same 0.5: |Δ bitrate| <= {half['max_difference']:.2f} [" in "\n".join(lines)
    assert any(line.startswith("reverb --target-same 0.8: reverb parameter distance <= ") for line in lines)
    assert any(line.startswith("mp3 --target-same 0.99: none (") for line in lines)
