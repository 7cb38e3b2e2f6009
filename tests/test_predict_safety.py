"""`predict` never destroys what it reads or wrote before: an output that is an input, a list or
the model is refused before any work; --output is written whole or not at all; a full disk has
its own exit status and names the path. Lists with a UTF-8 BOM read as written. The Keras and
SavedModel backends see a bounded set of shapes, whatever the files' lengths."""

import csv
import errno
import io
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import jsqa_lite.cli
from jsqa_lite import predict as lite_predict
from jsqa_tf.audio import write_wav
from jsqa_tf.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def audio(tmp_path):
    rng = np.random.default_rng(0)
    for name, seconds in (("a.wav", 1.0), ("b.wav", 2.5), ("c.wav", 1.7)):
        write_wav(tmp_path / name, 0.1 * rng.standard_normal(int(seconds * 16000)))
    return tmp_path


def invoke(*args):
    return CliRunner().invoke(main, ["predict", *[str(a) for a in args]])


def error_line(result) -> str:
    """The one error line, the last on stderr (a progress bar may come before it)."""
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.output, result.output
    assert [line for line in lines if line.startswith("error: ")] == lines[-1:], result.output
    return lines[-1]


def test_an_output_over_an_input_is_refused_and_the_input_kept(audio, tiny_export):
    wav = audio / "a.wav"
    before = wav.read_bytes()
    model = tiny_export["tflite"]["float32"]["path"]
    result = invoke(wav, "--model", model, "--output", wav)
    assert result.exit_code == 2
    assert error_line(result) == (
        f"error: {wav}: is one of the audio files; writing the results there would destroy it: "
        "choose another --output"
    )
    assert wav.read_bytes() == before
    # the same file by another name, a folder's file, a list, the model, the model's folder
    os.symlink(wav, audio / "link.csv")
    listing = audio / "list.csv"
    listing.write_text("path\nb.wav\n")
    listed = listing.read_bytes()
    for args, output, what in [
        ([wav], audio / "link.csv", "one of the audio files"),
        ([audio], audio / "." / "c.wav", "one of the audio files"),
        (["--csv", listing], listing, "the list given to --csv"),
        ([wav], model, "the model"),
    ]:
        result = invoke(*args, "--model", model, "--output", output)
        assert result.exit_code == 2 and f"is {what}" in error_line(result)
    assert listing.read_bytes() == listed and wav.read_bytes() == before
    run_dir = os.path.dirname(model)
    result = invoke(wav, "--model", run_dir, "--output", os.path.join(run_dir, "scores.csv"))
    assert result.exit_code == 2 and "lies inside the model folder" in error_line(result)


def test_output_is_written_whole_and_a_full_disk_keeps_the_previous_file(audio, tiny_export, monkeypatch):
    model = tiny_export["tflite"]["float32"]["path"]
    out = audio / "scores.csv"
    files = [audio / "a.wav", audio / "b.wav", audio / "c.wav"]
    result = invoke(*files, "--model", model, "--output", out)
    assert result.exit_code == 0, result.output
    finished = out.read_text()
    assert [row["path"] for row in csv.DictReader(io.StringIO(finished))] == [str(f) for f in files]

    class FullDisk:
        """A file on a disk that fills after `room` characters."""

        def __init__(self, stream, room=60):
            self.stream, self.room = stream, room

        def write(self, text):
            self.room -= len(text)
            if self.room < 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.stream.write(text)

        def __getattr__(self, name):
            return getattr(self.stream, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            self.stream.close()

    real_fdopen = os.fdopen
    monkeypatch.setattr(jsqa_lite.cli.os, "fdopen", lambda *a, **k: FullDisk(real_fdopen(*a, **k)))
    result = invoke(*files, "--model", model, "--output", out, "--format", "jsonl")
    assert result.exit_code == 3
    assert error_line(result) == (
        f"error: {out}: cannot write (No space left on device); the previous file is kept"
    )
    assert out.read_text() == finished
    assert sorted(os.listdir(audio)) == ["a.wav", "b.wav", "c.wav", "scores.csv"]  # no temporary file

    new = audio / "new.csv"
    result = invoke(*files, "--model", model, "--output", new)
    assert result.exit_code == 3 and error_line(result).endswith("; no file was written")
    assert not new.exists()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_a_full_stdout_names_stdout_with_exit_3(audio, tiny_export):
    command = [sys.executable, "-m", "jsqa_tf", "predict", audio / "a.wav", audio / "b.wav"]
    command += ["--model", tiny_export["tflite"]["float32"]["path"]]
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [str(c) for c in command], stdout=full, stderr=subprocess.PIPE, text=True, cwd=REPO
        )
    assert done.returncode == 3, done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("error: stdout: cannot write (No space left on device)")
    )


def test_a_list_with_a_utf8_bom_reads_its_header(audio, tiny_export):
    listing = audio / "list.csv"
    listing.write_bytes("path,mos\r\na.wav,3\r\nb.wav,4\r\n".encode("utf-8-sig"))
    result = invoke("--csv", listing, "--model", tiny_export["tflite"]["float32"]["path"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [os.path.basename(row["path"]) for row in rows] == ["a.wav", "b.wav"]
    assert all(row["error"] == "" for row in rows)


def _random_length_clips(count: int = 60) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    clips = {f"f{i}": 0.1 * rng.standard_normal(8000 + int(rng.integers(0, 200_000))) for i in range(count)}
    return {key: clip.astype(np.float32) for key, clip in clips.items()}


def _recording_shapes(backend, monkeypatch) -> set:
    """The shapes `backend.score` is called with (recorded as it scores)."""
    shapes, score = set(), backend.score

    def recording(batch, num_valid_samples=None):
        shapes.add(tuple(np.shape(batch)))
        return score(batch, num_valid_samples)

    monkeypatch.setattr(backend, "score", recording)
    return shapes


@pytest.mark.parametrize("kind", ["keras", "saved_model"])
def test_keras_and_saved_model_backends_see_a_bounded_set_of_shapes_and_mask_padding(
    kind, tiny_mos_keras, tiny_export, monkeypatch
):
    from jsqa_tf.predict import open_backend

    backend = open_backend(tiny_mos_keras if kind == "keras" else tiny_export["saved_model"])
    assert backend.kind == kind and backend.masks_padding
    clips = _random_length_clips()
    monkeypatch.setattr(lite_predict, "read_model_input", lambda path, _: clips[path])
    shapes = _recording_shapes(backend, monkeypatch)
    results = []
    lite_predict.predict(backend, list(clips), window_seconds=10.0, batch_size=4, on_result=results.append)
    assert len({len(clip) for clip in clips.values()}) == 60 and all(r.ok for r in results)
    assert len(shapes) <= 10 and all(rows == 4 and width % 16000 == 0 for rows, width in shapes)
    # the padding is masked: each file's MOS is its windows' MOS scored alone, unpadded
    for result in results[:8]:
        clip = clips[result.path]
        starts = [int(s * 16000) for s in result.window_start_seconds]
        alone = [float(backend.score(clip[s : s + 160_000][None])[0]) for s in starts]
        assert result.mos == pytest.approx(np.mean(alone), abs=1e-5)


def test_a_saved_model_without_the_masked_signature_is_scored_one_length_a_batch(
    tiny_mos_keras, tmp_path, monkeypatch
):
    """An export written before `serving_masked` existed still predicts, through `serving_default`."""
    from jsqa_lite.contract import saved_model_contract_path
    from jsqa_tf.atomic import write_json
    from jsqa_tf.export import contract, save_serving_model
    from jsqa_tf.models import load_mos_regressor
    from jsqa_tf.predict import KerasBackend, open_backend

    model = load_mos_regressor(tiny_mos_keras)
    folder = tmp_path / "old"
    save_serving_model(model, folder, masked=False)
    info = contract(model)
    del info["masked_signature"]
    write_json(saved_model_contract_path(folder), info)
    backend = open_backend(folder)
    assert backend.kind == "saved_model" and not backend.masks_padding
    clips = _random_length_clips(6)
    monkeypatch.setattr(lite_predict, "read_model_input", lambda path, _: clips[path])
    shapes = _recording_shapes(backend, monkeypatch)
    results = []
    lite_predict.predict(backend, list(clips), window_seconds=10.0, batch_size=4, on_result=results.append)
    assert all(r.ok for r in results) and all(rows == 1 for rows, _ in shapes)
    keras_results = []
    lite_predict.predict(
        KerasBackend(tiny_mos_keras),
        list(clips),
        window_seconds=10.0,
        batch_size=4,
        on_result=keras_results.append,
    )
    assert [r.mos for r in results] == pytest.approx([r.mos for r in keras_results], abs=1e-4)
