import json

import numpy as np
import pytest

from jsqa_tf.audio import read_audio, write_wav
from jsqa_tf.data.demo import synth_speech
from jsqa_tf.errors import ConfigError, CorpusError, OutputError
from jsqa_tf.jnd import (
    LEGACY_FEATURES,
    JNDClassifier,
    extract_features,
    fit_from_list,
    pair_features,
    parse_feature_names,
    parse_kinds,
    parse_name,
    read_cdpam_list,
    read_pair_csv,
    reference_and_degraded,
    si_sdr,
    validate_pairs,
    wilson_interval,
)

# A few lines in the order and naming of CDPAM's dataset_linear.txt (made-up recordings and
# labels): the less degraded file first (lower noise gain, bitrate 300, the base reverb
# setting), reverb parameters that can fall or be "-0.0", and type fields with a leading space.
CDPAM_LINES = [
    ("0.02_f1_script1_10.0.wav", "0.02_f1_script1_10.0.wav", 0, "crickets"),
    ("0.02_f1_script1_12.5.wav", "8_f1_script1_12.5.wav", 1, "crickets"),
    ("0.02_f1_script2_15.0.wav", "0.0747_f1_script2_15.0.wav", 0, "crickets"),
    ("0.02_f1_script3_17.5.wav", "0.1071_f1_script3_17.5.wav", 1, "crickets"),
    ("0.6_m1_script1_20.0.wav", "0.66_m1_script1_20.0.wav", 0, "pink_noise"),
    ("0.6_m1_script1_22.5.wav", "0.7_m1_script1_22.5.wav", 1, "pink_noise"),
    ("2.0_m2_script4_25.0.wav", "2.5_m2_script4_25.0.wav", 0, " blue_noise"),
    ("0.2_f3_script5_27.5.wav", "0.24_f3_script5_27.5.wav", 1, "siren"),
    ("300_m3_script1_30.0.wav", "300_m3_script1_30.0.wav", 0, "mp3"),
    ("300_m3_script1_32.5.wav", "1_m3_script1_32.5.wav", 1, "mp3"),
    ("300_m3_script2_35.0.wav", "18.3372_m3_script2_35.0.wav", 1, "mp3"),
    ("13.0_24.0_45.0_f2_script2_40.0.wav", "27.8_60.19_55.23_f2_script2_40.0.wav", 1, " reverb_noise"),
    ("49.0_70.0_4.0_m4_script1_42.5.wav", "49.0_70.0_4.0_m4_script1_42.5.wav", 0, " reverb_noise"),
    ("100.0_8.0_51.0_m5_script3_45.0.wav", "68.57_6.32_42.31_m5_script3_45.0.wav", 0, " reverb_noise"),
    ("51.0_60.0_60.0_f6_script2_47.5.wav", "93.75_-0.0_0.33_f6_script2_47.5.wav", 1, " reverb_noise"),
]  # fmt: skip


def write_cdpam_list(path):
    path.write_text("".join(f"{a}\t{b}\t{label}\t{kind}\n" for a, b, label, kind in CDPAM_LINES))
    return path


def mixture(clean, noise, gain):
    return (clean + gain * noise).astype(np.float32)


@pytest.fixture(scope="module")
def labelled_list(tmp_path_factory):
    """A CDPAM-style list: `<gain>_<source>.wav` files under white_noise_list/, the less noisy
    file first, labelled by a simulated listener who hears a difference when |ΔSNR| > 3 dB."""
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
                lines.append(f"{ga}_s{source}.wav\t{gb}_s{source}.wav\t{label}\twhite_noise")
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
    assert pairs[0].first.endswith("white_noise_list/0.02_s0.wav")  # CDPAM's <type>_list/ layout
    assert {p.source for p in pairs} == {"s0.wav", "s1.wav", "s2.wav", "s3.wav"}
    assert parse_name("a/0.0123_p232_001.wav") == ((0.0123,), "p232_001.wav")
    assert parse_name("clean_p232.wav") is None
    assert parse_name("93.75_-0.0_0.33_f6_x.wav", 3) == ((93.75, -0.0, 0.33), "f6_x.wav")
    assert parse_name("93.75_0.33_f6_x.wav", 3) is None


def test_each_line_gets_the_reference_the_paper_means(tmp_path):
    """ "The less noisy one as the reference": CDPAM's list already puts it first, so the
    list's order is kept for every kind; the smaller leading number is not the reference."""
    pairs = read_cdpam_list(write_cdpam_list(tmp_path / "list.txt"))
    assert [p.kind for p in pairs] == ["additive"] * 8 + ["mp3"] * 3 + ["reverb"] * 4
    assert {p.noise_type for p in pairs} >= {"blue_noise", "reverb_noise"}  # stripped
    for pair, (first, second, _, _) in zip(pairs, CDPAM_LINES, strict=True):
        reference, degraded = reference_and_degraded(pair)
        assert (reference, degraded) == (str(tmp_path / first), str(tmp_path / second))
        assert reference_and_degraded(pair, "by-name") == (reference, degraded)
        assert reference_and_degraded(pair, "second") == (degraded, reference)
        if pair.kind == "additive":
            assert parse_name(reference)[0] <= parse_name(degraded)[0]  # the lower noise gain
        if pair.kind == "mp3":
            assert parse_name(reference)[0] == (300,)  # the higher bitrate, never "1_..."
    assert reference_and_degraded(pairs[13])[0].endswith("100.0_8.0_51.0_m5_script3_45.0.wav")
    assert pairs[9].source == "m3_script1_32.5.wav"
    assert pairs[11].source == "f2_script2_40.0.wav"
    # A list in the other order is put right by name (additive and mp3; reverb has no order).
    swapped = [type(p)(p.second, p.first, p.label, p.noise_type) for p in pairs]
    for pair, original in zip(swapped, pairs, strict=True):
        if original.kind != "reverb":
            assert reference_and_degraded(pair, "by-name") == reference_and_degraded(original)
    with pytest.raises(ConfigError, match="reference must be one of"):
        reference_and_degraded(pairs[0], "smaller")


def test_feature_and_kind_options():
    assert parse_feature_names("pesq") == ("pesq_wb",)
    assert parse_feature_names("sisdr, pesq") == ("pesq_wb", "si_sdr_db")
    assert parse_kinds("reverb,additive") == ("additive", "reverb")
    with pytest.raises(ConfigError, match="unknown: stoi"):
        parse_feature_names("pesq,stoi")
    with pytest.raises(ConfigError, match="unknown: noise"):
        parse_kinds("noise")


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
    assert pair.first == str(tmp_path / "a.wav") and pair.label == 1
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
    assert "silence.wav: silent" in reasons[1] and "missing.wav: file not found" in reasons[2]
    assert np.isnan(features[1]).all() and features[0, 0] > 4.0


def test_a_pair_pesq_fails_on_is_skipped_and_the_others_are_kept(tmp_path, monkeypatch):
    """Issue 12.5: PESQ's `ValueError: cannot convert float NaN to integer` on one pair ended
    `jnd fit`, losing every feature computed so far."""
    from jsqa_tf import jnd

    rng = np.random.default_rng(3)
    write_wav(tmp_path / "speech.wav", 0.1 * synth_speech(rng, 2.0))
    real, calls = jnd.pair_features, []

    def fails_once(reference, degraded, sample_rate=16_000, names=jnd.FEATURE_NAMES):
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("cannot convert float NaN to integer")
        return real(reference, degraded, sample_rate, names)

    monkeypatch.setattr(jnd, "pair_features", fails_once)
    pair = (str(tmp_path / "speech.wav"), str(tmp_path / "speech.wav"))
    features, ok, reasons = extract_features([pair] * 3, names=("pesq_wb",), num_workers=0)
    assert ok.tolist() == [True, False, True] and np.isfinite(features[[0, 2]]).all()
    assert reasons[1] == "PESQ failed (ValueError: cannot convert float NaN to integer)"


def test_malformed_pair_csvs_name_the_line(tmp_path):
    (tmp_path / "p.csv").write_text("ref,deg,label\na.wav,b.wav,1\n\nc.wav,d.wav\n")
    with pytest.raises(CorpusError, match="p.csv: line 4: 2 field"):
        read_pair_csv(tmp_path / "p.csv")
    (tmp_path / "p.csv").write_text("ref,deg,label\na.wav,b.wav,1,x\n")
    with pytest.raises(CorpusError, match="line 2: 4 field"):
        read_pair_csv(tmp_path / "p.csv")
    (tmp_path / "l.txt").write_bytes("0.1_é.wav\t0.2_é.wav\t1\n".encode("latin-1"))
    with pytest.raises(CorpusError, match="l.txt: not UTF-8 text"):
        read_cdpam_list(tmp_path / "l.txt")


def test_classifier_fits_and_round_trips_without_pickle(labelled_list, tmp_path):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    pairs = read_cdpam_list(labelled_list)
    features, ok, _ = extract_features([reference_and_degraded(p) for p in pairs], num_workers=2)
    labels = np.array([p.label for p in pairs])
    groups = [p.source for p in pairs]
    assert ok.all() and features.shape == (60, 2)
    both = JNDClassifier.fit(features, labels, feature_names=LEGACY_FEATURES, groups=groups, folds=3)
    assert both.info["cv_grouped_by"] == "source recording" and both.info["num_sources"] == 4
    reference = make_pipeline(StandardScaler(), SVC(kernel="rbf", gamma="scale", class_weight="balanced"))
    reference.fit(features, labels)
    grid = np.array([[f1, f2] for f1 in np.linspace(1, 4.6, 7) for f2 in np.linspace(-20, 40, 7)])
    np.testing.assert_allclose(both.decision_function(grid), reference.decision_function(grid), atol=1e-9)

    pesq_only = JNDClassifier.fit(features[:, :1], labels, groups=groups, folds=3)  # the paper's SVM
    assert pesq_only.feature_names == ("pesq_wb",) and pesq_only.info["cv_accuracy"] > 0.8
    pesq_only.save(tmp_path / "jnd.json")
    data = json.loads((tmp_path / "jnd.json").read_text())  # plain JSON, nothing executable
    assert data["format"] == "jsqa-tf/jnd-svm/1" and data["features"] == ["pesq_wb"]
    loaded = JNDClassifier.load(tmp_path / "jnd.json")
    assert loaded.feature_names == ("pesq_wb",)
    np.testing.assert_allclose(
        loaded.decision_function(features[:, :1]), pesq_only.decision_function(features[:, :1])
    )
    assert loaded.info["cv_accuracy"] == pesq_only.info["cv_accuracy"]

    # A file from before the features field decided them loads as PESQ + SI-SDR.
    both.save(tmp_path / "old.json")
    old = json.loads((tmp_path / "old.json").read_text())
    del old["features"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    legacy = JNDClassifier.load(tmp_path / "old.json")
    assert legacy.feature_names == LEGACY_FEATURES
    np.testing.assert_array_equal(legacy.predict(grid), both.predict(grid))
    old["features"] = ["pesq_wb"]  # features that do not match the stored vectors
    (tmp_path / "bad.json").write_text(json.dumps(old))
    with pytest.raises(ConfigError, match="inconsistent shapes"):
        JNDClassifier.load(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="needs at least 5 recordings"):
        JNDClassifier.fit(features, labels, feature_names=LEGACY_FEATURES, groups=groups, folds=5)


def test_classifier_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        JNDClassifier.load(tmp_path / "none.json")
    (tmp_path / "x.json").write_text('{"format": "something else"}')
    with pytest.raises(ConfigError, match="not a jsqa-tf JND classifier"):
        JNDClassifier.load(tmp_path / "x.json")
    (tmp_path / "y.json").write_text('{"format": "jsqa-tf/jnd-svm/1", "mean": [0, 0]}')
    with pytest.raises(ConfigError, match="malformed"):
        JNDClassifier.load(tmp_path / "y.json")
    (tmp_path / "z.json").write_text('{"format": "jsqa-tf/jnd-svm/1", "features": ["stoi"]}')
    with pytest.raises(ConfigError, match="unknown features"):
        JNDClassifier.load(tmp_path / "z.json")
    with pytest.raises(ConfigError, match="at least 5 pairs of each label"):
        JNDClassifier.fit(np.zeros((6, 1)), np.array([0, 0, 0, 0, 0, 1]))
    for settings, message in [(dict(C=-1.0), "C must be > 0"), (dict(folds=1), "folds must be >= 2")]:
        with pytest.raises(ConfigError, match=message):
            JNDClassifier.fit(np.zeros((20, 1)), np.arange(20) % 2, **settings)


def test_wilson_interval():
    low, high = wilson_interval(9673, 10000)
    assert low < 0.9673 < high and high - low < 0.01
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_fit_from_list_checks_first_skips_what_it_cannot_score_and_saves(labelled_list, tmp_path, caplog):
    out = tmp_path / "jnd.json"
    listed = labelled_list.read_text().splitlines()
    (labelled_list.parent / "with_missing.txt").write_text(
        "\n".join([*listed, "0.02_s0.wav\tnone_s0.wav\t1\twhite_noise", "300_s0.wav\t1_s0.wav\t1\tmp3"])
        + "\n"
    )
    tasks = []

    def progress(label, length):
        tasks.append((label, length))
        return lambda n: tasks.append(n)

    with caplog.at_level("WARNING", logger="jsqa_tf.jnd"):
        classifier = fit_from_list(
            labelled_list.parent / "with_missing.txt",
            out,
            feature_names=("si_sdr_db",),  # PESQ's cost is not what is tested here
            folds=2,
            num_workers=0,
            progress=progress,
        )
    assert tasks[0] == ("si_sdr_db", 61) and tasks[1:] == [1] * 61
    [warning] = [record.getMessage() for record in caplog.records]
    assert warning.startswith("1 pair(s) could not be scored and were skipped; e.g.:\n  line 61 (")
    assert "none_s0.wav: file not found" in warning
    info = classifier.info
    assert (info["num_pairs"], info["num_skipped"], info["num_not_used"]) == (60, 1, 1)  # the mp3 line
    assert (
        info["kinds"] == ["additive"] and info["reference"] == "first" and info["features"] == ["si_sdr_db"]
    )
    assert info["trained_on"] == str(labelled_list.parent / "with_missing.txt")
    assert JNDClassifier.load(out).info == info
    saved = out.read_bytes()
    with pytest.raises(OutputError, match="jnd.json: exists already; choose another name"):
        fit_from_list(labelled_list, out)
    assert out.read_bytes() == saved
    with pytest.raises(ConfigError, match="no pairs of kind.s. mp3"):  # before any audio is read
        fit_from_list(labelled_list, tmp_path / "mp3.json", kinds=("mp3",))
    with pytest.raises(ConfigError, match="needs at least 5 recordings"):
        fit_from_list(labelled_list, tmp_path / "five.json", folds=5)


def write_drawn_pairs(folder, rows):
    """A folder as `jsqa-tf pairs` writes it: pairs.csv and audio/pair_<n>_{a,b}.wav."""
    lines = ["pair,clean_id,noise_id,snr_a_db,snr_b_db,abs_delta_db,file_a,file_b"]
    for n, (snr_a, snr_b) in enumerate(rows):
        lines.append(
            f"{n},c{n},n{n},{snr_a},{snr_b},{abs(snr_a - snr_b)},audio/pair_{n}_a.wav,audio/pair_{n}_b.wav"
        )
    (folder / "pairs.csv").write_text("\n".join(lines) + "\n")


def test_validate_pairs_takes_the_higher_snr_view_as_reference(labelled_list, tmp_path):
    rng = np.random.default_rng(4)
    clean = 0.1 * synth_speech(rng, 2.0)
    noise = rng.standard_normal(len(clean)) * 0.1
    folder = tmp_path / "pairs"
    # pair 0: view a is the cleaner (a higher SNR); pair 1: view b is; pair 2: its b is missing
    for n, (gain_a, gain_b) in enumerate([(0.02, 0.2), (0.2, 0.02), (0.02, 0.2)]):
        write_wav(folder / "audio" / f"pair_{n}_a.wav", mixture(clean, noise, gain_a))
        if n < 2:
            write_wav(folder / "audio" / f"pair_{n}_b.wav", mixture(clean, noise, gain_b))
    write_drawn_pairs(folder, [(8.0, 2.0), (-1.0, 5.0), (3.0, 0.0)])
    classifier = fit_from_list(labelled_list, tmp_path / "jnd.json", feature_names=("si_sdr_db",), folds=2)
    report = validate_pairs(classifier, folder, num_workers=0)
    assert (report["num_pairs"], report["num_scored"], report["num_skipped"]) == (3, 2, 1)
    view = {name: read_audio(folder / "audio" / f"pair_{name}.wav") for name in ("0_a", "0_b", "1_a", "1_b")}
    right = [pair_features(view["0_a"], view["0_b"]), pair_features(view["1_b"], view["1_a"])]
    wrong = pair_features(view["1_a"], view["1_b"])  # PESQ is not symmetric: the order matters
    assert report["mean_pesq_wb"] == pytest.approx(np.mean([f[0] for f in right]))
    assert report["mean_si_sdr_db"] == pytest.approx(np.mean([f[1] for f in right]))
    assert abs(wrong[0] - right[1][0]) > 0.1
    low, high = report["share_within_jnd_ci95"]
    assert report["features"] == ["si_sdr_db"] and low <= report["share_within_jnd"] <= high
    assert report["num_within_jnd"] == round(report["share_within_jnd"] * 2)

    (folder / "pairs.csv").write_text(
        "pair,clean_id,noise_id,snr_a_db,snr_b_db,abs_delta_db,file_a,file_b\n0,c,n,1,0,1,,\n"
    )
    with pytest.raises(CorpusError, match="pairs.csv: the pairs were written without audio"):
        validate_pairs(classifier, folder)
    with pytest.raises(CorpusError, match="no pairs.csv; write pairs with `jsqa-tf pairs` first"):
        validate_pairs(classifier, tmp_path)
