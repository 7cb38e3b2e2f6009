import json

import pytest
from click.testing import CliRunner

import jsqa_tf
from jsqa_tf.cli import main


@pytest.fixture
def run():
    def invoke(*args):
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


def test_version_and_help(run):
    assert run("--version").output.strip() == f"jsqa-tf, version {jsqa_tf.__version__}"
    help_text = run("--help").output
    assert "demo-data" in help_text and "prepare" in help_text and "--verbose" in help_text


def test_demo_data_then_prepare_all_three_corpora(run, tmp_path):
    result = run("demo-data", tmp_path / "demo", "--small")
    assert result.exit_code == 0, result.output
    paths = json.loads(result.stdout)
    runs = [
        ("librispeech", paths["librispeech"], "--val-fraction", "0.3"),
        ("chime3", paths["chime3"], "--chime3-channels", "all"),
        ("nisqa", paths["nisqa"], "--db", "NISQA_TRAIN_SIM"),
    ]
    for corpus, source, *options in runs:
        out = tmp_path / "shards" / corpus
        result = run("prepare", corpus, source, out, "-j", "0", *options)
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)  # stdout holds only the JSON summary
        assert summary["corpus"] == corpus and summary["num_records"] > 0
        assert (out / "manifest.json").exists()
    assert set(summary["splits"]) == {"train"}
    assert json.loads((tmp_path / "shards" / "librispeech" / "manifest.json").read_text())["splits"]["val"]


def test_config_file_with_overrides(run, tmp_path, tiny_demo):
    (tmp_path / "prepare.yaml").write_text("shard_seconds: 2.0\nseed: 7\nnum_workers: 0\n")
    out = tmp_path / "out"
    result = run(
        "prepare",
        "librispeech",
        tiny_demo["librispeech"],
        out,
        "--config",
        tmp_path / "prepare.yaml",
        "--seed",
        "9",
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["shard_seconds"] == 2.0 and manifest["config"]["seed"] == 9
    (tmp_path / "typo.yaml").write_text("shard_secs: 2.0\n")
    result = run(
        "prepare",
        "librispeech",
        tiny_demo["librispeech"],
        tmp_path / "o2",
        "--config",
        tmp_path / "typo.yaml",
    )
    assert result.exit_code == 1 and "unknown key(s) shard_secs" in result.output


@pytest.mark.parametrize(
    "args,message",
    [
        (("prepare", "librispeech", "{tmp}/missing", "{tmp}/out"), "missing: folder not found"),
        (("prepare", "nisqa", "{tmp}/none.csv", "{tmp}/out"), "none.csv: CSV file not found"),
        (("prepare", "folder", "{tmp}", "{tmp}/out"), "no audio files"),
        (("demo-data", "{tmp}/file.txt"), "file.txt"),
    ],
)
def test_errors_are_one_clear_line(run, tmp_path, args, message):
    (tmp_path / "file.txt").write_text("x")
    result = run(*[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output


def test_strict_fails_on_problem_files(run, tmp_path, tiny_demo):
    import shutil

    source = tmp_path / "LibriSpeech"
    shutil.copytree(tiny_demo["librispeech"], source)
    next(source.rglob("*.flac")).write_bytes(b"corrupt")
    result = run("prepare", "librispeech", source, tmp_path / "out", "--strict", "-j", "0")
    assert result.exit_code == 1 and "--strict" in result.output and "1 problem file(s)" in result.output
    assert not (tmp_path / "out").exists()
    result = run("prepare", "librispeech", source, tmp_path / "out", "-j", "0")
    assert result.exit_code == 0 and json.loads(result.stdout)["num_problems"] == 1
    assert "warning: 1 file(s) skipped" in result.stderr and "Format not recognised" in result.stderr


@pytest.fixture(scope="module")
def demo_shards(tmp_path_factory, tiny_demo):
    root = tmp_path_factory.mktemp("cli_pairs")
    runner = CliRunner()
    for corpus, options in [("librispeech", []), ("chime3", ["--chime3-channels", "all"])]:
        out = root / corpus
        result = runner.invoke(main, ["prepare", corpus, tiny_demo[corpus], str(out), "-j", "0", *options])
        assert result.exit_code == 0, result.output
    return root


def test_pairs_then_jnd_fit_validate(run, tmp_path, demo_shards):
    out = tmp_path / "pairs"
    result = run(
        "pairs",
        demo_shards / "librispeech",
        demo_shards / "chime3",
        out,
        "-n",
        "6",
        "--crop-seconds",
        "2",
        "--max-abs-delta",
        "2.5",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["num_pairs"] == 6 and "mean |ΔSNR|" in result.stderr
    assert summary["max_abs_delta_db"] <= 2.5
    expected_mean = (6 * 2.5**2 / 2 - 2.5**3 / 3) / (6 * 2.5 - 2.5**2 / 2)  # capped triangle
    assert summary["expected_mean_abs_delta_db"] == pytest.approx(expected_mean)
    assert (out / "abs_delta_snr_histogram.png").exists()

    # A small human-like labelled set: pairs of one source at a small or a large gain step.
    import numpy as np

    from jsqa_tf.audio import read_audio, write_wav

    clean = read_audio(sorted((out / "audio").glob("*_a.wav"))[0])
    noise = np.random.default_rng(0).standard_normal(len(clean)) * 0.05
    lines = []
    for source in range(6):
        shifted = np.roll(clean, 1000 * source)
        for gain in (0.1, 0.11, 0.12, 0.5, 1.0):
            write_wav(tmp_path / "lab" / f"{gain}_s{source}.wav", shifted + gain * noise)
        for ga, gb in [(0.1, 0.11), (0.11, 0.12), (0.1, 0.12), (0.1, 0.5), (0.11, 1.0), (0.12, 0.5)]:
            lines.append(f"{ga}_s{source}.wav\t{gb}_s{source}.wav\t{int(gb / ga > 2)}")
    (tmp_path / "lab" / "list.txt").write_text("\n".join(lines) + "\n")
    result = run(
        "jnd", "fit", tmp_path / "lab" / "list.txt", "-o", tmp_path / "jnd.json", "-j", "0", "--folds", "3"
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["cv_accuracy"] > 0.8 and info["features"] == ["pesq_wb"]  # the paper's SVM: PESQ alone
    assert info["cv_grouped_by"] == "source recording" and info["num_sources"] == 6
    assert info["reference"] == "first" and info["kinds"] == ["additive"]
    result = run("jnd", "fit", tmp_path / "lab" / "list.txt", "-o", tmp_path / "jnd.json")
    assert result.exit_code == 1 and "exists already" in result.output

    result = run("jnd", "validate", tmp_path / "jnd.json", out, "-j", "0")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["num_scored"] + report["num_skipped"] == 6 and report["features"] == ["pesq_wb"]
    low, high = report["share_within_jnd_ci95"]
    assert 0 <= low <= report["share_within_jnd"] <= high <= 1


def test_jnd_curve_from_labels_alone(run, tmp_path):
    import numpy as np

    from jsqa_tf.psychometric import Psychometric

    truth = Psychometric(floor=0.3, ceiling=0.95, midpoint=4.0, width=0.8)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(600):
        delta = rng.uniform(0, 20)
        same = rng.random() < truth(delta)
        lines.append(f"0.1_u{i}.wav\t{0.1 * 10 ** (delta / 20):.6f}_u{i}.wav\t{0 if same else 1}\tpink_noise")
    lines += ["0.1_u1.wav\t0.1_u1.wav\t0\t pink_noise", "300_m1.wav\t24_m1.wav\t1\tmp3"]
    (tmp_path / "linear.txt").write_text("\n".join(lines) + "\n")
    plot = tmp_path / "curve.png"
    result = run(
        "jnd", "curve", tmp_path / "linear.txt", "--bootstrap", "20", "--target-same", "0.9", "--plot", plot
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    pooled = report["additive"]["pooled"]
    assert pooled["fit"]["thresholds"]["half_way"]["x"] == pytest.approx(truth.x_at(0.625), abs=0.8)
    assert pooled["identical"]["num_pairs"] == 1 and len(pooled["bins"]) == 20
    assert report["not_used"] == {"mp3": 1}  # mp3 is never read as SNR
    window = report["pair_window"]
    assert window["mean_abs_delta_db"] == pytest.approx(2.0)
    assert 0.5 < window["expected_share_same"]["fit"] < 1
    assert window["targets"][0]["max_abs_delta_db"]["fit"] is not None
    assert "half_way" in result.stderr and "--target-same 0.9" in result.stderr
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    capped = run("jnd", "curve", tmp_path / "linear.txt", "--bootstrap", "5", "--max-abs-delta", "3")
    window = json.loads(capped.stdout)["pair_window"]
    assert window["max_abs_delta_db"] == 3.0 and window["mean_abs_delta_db"] < 1.5

    (tmp_path / "broken.txt").write_text("\n".join(lines[:3]) + "\nonly-one-field\n")
    result = run("jnd", "curve", tmp_path / "broken.txt")
    assert result.exit_code == 1 and "broken.txt: line 4: expected" in result.output


@pytest.mark.parametrize(
    "options,message",
    [
        (["--bootstrap", "0"], "bootstrap resamples must be >= 1, got 0"),
        (["--target-same", "1.5"], "must be in (0, 1), got 1.5"),
        (["--bin-width", "0"], "bin width must be > 0"),
        (["--drop", "1"], "drop must be in (0, 1)"),
        (["--kinds", "additive,wind"], "unknown: wind"),
        (["--max-abs-delta", "7"], "max_abs_delta_db must be in (0, 6]"),
    ],
)
def test_jnd_curve_refuses_bad_options_in_one_line(run, tmp_path, options, message):
    (tmp_path / "list.txt").write_text("0.1_a.wav\t0.2_a.wav\t1\tpink_noise\n")
    result = run("jnd", "curve", tmp_path / "list.txt", *options)
    assert result.exit_code == 1 and message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "options,message",
    [
        (["--folds", "0"], "folds must be >= 2, got 0"),
        (["--c", "-1"], "C must be > 0, got -1"),
        (["--features", "pesq,stoi"], "unknown: stoi"),
        (["--kinds", "mp3"], "no pairs of kind(s) mp3"),
        (["--folds", "3"], "needs at least 3 recordings"),
    ],
)
def test_jnd_fit_refuses_bad_options_before_reading_audio(run, tmp_path, options, message):
    # The audio files do not exist: an option error must come first, before any feature work.
    lines = [f"0.1_s{i % 2}.wav\t0.{j}_s{i % 2}.wav\t{i % 2}\tpink_noise" for i in range(12) for j in (2, 3)]
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    result = run("jnd", "fit", tmp_path / "list.txt", "-o", tmp_path / "jnd.json", *options)
    assert result.exit_code == 1 and message in result.output
    assert "file not found" not in result.output and not (tmp_path / "jnd.json").exists()


def test_jnd_curve_does_not_import_tensorflow(tmp_path):
    import subprocess
    import sys

    lines = [f"0.1_u{i}.wav\t{0.1 * (1 + i % 7)}_u{i}.wav\t{int(i % 7 > 3)}\tpink_noise" for i in range(40)]
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    code = (
        "import sys\n"
        "from jsqa_tf.cli import main\n"
        f"main(['jnd', 'curve', {str(tmp_path / 'list.txt')!r}, '--bootstrap', '2'], standalone_mode=False)\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
