"""`jsqa-tf train`: pretraining -> fine-tuning -> evaluation (-> compare), resumable."""

import csv
import json
import math
import os

import pytest
import yaml
from click.testing import CliRunner

from jsqa_tf import provenance
from jsqa_tf.cli import main
from jsqa_tf.config import from_dict, load_yaml
from jsqa_tf.errors import ConfigError
from jsqa_tf.training import TrainingError, train
from jsqa_tf.training.pipeline import plan

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What the README lists for a one-run pipeline's folder.
ONE_RUN_FILES = [
    "pipeline.yaml",
    "pretrain/config.yaml",
    "pretrain/encoder.keras",
    "pretrain/encoder-best.keras",
    "pretrain/history.csv",
    "pretrain/summary.json",
    "pretrain/provenance.json",
    "pretrain/checkpoints/state.json",
    "pretrain/checkpoints/best.weights.h5",
    "pretrain/logs",
    "finetune/config.yaml",
    "finetune/model.keras",
    "finetune/model-last.keras",
    "finetune/history.csv",
    "finetune/summary.json",
    "finetune/provenance.json",
    "finetune/checkpoints/state.json",
    "finetune/checkpoints/best.weights.h5",
    "finetune/logs",
    "evaluate/metrics.json",
    "evaluate/predictions.csv",
    "evaluate/scatter.png",
]


def test_the_pipeline_files_are_valid():
    for name in ("demo", "paper", "label_efficiency"):
        resolved = plan(load_yaml(os.path.join(REPO, "pipelines", f"{name}.yaml")), name)
        assert resolved.finetune
    paper = plan(load_yaml(os.path.join(REPO, "pipelines", "paper.yaml")))
    assert set(paper.finetune) == {"pretrained_noproj", "pretrained_proj", "scratch", "dimensions"}
    assert paper.finetune["dimensions"].model.targets == ("mos", "noi", "col", "dis", "loud")
    assert paper.finetune["pretrained_noproj"].model.targets == ("mos",)
    demo = plan(load_yaml(os.path.join(REPO, "pipelines", "demo.yaml")))
    assert demo.finetune[""].model.targets == ("mos", "noi", "col", "dis", "loud")
    assert paper.pretrain["noproj"].model.projection is False and paper.pretrain["proj"].model.projection
    assert paper.finetune["scratch"].model.encoder == "scratch"
    assert paper.finetune["pretrained_proj"].model.encoder == paper.pretrain["proj"].run_dir
    head = paper.finetune["scratch"]
    assert (head.model.hidden_dims, head.data.batch_size, head.training.learning_rate) == (
        (256, 128, 64),
        8,
        1e-3,
    )
    assert paper.distill_teacher == "pretrained_noproj"
    assert paper.distill.model.teacher == paper.finetune["pretrained_noproj"].run_dir
    assert paper.export == {"name": "jsqa-student", "tflite": ["float16", "int8"], "check": True}
    assert "student" in paper.evaluate
    from jsqa_tf.config import DistillConfig

    student = from_dict(DistillConfig, load_yaml(os.path.join(REPO, "pipelines", "distill_demo.yaml")))
    assert student.model.teacher == "runs/demo" and student.data.demo_dir == "demo_data"
    alone = load_yaml(os.path.join(REPO, "pipelines", "finetune_nisqa.yaml"))
    from jsqa_tf.config import FinetuneConfig

    assert from_dict(FinetuneConfig, alone).model.hidden_dims == (256, 128, 64)
    efficiency = plan(load_yaml(os.path.join(REPO, "pipelines", "label_efficiency.yaml")))
    assert len(efficiency.finetune) == 2 * 5 * 3
    run = efficiency.finetune["scratch-train_fraction0.05-seed2"]
    assert (run.data.train_fraction, run.training.seed, run.data.subset_seed) == (0.05, 2, 2)
    for name in ("demo_families", "paper_families"):  # the same pretraining but for the pairs
        ablation = plan(load_yaml(os.path.join(REPO, "pipelines", f"{name}.yaml")), name)
        additive, families = (ablation.pretrain[key] for key in ("additive", "families"))
        assert additive.data.pairs.additive_only and set(families.data.pairs.family_counts) == {
            "additive",
            "codec",
            "reverb",
            "bandwidth",
        }
        assert additive.model == families.model and additive.training == families.training
        assert set(ablation.finetune) == {"additive", "families"}


def test_bad_pipelines_are_refused_with_the_key_named(tmp_path):
    with pytest.raises(ConfigError, match="unknown key.*stages"):
        plan({"run_dir": str(tmp_path), "stages": {}})
    with pytest.raises(ConfigError, match="encoder 'nope'"):
        plan({"run_dir": str(tmp_path), "runs": {"a": {"encoder": "nope"}}})
    with pytest.raises(ConfigError, match="baseline"):
        plan(
            {
                "run_dir": str(tmp_path),
                "runs": {"a": {"encoder": "scratch"}, "b": {"encoder": "scratch"}},
                "compare": {"baseline": "c"},
            }
        )
    with pytest.raises(ConfigError, match="runs.a.*training.epochs"):
        plan({"run_dir": str(tmp_path), "runs": {"a": {"encoder": "scratch", "set": {"training.epochs": 0}}}})


@pytest.mark.slow  # ~60 s: the real demo pipeline (corpus written and prepared), few epochs
def test_demo_pipeline_writes_every_listed_file_and_reruns(tmp_path):
    runner = CliRunner()
    demo = os.path.join(REPO, "pipelines", "demo.yaml")
    args = [
        "train", "--config", demo, "--run-dir", str(tmp_path / "run"),
        "--set", f"pretrain.data.demo_dir={tmp_path / 'demo_data'}",
        "--set", f"finetune.data.demo_dir={tmp_path / 'demo_data'}",
        "--set", "pretrain.training.epochs=2", "--set", "pretrain.training.steps_per_epoch=3",
        "--set", "finetune.training.epochs=2", "--set", "finetune.training.steps_per_epoch=2",
        "--set", "evaluate.num_bootstrap=50",
    ]  # fmt: skip
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    # The printed figures are the evaluation's, over the 16 val files the model scored. (Its 4
    # steps learn nothing measurable: what fine-tuning must reach is test_finetune's to check.)
    figures = json.loads(result.stdout)["model"]
    evaluation = tmp_path / "run" / "evaluate"
    report = json.loads((evaluation / "metrics.json").read_text())
    assert figures == {"evaluation": str(evaluation)} | {
        key: report["per_file"][key]["value"] for key in ("pcc", "srcc", "rmse", "mae")
    } | {
        "targets": {
            t: {k: v["per_file"][k]["value"] for k in ("pcc", "rmse")} for t, v in report["targets"].items()
        }
    }
    assert list(figures["targets"]) == ["mos", "noi", "col", "dis", "loud"]  # the five targets, each printed
    with open(evaluation / "predictions.csv", newline="") as stream:
        scored = [(float(row["mos"]), float(row["predicted"])) for row in csv.DictReader(stream)]
    assert report["split"] == "val" and report["num_files"] == len(scored) == 16
    assert figures["rmse"] == pytest.approx(math.sqrt(sum((m - p) ** 2 for m, p in scored) / 16), abs=1e-5)
    for relative in ONE_RUN_FILES:
        assert (tmp_path / "run" / relative).exists(), relative
    model = tmp_path / "run" / "finetune" / "model.keras"
    # The model says what it learned from, and the evaluation says once that it is a demo model.
    record = provenance.read_keras(model)
    assert [entry["stage"] for entry in record["stages"]] == ["pretrain", "finetune"]
    assert record["synthetic_demo"] and len(record["corpora"]) == 3
    assert record == json.loads((tmp_path / "run" / "finetune" / "provenance.json").read_text())
    assert sum("learned from the synthetic demo corpus" in line for line in result.stderr.splitlines()) == 1
    stamp = model.stat().st_mtime_ns
    again = runner.invoke(main, args)  # the same command again: reports, redoes nothing
    assert again.exit_code == 0 and json.loads(again.stdout) == json.loads(result.stdout)
    assert model.stat().st_mtime_ns == stamp
    other = runner.invoke(main, [*args, "--set", "finetune.training.epochs=3"])
    assert other.exit_code == 1 and "--resume" not in other.output
    assert (
        "finetune.training.epochs is 2 there, 3 here" in other.output
        and "choose another run_dir" in other.output
    )
    longer = runner.invoke(main, [*args, "--set", "finetune.training.epochs=3", "--resume"])
    assert longer.exit_code == 1 and longer.output == other.output
    assert model.stat().st_mtime_ns == stamp  # finished work is never redone nor overwritten


@pytest.mark.slow  # ~50 s: two fine-tuning runs on one pretraining, and their comparison
def test_several_runs_are_compared_and_an_interrupted_stage_resumes(mos_demo, tmp_path):
    raw = {
        "run_dir": str(tmp_path / "runs"),
        "pretrain": {
            "data": {"clean_dir": mos_demo["clean"], "noise_dir": mos_demo["noise"], "val_batches": 1,
                     "pairs": {"crop_seconds": 0.5, "pairs_per_batch": 4}},
            "model": {"preset": "tiny", "projection": False},
            "training": {"epochs": 1, "steps_per_epoch": 3, "audio_examples": 0},
        },
        "finetune": {
            "data": {"data_dir": mos_demo["mos"], "crop_seconds": 1.0, "window_seconds": 4.0},
            "model": {"preset": "tiny", "hidden_dims": [8]},
            "training": {"epochs": 2, "steps_per_epoch": 2},
        },
        "evaluate": {"num_bootstrap": 50},
        "runs": {"pretrained": {"encoder": "pretrain"}, "scratch": {"encoder": "scratch"}},
        "compare": {"baseline": "scratch", "num_bootstrap": 50},
    }  # fmt: skip
    # an interruption (Ctrl-C) of the scratch run's fine-tuning during its second epoch
    import keras

    from jsqa_tf.training import finetune

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(plan(raw).finetune["scratch"], verbose=0, callbacks=[Interrupt()])
    results = train(raw, verbose=0)
    assert set(results) == {"pretrained", "scratch", "compare"}
    for run in ("pretrained", "scratch"):
        assert (tmp_path / "runs" / run / "evaluate" / "metrics.json").exists()
    assert (
        json.loads((tmp_path / "runs" / "scratch" / "finetune" / "summary.json").read_text())["epochs_done"]
        == 2
    )
    table = (tmp_path / "runs" / "compare.md").read_text()
    assert "pretrained" in table and "scratch" in table
    with pytest.raises(TrainingError, match="evaluate.num_bootstrap is 50 there, 10 here"):
        train({**raw, "evaluate": {"num_bootstrap": 10}}, verbose=0)


def test_bad_distill_and_export_sections_are_refused(tmp_path):
    runs = {"a": {"encoder": "scratch"}, "b": {"encoder": "scratch"}}
    with pytest.raises(ConfigError, match="distill.teacher: name the run"):
        plan({"run_dir": str(tmp_path), "runs": runs, "distill": {"data": {}}})
    with pytest.raises(ConfigError, match="distill.teacher: 'c' is not a run"):
        plan({"run_dir": str(tmp_path), "runs": runs, "distill": {"teacher": "c"}})
    with pytest.raises(ConfigError, match="distill.model.teacher"):
        plan({"run_dir": str(tmp_path), "distill": {"model": {"teacher": "x.keras"}}})
    with pytest.raises(ConfigError, match="distill.*data.clean_share"):
        plan({"run_dir": str(tmp_path), "distill": {"data": {"clean_share": 2.0}}})
    with pytest.raises(ConfigError, match="export.name"):
        plan({"run_dir": str(tmp_path), "export": {"tflite": ["int8"]}})
    with pytest.raises(ConfigError, match="export.tflite"):
        plan({"run_dir": str(tmp_path), "export": {"name": "m", "tflite": ["int4"]}})
    with pytest.raises(ConfigError, match="export: exports the student"):
        plan({"run_dir": str(tmp_path), "runs": runs, "export": {"name": "m"}})


@pytest.mark.slow  # ~45 s: teacher fine-tuned, student distilled, both evaluated, student exported
def test_teacher_student_export_flow(mos_demo, tmp_path):
    raw = {
        "run_dir": str(tmp_path / "runs"),
        "finetune": {
            "data": {"data_dir": mos_demo["mos"], "crop_seconds": 1.0, "window_seconds": 4.0},
            "model": {"preset": "tiny", "hidden_dims": [8]},
            "training": {"epochs": 1, "steps_per_epoch": 2},
        },
        "distill": {
            "data": {"clean_dir": mos_demo["clean"], "noise_dir": mos_demo["noise"],
                     "mos_dir": mos_demo["mos"], "crop_seconds": 0.5, "mixtures_per_batch": 4,
                     "mos_clips_per_batch": 2, "window_seconds": 4.0},
            "model": {"preset": "tiny", "hidden_dims": [8]},
            "training": {"epochs": 1, "steps_per_epoch": 2},
        },
        "evaluate": {"num_bootstrap": 50},
        "export": {"name": "student", "tflite": ["int8"], "check": True},
    }  # fmt: skip
    results = train(raw, verbose=0)
    assert set(results) == {"model", "student", "export", "compare"}
    runs = tmp_path / "runs"
    assert json.loads((runs / "student" / "distill" / "summary.json").read_text())["teacher"] == str(
        runs / "finetune"
    )
    assert (runs / "student" / "evaluate" / "metrics.json").exists()
    table = (runs / "compare.md").read_text()
    assert "model" in table and "student" in table
    assert results["export"]["version"] == 1
    assert (runs / "saved_models" / "student" / "1" / "saved_model.pb").exists()
    again = train(raw, verbose=0)  # the same file again: nothing redone, no second version
    assert again == results and not (runs / "saved_models" / "student" / "2").exists()


def test_run_settings_reach_every_training_stage_through_the_plan(tmp_path):
    from jsqa_tf.training.pipeline import with_run_settings

    paper = load_yaml(os.path.join(REPO, "pipelines", "paper.yaml"))
    raw = with_run_settings(paper, {"precision": "mixed_bfloat16", "jit_compile": False}, "paper.yaml")
    resolved = plan({**raw, "run_dir": str(tmp_path)}, "paper.yaml")
    stages = [*resolved.pretrain.values(), *resolved.finetune.values(), resolved.distill]
    assert len(stages) == 2 + 4 + 1  # two pretrainings, four fine-tunings (one five-target), a student
    assert all((s.training.precision, s.training.jit_compile) == ("mixed_bfloat16", False) for s in stages)
    assert paper["pretrain"]["noproj"]["training"].get("precision") is None  # the file itself is kept
    one = with_run_settings({"pretrain": {"data": {}}}, {"strategy": "mirrored"})  # a single pretraining
    assert one["pretrain"]["training"] == one["finetune"]["training"] == {"strategy": "mirrored"}
    assert "distill" not in one
    with pytest.raises(ConfigError, match="epochs: not a run setting"):
        with_run_settings(paper, {"epochs": 3})


def test_a_pipeline_run_made_with_the_old_keys_is_the_same_run(tmp_path, caplog, monkeypatch):
    """A run folder's pipeline.yaml written before data.pairs: the same file in the new words
    continues it (the files are compared as plans), with one warning naming the new keys."""
    from jsqa_tf.training.pipeline import PIPELINE_FILE

    new = load_yaml(os.path.join(REPO, "pipelines", "demo.yaml"))
    new["run_dir"] = str(tmp_path)
    old_data = {"demo_dir": "demo_data", "crop_seconds": 1.0, "pairs_per_batch": 8, "val_batches": 4}
    old = {**new, "pretrain": {**new["pretrain"], "data": old_data}}
    assert plan(old) == plan(new)
    (tmp_path / PIPELINE_FILE).write_text(yaml.safe_dump(old))

    class Started(Exception):
        pass

    def pretrain(config, **options):
        raise Started(config.run_dir)

    import importlib

    monkeypatch.setattr(importlib.import_module("jsqa_tf.training.pretrain"), "pretrain", pretrain)
    with caplog.at_level("WARNING"), pytest.raises(Started):  # not "made with other settings"
        train(new, verbose=0)
    assert any("data.crop_seconds -> data.pairs.crop_seconds" in r.getMessage() for r in caplog.records)
    with pytest.raises(TrainingError, match="holds a run made with other settings: evaluate"):
        train({**new, "evaluate": {"num_bootstrap": 10}}, verbose=0)
