import json

import numpy as np
import pytest

from jsqa_tf.audio import write_wav
from jsqa_tf.data.demo import synth_speech
from jsqa_tf.errors import ConfigError, CorpusError
from jsqa_tf.jnd import (
    JNDClassifier,
    curve_points,
    extract_features,
    fit_psychometric,
    less_noisy_first,
    pair_features,
    parse_gain,
    read_cdpam_list,
    read_pair_csv,
    share_within_jnd,
    si_sdr,
    wilson_interval,
)


def mixture(clean, noise, gain):
    return (clean + gain * noise).astype(np.float32)


@pytest.fixture(scope="module")
def labelled_list(tmp_path_factory):
    """A CDPAM-style list: `<gain>_<source>.wav` files under white_noise_list/, labelled by
    a simulated listener who hears a difference when |ΔSNR| > 3 dB."""
    root = tmp_path_factory.mktemp("cdpam")
    rng = np.random.default_rng(0)
    lines = []
    for source in range(4):
        clean = 0.1 * synth_speech(rng, 2.0, f0_hz=rng.uniform(100, 220))
        noise = rng.standard_normal(len(clean)) * 0.1
        gains = [0.02, 0.025, 0.03, 0.09, 0.2, 0.4]
        for gain in gains:
            write_wav(root / "white_noise_list" / f"{gain}_s{source}.wav", mixture(clean, noise, gain))
        for i, ga in enumerate(gains):
            for gb in gains[i + 1 :]:
                label = int(abs(20 * np.log10(gb / ga)) > 3.0)
                lines.append(f"{gb}_s{source}.wav\t{ga}_s{source}.wav\t{label}\twhite_noise")
    (root / "dataset_linear.txt").write_text("\n".join(lines) + "\n")
    return root / "dataset_linear.txt"


def test_si_sdr_of_known_noise_level():
    rng = np.random.default_rng(0)
    reference = rng.standard_normal(16000)
    noise = rng.standard_normal(16000)
    noise *= np.sqrt(np.mean(reference**2) / np.mean(noise**2) / 10)  # 10 dB
    assert si_sdr(reference, reference + noise) == pytest.approx(10.0, abs=0.2)
    assert si_sdr(reference, 0.3 * reference) > 60  # scale-invariant


def test_pesq_orders_noisier_pairs_lower():
    rng = np.random.default_rng(1)
    clean = 0.1 * synth_speech(rng, 3.0)
    noise = 0.1 * rng.standard_normal(len(clean))
    close = pair_features(mixture(clean, noise, 0.05), mixture(clean, noise, 0.055))
    far = pair_features(mixture(clean, noise, 0.05), mixture(clean, noise, 0.5))
    assert close[0] > far[0] and close[1] > far[1]


def test_cdpam_list_parsing_and_layout(labelled_list):
    pairs = read_cdpam_list(labelled_list)
    assert len(pairs) == 60 and {p.noise_type for p in pairs} == {"white_noise"}
    assert pairs[0].reference.endswith("white_noise_list/0.025_s0.wav")  # CDPAM's <type>_list/ layout
    assert less_noisy_first(pairs[0])[0].endswith("0.02_s0.wav")  # lower gain is the reference
    assert parse_gain("a/0.0123_p232_001.wav") == (0.0123, "p232_001.wav")
    assert parse_gain("clean_p232.wav") is None


@pytest.mark.parametrize(
    "text,message",
    [
        ("a.wav\tb.wav\t0\nc.wav\td.wav\n", "line 2: expected ref<TAB>per<TAB>label"),
        ("a.wav\tb.wav\t0\nc.wav\td.wav\tmaybe\n", "line 2: label 'maybe' is not 0 or 1"),
        ("a.wav b.wav 0\n", "line 1: expected"),
        ("\n# only a comment\n", "no pairs"),
        ("a.wav\tb.wav\t2\n", "line 1: label '2'"),
    ],
)
def test_malformed_lists_stop_with_the_line_number(tmp_path, text, message):
    path = tmp_path / "list.txt"
    path.write_text(text)
    with pytest.raises(CorpusError, match=message):
        read_cdpam_list(path)


def test_pair_csv(tmp_path):
    (tmp_path / "pairs.csv").write_text("ref,deg,label\na.wav,b.wav,1\n")
    (pair,) = read_pair_csv(tmp_path / "pairs.csv")
    assert pair.reference == str(tmp_path / "a.wav") and pair.label == 1
    (tmp_path / "bad.csv").write_text("ref,label\na.wav,1\n")
    with pytest.raises(CorpusError, match="missing column.*deg"):
        read_pair_csv(tmp_path / "bad.csv")


def test_unscorable_pairs_are_counted_not_fatal(tmp_path):
    rng = np.random.default_rng(2)
    write_wav(tmp_path / "speech.wav", 0.1 * synth_speech(rng, 2.0))
    write_wav(tmp_path / "silence.wav", np.zeros(32000))
    pairs = [
        (str(tmp_path / "speech.wav"), str(tmp_path / "speech.wav")),
        (str(tmp_path / "silence.wav"), str(tmp_path / "silence.wav")),
        (str(tmp_path / "speech.wav"), str(tmp_path / "missing.wav")),
    ]
    progress = []
    features, ok, reasons = extract_features(pairs, num_workers=0, on_progress=progress.append)
    assert ok.tolist() == [True, False, False] and len(progress) == 3
    assert "No utterances" in reasons[1] and "missing.wav: file not found" in reasons[2]
    assert np.isnan(features[1]).all() and features[0, 0] > 4.0


def test_classifier_fits_and_round_trips_without_pickle(labelled_list, tmp_path):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    pairs = read_cdpam_list(labelled_list)
    features, ok, _ = extract_features([less_noisy_first(p) for p in pairs], num_workers=2)
    labels = np.array([p.label for p in pairs])
    assert ok.all()
    classifier = JNDClassifier.fit(features, labels, folds=3)
    assert classifier.info["cv_accuracy"] > 0.8
    reference = make_pipeline(StandardScaler(), SVC(kernel="rbf", gamma="scale", class_weight="balanced"))
    reference.fit(features, labels)
    grid = np.array([[f1, f2] for f1 in np.linspace(1, 4.6, 7) for f2 in np.linspace(-20, 40, 7)])
    np.testing.assert_allclose(
        classifier.decision_function(grid), reference.decision_function(grid), atol=1e-9
    )

    classifier.save(tmp_path / "jnd.json")
    data = json.loads((tmp_path / "jnd.json").read_text())  # plain JSON, nothing executable
    assert data["format"] == "jsqa-tf/jnd-svm/1" and data["features"] == ["pesq_wb", "si_sdr_db"]
    loaded = JNDClassifier.load(tmp_path / "jnd.json")
    np.testing.assert_array_equal(loaded.predict(grid), classifier.predict(grid))
    np.testing.assert_allclose(loaded.decision_function(features), classifier.decision_function(features))
    assert loaded.info["cv_accuracy"] == classifier.info["cv_accuracy"]


def test_classifier_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        JNDClassifier.load(tmp_path / "none.json")
    (tmp_path / "x.json").write_text('{"format": "something else"}')
    with pytest.raises(ConfigError, match="not a jsqa-tf JND classifier"):
        JNDClassifier.load(tmp_path / "x.json")
    (tmp_path / "y.json").write_text('{"format": "jsqa-tf/jnd-svm/1", "mean": [0, 0]}')
    with pytest.raises(ConfigError, match="malformed"):
        JNDClassifier.load(tmp_path / "y.json")
    with pytest.raises(ConfigError, match="at least 5 pairs of each label"):
        JNDClassifier.fit(np.zeros((6, 2)), np.array([0, 0, 0, 0, 0, 1]))


def test_wilson_interval():
    low, high = wilson_interval(9673, 10000)
    assert low < 0.9673 < high and high - low < 0.01
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)


def simulated_list(path, intercept, slope, num_pairs, seed=0):
    """Judgements drawn from a known logistic P(same | |ΔSNR|) = 1 / (1 + exp(-(a + b d)))."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(num_pairs):
        gain_a = rng.uniform(0.01, 0.5)
        delta = rng.uniform(0, 10)
        gain_b = gain_a * 10 ** (delta / 20)
        same = rng.random() < 1 / (1 + np.exp(-(intercept + slope * delta)))
        noise = ["pink_noise", "white_noise"][i % 2]
        lines.append(f"{gain_a:.6f}_p{i % 50}.wav\t{gain_b:.6f}_p{i % 50}.wav\t{0 if same else 1}\t{noise}")
    lines += ["0.1_p1.wav\t0.2_p2.wav\t1\twhite_noise", "clean_p1.wav\t0.2_p1.wav\t1\twhite_noise"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_curve_recovers_a_known_logistic(tmp_path):
    intercept, slope = 3.0, -1.2  # P(same) = 0.5 at 2.5 dB, 0.75 at (ln 3 - 3) / -1.2 = 1.58 dB
    points = curve_points(read_cdpam_list(simulated_list(tmp_path / "l.txt", intercept, slope, 3000)))
    assert points.num_skipped == {"no_gain_in_name": 1, "different_sources": 1, "zero_gain": 0}
    fit = fit_psychometric(points.abs_delta_db, points.same, num_bootstrap=100)
    assert fit["delta_db_at_p50"] == pytest.approx(2.5, abs=0.2)
    assert fit["delta_db_at_p75"] == pytest.approx((np.log(3) - 3.0) / -1.2, abs=0.25)
    low, high = fit["delta_db_at_p50_ci95"]
    assert low < fit["delta_db_at_p50"] < high and high - low < 0.6
    share = share_within_jnd(fit, np.array([0.0, 1.0, 2.0, 3.0, 10.0]))
    assert share["share_below_p50_threshold"] == pytest.approx(0.6)
    from sklearn.linear_model import LogisticRegression

    reference = LogisticRegression(C=1e12, max_iter=10_000).fit(points.abs_delta_db[:, None], points.same)
    assert fit["slope_per_db"] == pytest.approx(reference.coef_[0, 0], rel=1e-3)
    assert fit["intercept"] == pytest.approx(reference.intercept_[0], rel=1e-3)
    with pytest.raises(ConfigError, match="at least 10 pairs"):
        fit_psychometric(np.arange(5.0), np.array([True, False] * 2 + [True]))
