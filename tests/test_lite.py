"""The on-device runtime (`jsqa_lite`, also `jsqa_tf.lite`), checked in a process where TensorFlow
cannot be imported, and its `jsqa-lite predict` beside `jsqa-tf predict`."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from jsqa_tf.audio import write_audio
from jsqa_tf.errors import ModelError
from jsqa_tf.export import example_clips
from jsqa_tf.lite import LiteModel
from jsqa_tf.models import load_mos_regressor


def _run_without_tensorflow(code: str) -> dict:
    """Runs `code` in a fresh Python where importing tensorflow, keras or jax raises; the code
    prints one JSON object, which is returned."""
    guard = textwrap.dedent(
        """
        import sys
        for name in ("tensorflow", "keras", "jax", "tf_keras"):
            sys.modules[name] = None  # any import of them raises ImportError
        """
    )
    tail = textwrap.dedent(
        """
        assert not any(m.split(".")[0] in ("tensorflow", "keras", "jax") for m in sys.modules
                       if sys.modules[m] is not None), "TensorFlow/Keras got imported"
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    completed = subprocess.run(
        [sys.executable, "-c", guard + textwrap.dedent(code) + tail],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_lite_scores_files_without_tensorflow(tiny_mos_keras, tiny_export, tmp_path):
    clips = example_clips([3.0, 23.0], seed=7)
    # 44.1 kHz stereo OGG and a 16 kHz long FLAC (three 10 s windows).
    import soxr

    stereo = soxr.resample(clips[0], 16000, 44100)
    write_audio(tmp_path / "stereo.ogg", np.stack([stereo, stereo], axis=1), 44100, subtype="VORBIS")
    write_audio(tmp_path / "long.flac", clips[1], 16000, subtype="PCM_16")
    path = tiny_export["tflite"]["float32"]["path"]

    result = _run_without_tensorflow(
        f"""
        import json
        from jsqa_tf.lite import LiteModel
        model = LiteModel({path!r}, num_threads=2)
        folder = {str(tmp_path)!r}
        out = {{name: model.score_file(folder + "/" + name) for name in ("stereo.ogg", "long.flac")}}
        print(json.dumps(out))
        """
    )
    assert result["stereo.ogg"]["num_windows"] == 1 and result["long.flac"]["num_windows"] == 3
    assert result["long.flac"]["window_start_seconds"] == [0.0, 10.0, 13.0]

    # The same numbers as the Keras model on the same decoded audio, window by window.
    from jsqa_tf.audio import read_audio

    model = load_mos_regressor(tiny_mos_keras)
    long_audio = read_audio(tmp_path / "long.flac")
    keras_windows = [float(model(long_audio[s : s + 160000][None])[0]) for s in (0, 160000, 208000)]
    np.testing.assert_allclose(result["long.flac"]["window_mos"], keras_windows, atol=1e-4)
    assert result["long.flac"]["mos"] == pytest.approx(np.mean(keras_windows), abs=1e-4)
    keras_stereo = float(model(read_audio(tmp_path / "stereo.ogg")[None])[0])
    assert result["stereo.ogg"]["mos"] == pytest.approx(keras_stereo, abs=1e-4)


def test_predict_cli_with_tflite_does_not_import_tensorflow(tiny_export, tmp_path):
    write_audio(tmp_path / "a.wav", example_clips([2.0], seed=1)[0])
    path = tiny_export["tflite"]["int8"]["path"]
    result = _run_without_tensorflow(
        f"""
        import json
        import jsqa_lite.cli, jsqa_tf.cli
        out = {{}}
        for name, main in [("jsqa-tf", jsqa_tf.cli.main), ("jsqa-lite", jsqa_lite.cli.main)]:
            output = {str(tmp_path)!r} + "/" + name + ".json"
            args = ["predict", {str(tmp_path)!r}, "--model", {path!r}, "--format", "json", "--output", output]
            try:
                main(args)
            except SystemExit as exit:
                out[name] = {{"exit": exit.code, "rows": json.load(open(output))}}
        print(json.dumps(out))
        """
    )
    for name in ("jsqa-tf", "jsqa-lite"):
        assert result[name]["exit"] == 0 and len(result[name]["rows"]) == 1, result
        assert 1 <= result[name]["rows"][0]["mos"] <= 5
    assert result["jsqa-lite"]["rows"] == result["jsqa-tf"]["rows"]


def test_jsqa_lite_predict_gives_jsqa_tf_predicts_rows_and_statuses(tiny_mos_keras, tiny_export, tmp_path):
    from click.testing import CliRunner

    from jsqa_lite.cli import main as lite_main
    from jsqa_tf.cli import main as full_main

    long, short = example_clips([12.0, 0.1], seed=2)
    write_audio(tmp_path / "long.wav", long)
    write_audio(tmp_path / "short.wav", short)
    model = tiny_export["tflite"]["float32"]["path"]
    args = ["predict", str(tmp_path), "--model", model, "--per-window", "--window-seconds", "5"]
    lite, full = CliRunner().invoke(lite_main, args), CliRunner().invoke(full_main, args)
    assert lite.exit_code == full.exit_code == 1  # short.wav is too short
    assert lite.stdout == full.stdout and "too short" in lite.stdout
    assert "1 file(s) scored, 1 failed" in lite.stderr

    for bad, message in [
        (["--model", tiny_mos_keras], "not a .tflite file"),
        (["--model", model, "--batch-size", "0"], "--batch-size 0: must be at least 1"),
        ([], "Missing option '--model'"),
    ]:
        result = CliRunner().invoke(lite_main, ["predict", str(tmp_path / "long.wav"), *bad])
        assert result.exit_code == 2 and message in result.output, result.output


def test_score_batches_equal_length_windows(tiny_export):
    model = LiteModel(tiny_export["tflite"]["float32"]["path"])
    clips = np.stack([c[:16000] for c in example_clips([1.0] * 3, seed=4)])
    together = model.score(clips)
    alone = np.concatenate([model.score(clip[None]) for clip in clips])
    assert together.shape == (3,) and together.dtype == np.float32
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert model.outputs(clips)["embedding"].shape == (3, 32)
    assert model.min_samples == 4000 and model.contract["quantization"] == "float32"


def test_too_short_and_corrupt_models_are_clear(tiny_export, tmp_path):
    from jsqa_tf.errors import AudioError

    model = LiteModel(tiny_export["tflite"]["int8"]["path"])
    write_audio(tmp_path / "short.wav", np.zeros(1000, np.float32))
    with pytest.raises(AudioError, match="too short"):
        model.score_file(tmp_path / "short.wav")
    (tmp_path / "bad.tflite").write_bytes(b"\0" * 64)
    with pytest.raises(ModelError, match="not a usable TFLite model"):
        LiteModel(tmp_path / "bad.tflite")
    with pytest.raises(ModelError, match="model not found"):
        LiteModel(tmp_path / "missing.tflite")
