import csv
import json

import numpy as np
import pytest

from jsqa_tf import compare, metrics
from jsqa_tf.errors import CorpusError

NUM_FILES = 90


def write_evaluation(folder, files, conditions, mos, predicted, *, model="model.keras", predictions=True):
    """An evaluation folder as the evaluation writes it: metrics.json and predictions.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    report = metrics.evaluate_predictions(mos, predicted, conditions, num_bootstrap=200)
    report.update(model=str(model), data="NISQA_VAL_SIM")
    (folder / "metrics.json").write_text(json.dumps(report, indent=2))
    if predictions:
        with open(folder / "predictions.csv", "w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(["file", "condition", "mos", "predicted"])
            writer.writerows(zip(files, conditions, mos, predicted, strict=True))
    return folder


@pytest.fixture
def corpus():
    rng = np.random.default_rng(0)
    files = [f"deg/c{i % 15:02d}_{i:03d}.wav" for i in range(NUM_FILES)]
    conditions = [f"c{i % 15:02d}" for i in range(NUM_FILES)]
    mos = np.round(rng.uniform(1, 5, NUM_FILES), 3)
    return files, conditions, mos, rng


@pytest.fixture
def two_runs(tmp_path, corpus):
    """A training run folder (evaluation in evaluate/) with a noisy model; a plain evaluation
    folder with a better one."""
    files, conditions, mos, rng = corpus
    scratch = write_evaluation(
        tmp_path / "runs" / "scratch" / "evaluate", files, conditions, mos, mos + rng.normal(0, 0.9, mos.size)
    )
    pretrained = write_evaluation(
        tmp_path / "eval_pretrained", files, conditions, mos, mos + rng.normal(0, 0.3, mos.size)
    )
    return scratch.parent, pretrained


def test_load_result_by_run_folder_by_folder_and_by_file(two_runs):
    run, folder = two_runs
    by_run = compare.load_result(run)
    by_file = compare.load_result(run / "evaluate" / "metrics.json")
    by_folder = compare.load_result(folder)
    assert by_run.name == by_file.name == "scratch"  # "evaluate" is skipped
    assert by_folder.name == "eval_pretrained"
    assert compare.load_result(folder, name="JSQA").name == "JSQA"
    assert by_run.metrics == by_file.metrics and by_run.metrics["model"] == "model.keras"
    assert len(by_run.predictions) == NUM_FILES
    condition, mos, predicted = by_run.predictions["deg/c01_001.wav"]
    assert condition == "c01" and isinstance(mos, float) and isinstance(predicted, float)


def test_compare_and_markdown(two_runs):
    run, folder = two_runs
    results = [compare.load_result(run), compare.load_result(folder)]
    table = compare.compare(results, num_bootstrap=300, seed=1)
    json.dumps(table, allow_nan=False)
    assert table["baseline"] == "scratch"
    assert [row["name"] for row in table["results"]] == ["scratch", "eval_pretrained"]
    # Rows carry each evaluation's own figures.
    assert table["results"][0]["per_file"]["pcc"] == results[0].metrics["per_file"]["pcc"]
    assert set(table["results"][0]["per_condition"]) == {"pcc", "rmse_mapped_1"}
    (difference,) = table["differences"]
    assert difference["name"] == "eval_pretrained" and difference["num_shared_files"] == NUM_FILES
    assert difference["num_conditions"] == 15 and difference["note"] is None
    rmse = difference["per_file"]["rmse"]
    assert rmse["ci95"][1] < 0 and rmse["p_b_better"] > 0.95
    expected = (
        results[1].metrics["per_file"]["rmse"]["value"] - results[0].metrics["per_file"]["rmse"]["value"]
    )
    assert rmse["difference"] == pytest.approx(expected)

    markdown = compare.to_markdown(table)
    assert "| Model | PCC | SRCC | RMSE | MAE |" in markdown.replace(
        " | PCC, per condition | RMSE (1st-order map), per condition |", " |"
    )
    pcc = results[0].metrics["per_file"]["pcc"]
    assert f"| scratch | {pcc['value']:.3f} [{pcc['ci95'][0]:.2f}, {pcc['ci95'][1]:.2f}] |" in markdown
    assert "PCC, per condition" in markdown and "ΔRMSE" in markdown
    assert f"| eval_pretrained | {NUM_FILES} | " in markdown
    assert f"{rmse['difference']:+.3f} [{rmse['ci95'][0]:+.3f}, {rmse['ci95'][1]:+.3f}]" in markdown
    assert f"P={rmse['p_b_better']:.2f}" in markdown
    assert "model.keras" in markdown


def test_differences_on_shared_files_only_and_without_predictions(tmp_path, corpus):
    files, conditions, mos, rng = corpus
    base = write_evaluation(tmp_path / "a", files, conditions, mos, mos + rng.normal(0, 0.5, mos.size))
    half = slice(0, NUM_FILES // 2)
    subset = write_evaluation(
        tmp_path / "b",
        files[half],
        conditions[half],
        mos[half],
        mos[half] + rng.normal(0, 0.5, NUM_FILES // 2),
    )
    bare = write_evaluation(
        tmp_path / "c", files, [""] * NUM_FILES, mos, mos + 0.1, predictions=False
    )  # no conditions either
    table = compare.compare([compare.load_result(p) for p in (base, subset, bare)], num_bootstrap=50)
    shared, missing = table["differences"]
    assert shared["num_shared_files"] == NUM_FILES // 2 and shared["per_file"]["pcc"]["ci95"] is not None
    assert missing["per_file"] is None and "predictions.csv" in missing["note"]
    assert table["results"][2]["per_condition"] is None
    markdown = compare.to_markdown(table)
    assert "per condition" not in markdown.split("\n\n")[1].splitlines()[0]  # not every row has them
    assert "No paired comparison:" in markdown and "| c | n/a | n/a |" in markdown
    # Another baseline.
    assert (
        compare.compare([compare.load_result(base), compare.load_result(subset)], baseline=1)["baseline"]
        == "b"
    )


def test_errors_name_the_file_and_the_reason(tmp_path, two_runs, corpus):
    files, conditions, mos, _ = corpus
    with pytest.raises(CorpusError, match="missing: no such file"):
        compare.load_result(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no metrics.json"):
        compare.load_result(tmp_path / "empty")

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "metrics.json").write_text('{"num_files": 3,')
    with pytest.raises(CorpusError, match="metrics.json: not JSON") as error:
        compare.load_result(bad)
    assert error.value.path == str(bad / "metrics.json")
    (bad / "metrics.json").write_text('{"num_files": 3}')
    with pytest.raises(CorpusError, match="missing key.*'per_file'"):
        compare.load_result(bad)

    run, folder = two_runs
    csv_path = folder / "predictions.csv"
    lines = csv_path.read_text().splitlines()
    csv_path.write_text(
        "\n".join([lines[0], lines[1], lines[2].replace(lines[2].split(",")[2], "n/a")]) + "\n"
    )
    with pytest.raises(CorpusError, match=r"row 2 \(line 3\): mos 'n/a' is not a number"):
        compare.load_result(folder)
    csv_path.write_text("file,mos,predicted\nx.wav,3,3\n")
    with pytest.raises(
        CorpusError, match="header is 'file,mos,predicted'; expected 'file,condition,mos,predicted'"
    ):
        compare.load_result(folder)

    elsewhere = write_evaluation(
        tmp_path / "other", [f"other/{f}" for f in files], conditions, mos, mos, model="other.keras"
    )
    with pytest.raises(CorpusError, match="shares no file with the baseline 'scratch'"):
        compare.compare([compare.load_result(run), compare.load_result(elsewhere)], num_bootstrap=10)
    regrouped = write_evaluation(tmp_path / "regrouped", files, [f"x{c}" for c in conditions], mos, mos)
    with pytest.raises(CorpusError, match="has condition 'xc00' here, 'c00' in the baseline"):
        compare.compare([compare.load_result(run), compare.load_result(regrouped)], num_bootstrap=10)
    relabelled = write_evaluation(tmp_path / "relabelled", files, conditions, mos + 0.5, mos)
    with pytest.raises(CorpusError, match="the MOS of 90 shared file"):
        compare.compare([compare.load_result(run), compare.load_result(relabelled)], num_bootstrap=10)


def test_same_names_are_told_apart(two_runs):
    run, _ = two_runs
    table = compare.compare([compare.load_result(run), compare.load_result(run)], num_bootstrap=20)
    assert [row["name"] for row in table["results"]] == ["scratch", "scratch (2)"]
    (same,) = table["differences"]
    assert same["per_file"]["rmse"]["difference"] == 0 and same["per_file"]["rmse"]["p_b_better"] == 0
    with pytest.raises(ValueError, match="baseline must index one of the 2 results"):
        compare.compare([compare.load_result(run)] * 2, baseline=2)
