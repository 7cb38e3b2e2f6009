"""Every benchmark runs end to end at toy sizes, so that none can rot: its `main()` with tiny
arguments (the same code path as a full run), or a subprocess where the run needs another
environment (`fit_jsqa_jax.py fit` under Keras on JAX with TensorFlow blocked). Each run's
printed figures and its `--json` file are checked: the figures present, finite and positive,
and the run's facts (machine, date, command, versions) there."""

from __future__ import annotations

import datetime
import importlib
import json
import math
import os
import shlex
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import jsqa_tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(REPO, "benchmarks")

# Imports nothing named tensorflow: the import fails as if TensorFlow were not installed.
BLOCK_TENSORFLOW = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoTensorFlow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                raise ImportError(f"TensorFlow is blocked in this test: import {name}")
            return None

    sys.meta_path.insert(0, NoTensorFlow())
    """
)


@pytest.fixture(scope="module")
def benchmarks_importable():
    sys.path.insert(0, BENCHMARKS)
    yield
    sys.path.remove(BENCHMARKS)


def run_main(name: str, argv: list[str], json_path) -> tuple[dict, dict]:
    """(what `main` returned, the JSON file it wrote) of `benchmarks/NAME.py ARGV --json PATH`."""
    data = importlib.import_module(name).main([*argv, "--json", str(json_path)])
    with open(json_path, encoding="utf-8") as stream:
        written = json.load(stream)
    assert written == json.loads(json.dumps(data))
    check_facts(written, name, [*argv, "--json", str(json_path)])
    return data, written


def check_facts(data: dict, name: str, argv: list[str]) -> None:
    assert isinstance(data["machine"], str) and f"{os.cpu_count()}-core" in data["machine"]
    assert data["machine_detail"]["cpu_count"] == os.cpu_count()
    assert data["date"] == datetime.date.today().isoformat()
    assert data["command"].endswith(shlex.join(["python", f"benchmarks/{name}.py", *argv]))
    assert data["versions"]["jsqa_tf"] == jsqa_tf.__version__
    assert len(data["load_average_1min"]) == 2 and data["wall_seconds"] > 0


def positive(data: dict, *keys: str) -> None:
    for key in keys:
        value = data[key]
        assert isinstance(value, int | float) and math.isfinite(value) and value > 0, (key, value)


def demo_root(tiny_demo) -> str:
    return os.path.dirname(tiny_demo["librispeech"])


def test_bench_data(tmp_path, capsys):
    argv = ["--hours", "0.005", "--seconds", "0.2", "--warmup-seconds", "0.05", "--rounds", "1"]
    data, _ = run_main("bench_data", argv, tmp_path / "data.json")
    positive(data, "audio_seconds_per_second", "clips_per_second", "cpu_ms_per_clip")
    low, high = data["audio_seconds_per_second_range"]
    assert 0 < low <= data["audio_seconds_per_second"] <= high
    assert len(data["batches_per_window"]) == 1 and data["batches_per_window"][0] >= 1
    assert f"tf.data read rate: {data['audio_seconds_per_second']:,.0f} audio-s/s" in capsys.readouterr().out


def test_bench_pairs_families(tmp_path, capsys):
    argv = [
        "--clean-hours", "0.005", "--clean-shards", "1", "--noise-files", "2", "--noise-seconds", "2",
        "--crop-seconds", "1", "--families", "additive,codec,reverb,bandwidth", "--seconds", "0.1",
        "--warmup-seconds", "0.05", "--rounds", "1", "--repeats", "2", "--codec-bank-hours", "0.005",
        "--corpus-dir", str(tmp_path / "corpus"),
    ]  # fmt: skip
    data, _ = run_main("bench_pairs", argv, tmp_path / "pairs.json")
    positive(
        data, *(f"{name}_pairs_per_second" for name in data["families"]), "families_mixed_pairs_per_second"
    )
    assert data["family_counts"] == {"additive": 2, "codec": 2, "reverb": 2, "bandwidth": 2}
    assert "pairs_per_second" not in data  # only the families' streams
    assert "all families mixed" in capsys.readouterr().out


def test_bench_pairs(tmp_path, capsys):
    argv = [
        "--clean-hours", "0.005", "--clean-shards", "1", "--noise-files", "2", "--noise-seconds", "2",
        "--crop-seconds", "1", "--streams", "pairs,pairs-one-crop", "--seconds", "0.1",
        "--warmup-seconds", "0.05", "--rounds", "1", "--repeats", "2",
        "--corpus-dir", str(tmp_path / "corpus"),
    ]  # fmt: skip
    data, _ = run_main("bench_pairs", argv, tmp_path / "pairs.json")
    positive(
        data,
        "pairs_per_second",
        "cpu_ms_per_pair",
        "pairs_per_second_one_crop_per_utterance",
        "clean_audio_seconds_per_second",
        "mix_ms_per_batch",
        "mix_ms_per_batch_eager",
    )
    mixed = data["mixed_views_audio_seconds_per_second"]
    assert mixed == pytest.approx(2 * data["pairs_per_second"], abs=0.2)
    positive(data["pairs_ratio_vs_one_crop"], "median", "min", "max")
    printed = capsys.readouterr().out
    assert f"pair sampler: {data['pairs_per_second']:,.0f} pairs/s of 1 s" in printed
    assert (tmp_path / "corpus" / "clean" / "shards" / "manifest.json").is_file()  # kept for a next run


def test_bench_train(tmp_path, capsys):
    argv = [
        "--presets", "tiny", "--precisions", "float32", "--pairs", "2", "--crop-seconds", "0.5",
        "--files", "2", "--file-seconds", "1", "--steps", "1", "--warmup", "1", "--min-seconds", "0",
    ]  # fmt: skip
    data, _ = run_main("bench_train", argv, tmp_path / "train.json")
    assert [(row["stage"], row["preset"]) for row in data["rows"]] == [
        ("pretrain", "tiny"),
        ("finetune", "tiny"),
    ]
    for row in data["rows"]:
        positive(row, "ms_per_step", "clips_per_second", "audio_seconds_per_second", "gflops", "loss")
        assert row["steps_timed"] >= 1 and row["backend"] == "tensorflow"
    positive(data["rows"][1], "nisqa_train_sim_epoch_seconds")
    assert capsys.readouterr().out.count("ms/step") == 2


def test_bench_infer(tmp_path, tiny_demo, tiny_mos_keras, capsys):
    """The trained-model path: `export_model` writes the SavedModel and int8, `open_backend`
    opens each form, `score_files` scores the clips (the calibrated path is
    `bench_student_int8`'s, the same `_common.calibrated_model`)."""
    argv = [
        "--presets", "", "--model", tiny_mos_keras, "--formats", "saved_model,tflite_int8", "--batches", "2",
        "--clip-seconds", "1", "--min-seconds", "0.05", "--demo-dir", demo_root(tiny_demo),
    ]  # fmt: skip
    data, _ = run_main("bench_infer", argv, tmp_path / "infer.json")
    rows = {row["format"]: row for row in data["rows"]}
    assert sorted(rows) == ["keras", "saved_model", "tflite_int8"]
    for row in rows.values():
        positive(row, "realtime_factor", "size_bytes", "num_parameters", "gmac_per_second")
        assert row["preset"] == "tiny" and row["batch"] == 2 and row["weights"].startswith("trained")
        assert 1.0 <= row["mos_range"][0] <= row["mos_range"][1] <= 5.0
    assert rows["keras"]["max_abs_diff_mos"] == 0.0
    assert rows["saved_model"]["max_abs_diff_mos"] < 1e-4
    assert rows["tflite_int8"]["max_abs_diff_mos"] < 0.05
    assert rows["tflite_int8"]["size_bytes"] < rows["saved_model"]["size_bytes"]
    assert capsys.readouterr().out.count("tiny  ") == 3


def test_bench_student_int8(tmp_path, tiny_demo, capsys):
    argv = ["--presets", "student-tiny", "--seeds", "0", "--int8-unchunked", "--head-epochs", "5"]
    argv += ["--demo-dir", demo_root(tiny_demo)]
    data, _ = run_main("bench_student_int8", argv, tmp_path / "student.json")
    (row,) = data["rows"]
    assert data["num_clips"] == 6 * 4 and data["levels_db"] == [0.0, -10.5, -20.0, -30.5]
    positive(row, "max_abs_diff_mos", "median_abs_diff_mos", "max_embedding_relative_error", "size_bytes")
    assert row["max_abs_diff_mos"] < 0.2 and row["max_embedding_relative_error"] < 0.1
    assert 1.0 <= row["mos_range"][0] < row["mos_range"][1] <= 5.0  # calibrated: spread, not saturated
    assert '"preset": "student-tiny"' in capsys.readouterr().out


def test_bench_predict_memory(tmp_path, capsys):
    argv = ["--backends", "saved_model", "--files", "100", "--batch-size", "4"]
    data, _ = run_main("bench_predict_memory", argv, tmp_path / "memory.json")
    (row,) = data["rows"]
    assert row["backend"] == "saved_model" and row["masks_padding"] is True
    assert list(row["rss_mb"]) == [100] and row["rss_mb"][100] > 100 and row["growth"] == 1.0
    assert "saved_model" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        importlib.import_module("bench_predict_memory").main(["--backends", "onnx"])


@pytest.fixture(scope="module", autouse=True)
def jax_fit(tmp_path_factory, benchmarks_importable):
    """`fit_jsqa_jax.py data` here, then its `fit` step started in the background, under Keras
    on JAX in a process where TensorFlow cannot be imported (as on the GPU machine: nothing it
    imports may need TensorFlow). It spends ~20 s importing and compiling: started before the
    other smoke tests, it runs beside them; `test_fit_jsqa_jax` waits for it."""
    folder = tmp_path_factory.mktemp("fit_jsqa_jax")
    paths = {name: folder / name for name in ("data.npz", "weights", "fit.json", "model.keras")}
    importlib.import_module("fit_jsqa_jax").main(
        ["data", "--out", str(paths["data.npz"]), "--small", "--extra-files", "2"]
    )
    argv = [
        "fit", "--data", str(paths["data.npz"]), "--out", str(paths["weights"]), "--preset", "tiny",
        "--minutes", "0", "--batch-size", "2", "--steps-per-epoch", "1", "--crop-seconds", "1",
        "--json", str(paths["fit.json"]),
    ]  # fmt: skip
    script = BLOCK_TENSORFLOW + textwrap.dedent(
        f"""
        import runpy
        sys.argv = {[os.path.join(BENCHMARKS, "fit_jsqa_jax.py"), *argv]!r}
        runpy.run_path(sys.argv[0], run_name="__main__")
        assert "tensorflow" not in sys.modules
        """
    )
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_backend_optimization_level=0",  # compiles ~2x faster; runs the same graph
        "PYTHONPATH": os.pathsep.join([REPO, os.path.join(REPO, "lite"), BENCHMARKS]),
    }
    log = open(folder / "fit.log", "w+", encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-c", script], env=env, stdout=log, stderr=subprocess.STDOUT, text=True, cwd=folder
    )
    yield process, paths, log
    if process.poll() is None:  # its test was not selected
        process.kill()
        process.wait()
    log.close()


def test_fit_jsqa_jax_data_fit_assemble(jax_fit):
    """`data` wrote the small demo's files; `fit` (under JAX, without TensorFlow) trained one
    step and wrote its figures and weights; `assemble` (here) makes a model that scores."""
    process, paths, log = jax_fit
    with np.load(paths["data.npz"]) as data:
        assert len(data["train_mos"]) == 6 and len(data["val_mos"]) == 2
    returncode = process.wait(timeout=300)
    log.seek(0)
    assert returncode == 0, log.read()[-3000:]
    with open(paths["fit.json"], encoding="utf-8") as stream:
        figures = json.load(stream)
    assert figures["command"].startswith("KERAS_BACKEND=jax python benchmarks/fit_jsqa_jax.py fit --data")
    assert "tensorflow" not in figures["versions"] and figures["versions"]["jax"]
    assert figures["epochs"] == 1
    positive(figures, "clips_per_second")
    positive(figures["val"], "rmse")
    with open(paths["weights"] / "fit.json", encoding="utf-8") as stream:
        assert json.load(stream)["history"][0]["epoch"] == 1

    importlib.import_module("fit_jsqa_jax").main(
        ["assemble", "--weights", str(paths["weights"]), "--out", str(paths["model.keras"])]
    )
    from jsqa_tf.models import load_mos_regressor

    model = load_mos_regressor(str(paths["model.keras"]))
    assert model.encoder.embedding_dim == 32  # the tiny preset, as fit.json names it
    mos = np.asarray(model(np.random.default_rng(0).standard_normal((2, 16000)).astype("float32") * 0.1))
    assert np.all(np.isfinite(mos)) and np.all((mos >= 1.0) & (mos <= 5.0))


def test_an_existing_json_file_is_refused_before_any_work(tmp_path, capsys):
    taken = tmp_path / "taken.json"
    taken.write_text("{}")
    bench_data = importlib.import_module("bench_data")
    with pytest.raises(SystemExit) as exit_info:
        bench_data.main(["--json", str(taken)])
    assert exit_info.value.code == 2
    assert f"--json {taken}: exists" in capsys.readouterr().err
    assert taken.read_text() == "{}"


def test_bench_int8_error(tmp_path, tiny_demo, capsys):
    argv = ["--preset", "small", "--clip-seconds", "0.5", "--head-epochs", "5"]
    argv += ["--demo-dir", demo_root(tiny_demo)]
    data, _ = run_main("bench_int8_error", argv, tmp_path / "int8_error.json")
    errors = data["max_abs_diff_mos"]
    assert sorted(errors) == ["int8", "int8_uncorrected", "int8_weights", "int8_weights_corrected"]
    assert all(0 < value < 0.2 for value in errors.values())  # rounded: off, but not far off
    assert len(data["clips"]) == 16 and "max |dMOS| int8" in capsys.readouterr().out


def test_bench_codec_bank(tmp_path, capsys):
    argv = [
        "--clean-minutes", "0.1", "--bitrates", "16,32", "--num-workers", "0", "--crop-seconds", "1",
        "--pairs-per-batch", "2", "--seconds", "0.1", "--warmup-seconds", "0.05", "--rounds", "1",
        "--corpus-dir", str(tmp_path / "corpus"),
    ]  # fmt: skip
    data, _ = run_main("bench_codec_bank", argv, tmp_path / "codec.json")
    positive(data, "mb_per_hour", "mb_per_hour_per_rung", "render_cpu_seconds_per_audio_hour")
    positive(data["codec_pairs_per_second"], "median", "min", "max")
    positive(data, "encoded_form_mb_per_hour", "encoded_form_decode_cpu_ms_per_pair")
    positive(data["codec_ms_per_clip"]["12s"]["32"], "encode_ms", "decode_ms", "kbps")
    positive(data["opus_ms_per_clip"]["4s"]["0.5"], "encode_ms", "decode_ms", "kbps")
    assert data["mb_per_hour_per_rung"] == pytest.approx(115.2, rel=0.02)  # int16 at 16 kHz, per rung
    assert [rung["nominal_kbps"] for rung in data["bank"]["rungs"]] == [16, 32]
    assert "codec pairs/s (2 x 1 s)" in capsys.readouterr().out
    assert (tmp_path / "corpus" / "bank" / "manifest.json").is_file()  # kept for a next run
