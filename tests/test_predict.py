"""`jsqa-tf predict`: folders mixing good and bad files, formats, batching, exit codes."""

import csv
import io
import json
import os

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from jsqa_lite.predict import FileResult, ResultWriter, predict
from jsqa_tf.audio import read_audio
from jsqa_tf.cli import main
from jsqa_tf.export import example_clips
from jsqa_tf.models import load_mos_regressor
from jsqa_tf.predict import open_backend

GOOD = ("a.wav", "long.flac", "stereo8k24.wav", "sub/deep.ogg")
BAD = {
    "empty.wav": "empty file",
    "corrupt.wav": "not an audio file or corrupt",
    "nan.wav": "NaN or Inf",
    "short.wav": "too short",
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Good files (16 kHz, 23 s long in three windows, 8 kHz stereo 24-bit, OGG in a
    subfolder) and bad ones (empty, corrupt, NaN, too short)."""
    root = tmp_path_factory.mktemp("audio")
    (root / "sub").mkdir()
    a, long, stereo, short = example_clips([3.0, 23.0, 12.0, 0.1], seed=3)
    sf.write(root / "a.wav", a, 16000)
    sf.write(root / "long.flac", long, 16000)
    sf.write(root / "stereo8k24.wav", np.stack([stereo[::2], 0.5 * stereo[::2]], 1), 8000, subtype="PCM_24")
    sf.write(root / "sub" / "deep.ogg", a, 16000)
    sf.write(root / "short.wav", short, 16000)
    sf.write(root / "nan.wav", np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT")
    (root / "empty.wav").write_bytes(b"")
    (root / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + b"\x07" * 40)
    (root / "notes.txt").write_text("not audio: folders keep audio suffixes only")
    return root


def invoke(*args):
    return CliRunner().invoke(main, ["predict", *[str(a) for a in args]])


def rows_of(output: str) -> dict:
    return {os.path.basename(row["path"]): row for row in csv.DictReader(io.StringIO(output))}


def test_folder_of_good_and_bad_files_with_tflite(folder, tiny_export):
    result = invoke(folder, "--recursive", "--model", tiny_export["tflite"]["float32"]["path"])
    assert result.exit_code == 1, result.output
    rows = rows_of(result.stdout)
    assert set(rows) == {os.path.basename(n) for n in GOOD} | set(BAD)
    for name in GOOD:
        row = rows[os.path.basename(name)]
        assert row["error"] == "" and 1 <= float(row["mos"]) <= 5
    for name, reason in BAD.items():
        assert rows[name]["mos"] == "" and reason in rows[name]["error"], rows[name]
    assert rows["long.flac"]["num_windows"] == "3" and float(rows["long.flac"]["seconds"]) == 23.0
    assert float(rows["stereo8k24.wav"]["seconds"]) == 12.0
    assert "4 file(s) scored, 4 failed" in result.stderr


def test_backends_agree_and_match_the_keras_model(folder, tiny_mos_keras, tiny_export):
    good = [folder / name for name in GOOD]
    scores = {}
    for name, model in [
        ("keras", tiny_mos_keras),
        ("saved_model", tiny_export["base_path"]),  # a base path: its latest version
        ("float16", tiny_export["tflite"]["float16"]["path"]),
    ]:
        result = invoke(*good, "--model", model, "--format", "jsonl", "--per-window")
        assert result.exit_code == 0, result.output
        scores[name] = [json.loads(line) for line in result.stdout.splitlines()]
    keras_mos = np.array([row["mos"] for row in scores["keras"]])
    np.testing.assert_allclose([row["mos"] for row in scores["saved_model"]], keras_mos, atol=1e-5)
    np.testing.assert_allclose([row["mos"] for row in scores["float16"]], keras_mos, atol=1e-2)
    # Each file's MOS is the mean of its windows', as the Keras model scores them one by one.
    model = load_mos_regressor(tiny_mos_keras)
    long_row = scores["keras"][1]
    audio = read_audio(folder / "long.flac")
    starts = [int(s * 16000) for s in long_row["window_start_seconds"]]
    expected = [float(model(audio[s : s + 160000][None])[0]) for s in starts]
    np.testing.assert_allclose(long_row["window_mos"], expected, atol=1e-5)
    assert long_row["mos"] == pytest.approx(np.mean(expected), abs=1e-6)


def test_batching_does_not_change_scores_and_keeps_input_order(folder, tiny_export):
    backend = open_backend(tiny_export["tflite"]["float32"]["path"])
    files = [str(folder / n) for n in ("long.flac", "empty.wav", "a.wav", "long.flac", "stereo8k24.wav")]
    runs = {}
    for batch_size, window_seconds in [(1, 10.0), (4, 10.0), (16, 10.0), (4, 2.0)]:
        results: list[FileResult] = []
        scored, failed = predict(
            backend, files, window_seconds=window_seconds, batch_size=batch_size, on_result=results.append
        )
        assert (scored, failed) == (4, 1)
        assert [r.path for r in results] == files
        runs[batch_size, window_seconds] = [r.mos for r in results]
    assert all(mos[1] is None for mos in runs.values())
    scores = {key: np.array([m for m in mos if m is not None]) for key, mos in runs.items()}
    np.testing.assert_allclose(scores[4, 10.0], scores[1, 10.0], atol=1e-5)
    np.testing.assert_allclose(scores[16, 10.0], scores[1, 10.0], atol=1e-5)
    assert np.abs(scores[4, 2.0] - scores[4, 10.0]).max() > 1e-4  # the window length is used


def test_csv_list_json_output_file_and_per_window(folder, tiny_export, tmp_path):
    listing = tmp_path / "list.csv"
    relative = os.path.relpath(folder / "a.wav", tmp_path)
    listing.write_text(f"path,mos\n{relative},4.0\n{folder / 'long.flac'},3.0\nmissing.wav,1\n")
    out = tmp_path / "scores.json"
    model = tiny_export["tflite"]["int8"]["path"]
    result = invoke(
        "--csv", listing, "--model", model, "--format", "json", "--output", out,
        "--per-window", "--window-seconds", "4", "--batch-size", "2",
    )  # fmt: skip
    assert result.exit_code == 1 and result.stdout == ""
    rows = json.loads(out.read_text())
    assert [os.path.basename(r["path"]) for r in rows] == ["a.wav", "long.flac", "missing.wav"]
    assert rows[1]["num_windows"] == 6 and len(rows[1]["window_mos"]) == 6
    assert rows[1]["mos"] == pytest.approx(np.mean(rows[1]["window_mos"]))
    assert rows[2]["error"] == "file not found" and rows[2]["mos"] is None and rows[2]["window_mos"] is None


def test_only_good_files_exit_zero_and_folders_are_not_recursive_by_default(folder, tiny_export):
    result = invoke(folder / "sub", folder / "a.wav", "--model", tiny_export["tflite"]["float32"]["path"])
    assert result.exit_code == 0, result.output
    assert list(rows_of(result.stdout)) == ["deep.ogg", "a.wav"]
    top_level = rows_of(invoke(folder, "--model", tiny_export["tflite"]["float32"]["path"]).stdout)
    assert "deep.ogg" not in top_level and "notes.txt" not in top_level


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "{tmp}/missing.tflite"], "model not found"),
        (["--model", "{tmp}"], "no trained model here"),
        (["--model", "{tmp}/bad.tflite"], "not a usable TFLite model"),
        (["--model", "{tmp}/versions"], "hold no saved_model.pb"),
        (["--model", "{tflite}", "--window-seconds", "0"], "--window-seconds 0: must be at least 0.25"),
        (["--model", "{tflite}", "--window-seconds", "nan"], "--window-seconds nan"),
        (["--model", "{tflite}", "--batch-size", "0"], "--batch-size 0: must be at least 1"),
        (["--model", "{tflite}", "--batch-size", "two"], "--batch-size two: not an integer"),
        (["--model", "{tflite}", "--output", "{tmp}/no/such/dir/out.csv"], "cannot write here"),
        (["--model", "{tflite}", "--csv", "{tmp}/missing.csv"], "cannot read the list"),
        (["--model", "{tflite}", "--output", "{a}"], "a.wav: is one of the audio files; writing the results"),
        (["--model", "{tflite}", "--output", "{tflite}"], "is the model; writing the results there would"),
        (
            ["--model", "{tflite}", "--window-seconds", "1e6"],
            "--window-seconds 1e+06 with --batch-size 8 needs",
        ),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(folder, tiny_export, tmp_path, args, message):
    (tmp_path / "bad.tflite").write_bytes(b"TFL3" + b"\0" * 60)
    (tmp_path / "versions" / "1").mkdir(parents=True)
    paths = {"tmp": tmp_path, "tflite": tiny_export["tflite"]["float32"]["path"], "a": folder / "a.wav"}
    result = invoke(folder / "a.wav", *[a.format(**paths) for a in args])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and message in result.output, result.output


def test_no_input_files_is_a_usage_error(tmp_path, tiny_export):
    (tmp_path / "notes.txt").write_text("not audio")
    result = invoke(tmp_path, "--model", tiny_export["tflite"]["float32"]["path"])
    assert result.exit_code == 2
    assert (
        result.output.startswith(f"error: {tmp_path}: no audio files (.wav, ")
        and "--recursive" in result.output
    )
    result = invoke("--model", tiny_export["tflite"]["float32"]["path"])
    assert result.exit_code == 2 and "no audio files given" in result.output


def test_result_writer_streams_valid_json_and_csv():
    rows = [FileResult("x.wav", 3.25, 2.0, 1), FileResult("y.wav", error="empty file (0 bytes)")]
    for output_format in ("json", "jsonl", "csv"):
        stream = io.StringIO()
        writer = ResultWriter(stream, output_format)
        writer.write(rows[0])
        partial = stream.getvalue()  # written (and flushed) before the next result exists
        assert "x.wav" in partial
        writer.write(rows[1])
        writer.close()
        text = stream.getvalue()
        if output_format == "json":
            assert [r["path"] for r in json.loads(text)] == ["x.wav", "y.wav"]
        elif output_format == "jsonl":
            assert json.loads(text.splitlines()[1])["error"] == "empty file (0 bytes)"
        else:
            assert text.splitlines() == [
                "path,mos,seconds,num_windows,error",
                "x.wav,3.25,2,1,",
                "y.wav,,,,empty file (0 bytes)",
            ]
    empty = io.StringIO()
    ResultWriter(empty, "json").close()
    assert json.loads(empty.getvalue()) == []
