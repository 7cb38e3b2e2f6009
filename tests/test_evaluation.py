"""evaluate (shards and CSV lists), compare, and their commands."""

import csv
import json
import os

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from jsqa_lite.contract import split_windows
from jsqa_tf.cli import main
from jsqa_tf.errors import CorpusError, JSQAError
from jsqa_tf.evaluation import evaluate
from jsqa_tf.models import MOSRegressor, WaveformEncoder


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(0)
    model = MOSRegressor(WaveformEncoder.from_preset("tiny", name="encoder"), hidden_dims=(16, 8))
    model.head.get_layer("score").kernel.assign(model.head.get_layer("score").kernel * 20)  # spread scores
    path = tmp_path_factory.mktemp("model") / "model.keras"
    model.save(path)
    return str(path)


def write_list(folder, rows, name="list.csv"):
    """rows: (relative path, seconds or None for no file, mos text, condition)."""
    rng = np.random.default_rng(0)
    lines = ["path,mos,condition"]
    for path, seconds, mos, condition in rows:
        if seconds is not None:
            os.makedirs(os.path.dirname(folder / path), exist_ok=True)
            audio = (0.1 * rng.standard_normal(int(seconds * 16000))).astype("float32")
            sf.write(folder / path, audio, 16000)
        lines.append(f"{path},{mos},{condition}")
    (folder / name).write_text("\n".join(lines) + "\n")
    return str(folder / name)


def test_evaluate_a_csv_list_per_file_and_per_condition(model_file, tmp_path):
    import keras

    rows = [(f"audio/{c}{i}.wav", 0.6 + 0.7 * i, 1.5 + i + (c == "b"), c) for c in "abc" for i in range(3)]
    csv_path = write_list(tmp_path, rows)
    report = evaluate(model_file, csv_path, str(tmp_path / "out"), window_seconds=1.0, num_bootstrap=200)
    assert report["num_files"] == 9 and report["num_conditions"] == 3 and report["per_condition"]
    for level in ("per_file", "per_condition"):
        for name in ("pcc", "srcc", "rmse", "rmse_mapped_1", "rmse_mapped_3"):
            entry = report[level][name]
            low, high = entry["ci95"]
            assert low - 1e-9 <= entry["value"] <= high + 1e-9, (level, name)
    with open(tmp_path / "out" / "predictions.csv", newline="") as stream:
        predictions = list(csv.DictReader(stream))
    assert [p["file"] for p in predictions] == [r[0] for r in rows]
    # each file's score is its windows' mean, each window scored alone: batching changes nothing
    model = keras.saving.load_model(model_file)
    for (
        row,
        (path, *_),
    ) in zip(predictions, rows, strict=True):
        audio = sf.read(tmp_path / path, dtype="float32")[0]
        alone = np.mean([float(np.asarray(model(w[None]))[0]) for w in split_windows(audio, 16000)])
        assert float(row["predicted"]) == pytest.approx(alone, abs=1e-4)
    assert (tmp_path / "out" / "scatter.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(JSQAError, match="holds an evaluation already"):
        evaluate(model_file, csv_path, str(tmp_path / "out"))


def test_bad_csv_rows_are_reported_with_their_line_numbers(model_file, tmp_path):
    good = [(f"audio/g{i}.wav", 1.0, 3.0, "") for i in range(3)]
    for bad, message in (
        (("audio/x.wav", 1.0, "7", ""), "line 5: MOS 7 is outside the scale"),
        (("audio/x.wav", 1.0, "abc", ""), "line 5: MOS 'abc' is not a number"),
        ((good[0][0], 1.0, "2", ""), "line 5: audio/g0.wav is listed already, on line 2"),
    ):
        path = write_list(tmp_path, [*good, bad], name="bad.csv")
        with pytest.raises(CorpusError, match=message):
            evaluate(model_file, path, str(tmp_path / "never"))
    path = write_list(tmp_path, [*good, ("audio/missing.wav", None, "2", "")], name="missing.csv")
    report = evaluate(model_file, path, str(tmp_path / "skip"), num_bootstrap=0)
    assert report["num_files"] == 3 and report["problems"][0]["reason"] == "line 5: file not found"
    with pytest.raises(CorpusError, match="missing.wav: line 5: file not found"):
        evaluate(model_file, path, str(tmp_path / "strict"), strict=True)
    assert not os.path.exists(tmp_path / "never") and not os.path.exists(tmp_path / "strict")


def test_evaluate_prepared_shards_by_split_and_database(model_file, mos_demo, tmp_path):
    report = evaluate(model_file, mos_demo["mos"], str(tmp_path / "val"), num_bootstrap=100)
    assert report["num_files"] == 20 and report["split"] == "val"
    report = evaluate(
        model_file, mos_demo["mos"], str(tmp_path / "db"), split="train", databases=("NISQA_TRAIN_SIM",)
    )
    assert report["num_files"] == 40 and report["databases"] == ["NISQA_TRAIN_SIM"]


def test_evaluate_and_compare_commands(model_file, tmp_path):
    rows = [(f"audio/{c}{i}.wav", 0.5 + 0.3 * i, 1.2 + i, c) for c in "abcd" for i in range(3)]
    csv_path = write_list(tmp_path, rows)
    runner = CliRunner()
    outputs = []
    for name, window in (("short", "0.5"), ("long", "10")):
        out = tmp_path / name / "evaluate"
        result = runner.invoke(
            main,
            [
                "evaluate",
                model_file,
                csv_path,
                "-o",
                str(out),
                "--window-seconds",
                window,
                "--bootstrap",
                "100",
            ],
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["num_files"] == 12 and "per condition (4)" in result.stderr
        outputs.append(str(tmp_path / name))
    result = runner.invoke(main, ["compare", *outputs, "--baseline", "long", "--bootstrap", "100"])
    assert result.exit_code == 0, result.output
    assert "short" in result.stdout and "long" in result.stdout and "PCC" in result.stdout
    result = runner.invoke(main, ["compare", *outputs, "--json", "--bootstrap", "50"])
    assert json.loads(result.stdout)["differences"]
    # bad input: one line naming the file, exit 1 (2 for usage errors)
    result = runner.invoke(main, ["evaluate", str(tmp_path / "nothing"), csv_path])
    assert result.exit_code == 1 and "nothing: model not found" in result.output
    result = runner.invoke(main, ["evaluate", model_file, csv_path, "--window-seconds", "0"])
    assert result.exit_code == 2
    result = runner.invoke(main, ["compare", str(tmp_path / "nothing")])
    assert result.exit_code == 1 and "nothing" in result.output
