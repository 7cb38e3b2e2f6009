"""Models say what they learned from: records in run folders, `.keras` files and exports, and
the one warning line for a model that learned from the synthetic demo corpus."""

import json
import logging
import os
import shutil

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from jsqa_lite.contract import demo_warning
from jsqa_tf import provenance
from jsqa_tf.cli import main
from jsqa_tf.config import PrepareConfig
from jsqa_tf.data.manifest import load_manifest
from jsqa_tf.data.prepare import prepare

WARNING = "learned from the synthetic demo corpus"


@pytest.fixture(scope="module")
def real_shards(tmp_path_factory) -> str:
    """A folder corpus that is not the demo's (two noise files), prepared."""
    root = tmp_path_factory.mktemp("real")
    rng = np.random.default_rng(0)
    for index in range(2):
        sf.write(root / f"clip{index}.wav", (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000)
    prepare(PrepareConfig(corpus="folder", source=str(root), num_workers=0), str(root / "shards"))
    return str(root / "shards")


def _record_of(folder: str, stage: str = "finetune") -> dict:
    return provenance.stage_record(stage, folder, {"mos": folder})


def test_prepared_demo_shards_know_they_are_the_demo(mos_demo, real_shards):
    assert load_manifest(mos_demo["mos"])["synthetic_demo"] is True
    assert load_manifest(real_shards)["synthetic_demo"] is False
    demo = provenance.corpus_record(mos_demo["mos"])
    assert demo["corpus"] == "nisqa" and demo["synthetic_demo"] and demo["hours"] > 0
    assert provenance.corpus_record(real_shards)["synthetic_demo"] is False


def test_a_manifest_without_the_key_is_judged_by_its_source(mos_demo, tmp_path):
    """Shards prepared before manifests said it: the demo's marker above the source decides."""
    copy = tmp_path / "old"
    shutil.copytree(mos_demo["mos"], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["synthetic_demo"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert provenance.corpus_record(str(copy))["synthetic_demo"] is True


def test_a_stage_record_names_its_corpora_and_inherits_its_inputs(mos_demo, real_shards):
    pretrained = provenance.stage_record("pretrain", "/runs/p", {"clean": mos_demo["clean"]})
    record = provenance.stage_record("finetune", "/runs/f", {"mos": real_shards}, [pretrained])
    assert [entry["stage"] for entry in record["stages"]] == ["pretrain", "finetune"]
    assert record["synthetic_demo"], "a demo-pretrained encoder taints the fine-tuned model"
    assert any(line.startswith("clean: the synthetic demo corpus") for line in record["corpora"])
    assert any(line.startswith("mos: folder") for line in record["corpora"])
    assert record["stages"][1]["finished"] and record["stages"][1]["jsqa_tf_version"]
    clean = provenance.stage_record("finetune", "/runs/f", {"mos": real_shards}, [])
    assert not clean["synthetic_demo"] and "incomplete" not in clean
    unknown = provenance.stage_record("finetune", "/runs/f", {"mos": real_shards}, [None])
    assert not unknown["synthetic_demo"] and unknown["incomplete"]


def test_the_record_travels_inside_the_keras_file(tmp_path, tiny_mos_keras, mos_demo):
    from jsqa_tf.models import load_mos_regressor

    path = str(tmp_path / "model.keras")
    shutil.copy(tiny_mos_keras, path)
    assert provenance.read_keras(path) is None
    record = _record_of(mos_demo["mos"])
    provenance.embed(path, record)
    moved = tmp_path / "elsewhere" / "model.keras"  # no run folder beside it
    moved.parent.mkdir()
    shutil.move(path, moved)
    assert provenance.read_keras(moved) == record
    assert load_mos_regressor(str(moved)).count_params() > 0  # Keras (safe mode) ignores the member


def test_demo_warning_only_for_the_demo():
    assert demo_warning({"synthetic_demo": True}, "m.tflite").startswith("m.tflite: this model " + WARNING)
    assert demo_warning({"synthetic_demo": False}, "m") is None
    assert demo_warning(None, "m") is None


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory, tiny_mos_keras, mos_demo) -> dict:
    """The tiny model marked as learned from the demo, and its export."""
    from jsqa_tf.export import export_model

    root = tmp_path_factory.mktemp("demo_model")
    path = str(root / "demo.keras")
    shutil.copy(tiny_mos_keras, path)
    provenance.embed(path, _record_of(mos_demo["mos"]))
    summary = export_model(path, "demo", str(root / "saved_models"), tflite=("float32",))
    wav = str(root / "a.wav")
    sf.write(wav, (0.1 * np.random.default_rng(1).standard_normal(16000)).astype(np.float32), 16000)
    return {"keras": path, "export": summary, "wav": wav, "root": str(root)}


def _warning_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if WARNING in line]


def test_predict_says_once_that_a_demo_model_is_not_a_quality_judge(demo_model, tiny_mos_keras):
    runner = CliRunner()
    for model in (
        demo_model["keras"],
        demo_model["export"]["saved_model"],
        demo_model["export"]["tflite"]["float32"]["path"],
    ):
        result = runner.invoke(main, ["predict", demo_model["wav"], "--model", model])
        assert result.exit_code == 0, result.output
        assert len(_warning_lines(result.stderr)) == 1, (model, result.stderr)
        assert result.stderr.startswith("warning: ")
    plain = runner.invoke(main, ["predict", demo_model["wav"], "--model", tiny_mos_keras])
    assert plain.exit_code == 0 and not _warning_lines(plain.stderr)


def test_exports_carry_the_record_and_the_runtime_warns(demo_model, caplog):
    from jsqa_lite import LiteModel
    from jsqa_lite.cli import main as lite_main

    contract_path = os.path.join(demo_model["export"]["saved_model"], "assets.extra", "jsqa_tf_contract.json")
    with open(contract_path, encoding="utf-8") as stream:
        assert json.load(stream)["provenance"]["synthetic_demo"] is True
    tflite = demo_model["export"]["tflite"]["float32"]["path"]
    with open(os.path.splitext(tflite)[0] + ".json", encoding="utf-8") as stream:
        assert json.load(stream)["provenance"]["stages"][0]["stage"] == "finetune"
    with caplog.at_level(logging.WARNING, logger="jsqa_lite"):
        model = LiteModel(tflite)
    assert model.provenance["synthetic_demo"] and len(_warning_lines(caplog.text)) == 1
    result = CliRunner().invoke(lite_main, ["predict", demo_model["wav"], "--model", tflite])
    assert result.exit_code == 0 and len(_warning_lines(result.stderr)) == 1


def test_evaluate_warns_and_records_the_model_provenance(demo_model, mos_demo, tmp_path):
    out = tmp_path / "evaluation"
    args = ["evaluate", demo_model["keras"], mos_demo["mos"], "-o", str(out), "--bootstrap", "10"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert len(_warning_lines(result.stderr)) == 1
    report = json.loads((out / "metrics.json").read_text())
    assert report["model_provenance"]["synthetic_demo"] is True


def test_predict_without_a_model_says_how_to_get_one(demo_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no runs/demo here
    result = CliRunner().invoke(main, ["predict", demo_model["wav"]])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: no --model given and no model at runs/demo")
    assert "jsqa-tf train --config pipelines/demo.yaml" in result.stderr
    assert "not for judging real speech" in result.stderr
