"""The on-device install: `pip install ./lite` into a fresh virtual environment, alone.

The one test here uses the package index (for NumPy, soundfile, soxr, ai-edge-litert, click and
the build backend; pip's cache makes reruns quick). When pip fails and the index cannot be
reached, it is skipped with that reason; any other failure fails it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import urllib.request

import numpy as np
import pytest
import soxr

from jsqa_tf.audio import write_audio
from jsqa_tf.export import MOS_TOLERANCE, example_clips
from jsqa_tf.lite import LiteModel

LITE_SOURCE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lite")
TRAINING_SIDE = {
    "tensorflow",
    "tensorflow-cpu",
    "tf-keras",
    "keras",
    "pesq",
    "scikit-learn",
    "scipy",
    "matplotlib",
}


def _index_unreachable(env: dict) -> str | None:
    """Why pip's index cannot be reached (None when it answers)."""
    url = env.get("PIP_INDEX_URL")
    if not url:
        configured = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", "global.index-url"],
            env=env,
            capture_output=True,
            text=True,
        )
        url = configured.stdout.strip() if configured.returncode == 0 else "https://pypi.org/simple/"
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/click/", timeout=20):
            return None
    except OSError as error:
        return f"{url}: {error}"


def _run(command: list[str], env: dict, cwd, timeout: int = 120) -> subprocess.CompletedProcess:
    # Run outside the checkout: `python -c` puts the current folder on sys.path.
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow  # ~30 s with pip's cache warm (a fresh venv, pip builds and installs lite/); minutes cold
def test_lite_installs_without_tensorflow_and_scores_like_the_full_package(
    tiny_mos_keras, tiny_export, tmp_path
):
    if not os.path.isfile(os.path.join(LITE_SOURCE, "pyproject.toml")):
        pytest.skip("no lite/ source folder beside the tests")
    # A copy, so that pip's in-tree build writes nothing into the checkout.
    source = tmp_path / "lite"
    shutil.copytree(LITE_SOURCE, source, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], env=env, check=True, timeout=120)
    python, jsqa_lite_cli = str(venv / "bin" / "python"), str(venv / "bin" / "jsqa-lite")

    install = _run([python, "-m", "pip", "install", "--no-compile", str(source)], env, tmp_path, timeout=1200)
    if install.returncode != 0:
        unreachable = _index_unreachable(env)
        if unreachable:
            pytest.skip(f"pip cannot reach the package index ({unreachable})")
        pytest.fail(f"pip install ./lite failed:\n{install.stdout[-3000:]}\n{install.stderr[-3000:]}")

    listed = _run([python, "-m", "pip", "list", "--format", "json"], env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    names = {package["name"].lower().replace("_", "-") for package in json.loads(listed.stdout)}
    assert {"jsqa-tf-lite", "ai-edge-litert", "numpy", "soundfile", "soxr", "click"} <= names
    assert not names & (TRAINING_SIDE | {"jsqa-tf"}), names & (TRAINING_SIDE | {"jsqa-tf"})

    # A 16 kHz WAV in two windows, and 44.1 kHz stereo FLAC (soxr resamples it).
    speech, short = example_clips([12.0, 3.0], seed=5)
    write_audio(tmp_path / "call.wav", speech)
    stereo = soxr.resample(short, 16000, 44100)
    write_audio(tmp_path / "stereo.flac", np.stack([stereo, 0.5 * stereo], axis=1), 44100)
    files = [str(tmp_path / "call.wav"), str(tmp_path / "stereo.flac")]
    model_path = tiny_export["tflite"]["float32"]["path"]

    code = f"""
        import importlib.util, json, sys
        import jsqa_lite
        from jsqa_lite import LiteModel
        model = LiteModel({model_path!r})
        scores = [model.score_file(path) for path in {files!r}]
        heavy = {{m.split(".")[0] for m in sys.modules}} & {{"tensorflow", "keras", "scipy", "sklearn"}}
        full_package = importlib.util.find_spec("jsqa_tf") is not None
        print(json.dumps({{"file": jsqa_lite.__file__, "full_package": full_package,
                          "heavy": sorted(heavy), "scores": scores}}))
        """
    scored = _run([python, "-c", textwrap.dedent(code)], env, tmp_path)
    assert scored.returncode == 0, scored.stderr
    api = json.loads(scored.stdout.strip().splitlines()[-1])
    assert api["file"].startswith(str(venv)) and not api["full_package"] and api["heavy"] == []

    cli = _run(
        [jsqa_lite_cli, "predict", *files, "--model", model_path, "--format", "json", "--per-window"],
        env,
        tmp_path,
    )
    assert cli.returncode == 0, cli.stderr
    rows = json.loads(cli.stdout)
    assert [row["path"] for row in rows] == files and [row["num_windows"] for row in rows] == [2, 1]

    # The full package scores the same files the same way: its LiteModel (the same numbers),
    # and the Keras model (float32 TFLite: within the export's float32 tolerance).
    from jsqa_lite.predict import predict
    from jsqa_tf.predict import open_backend

    full = [LiteModel(model_path).score_file(path) for path in files]
    keras_rows = []
    predict(open_backend(tiny_mos_keras), files, on_result=keras_rows.append)
    for in_venv, row, here, keras_row in zip(api["scores"], rows, full, keras_rows, strict=True):
        np.testing.assert_allclose(in_venv["window_mos"], here["window_mos"], atol=1e-5)
        np.testing.assert_allclose(row["window_mos"], here["window_mos"], atol=1e-5)
        assert in_venv["mos"] == pytest.approx(row["mos"], abs=1e-6)
        assert in_venv["mos"] == pytest.approx(keras_row.mos, abs=MOS_TOLERANCE["float32"])
