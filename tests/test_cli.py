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
