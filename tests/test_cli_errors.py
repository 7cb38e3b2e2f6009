"""The CLI over a table of bad inputs: exit status 1, one line naming the file or field and
the value, and nothing finished lost. Plus what a new user meets: no TensorFlow banners,
a rerun that does nothing, progress while the demo is written, models that load."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from jsqa_tf.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_PIPELINE = os.path.join(REPO, "pipelines", "pretrain_demo.yaml")
TRAIN_SHARD = "train-00000-of-00001.tfrecord"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def pretrain_args(run_dir, clean, noise, *extra):
    return [
        "pretrain",
        "--config",
        DEMO_PIPELINE,
        "--run-dir",
        run_dir,
        "--clean-dir",
        clean,
        "--noise-dir",
        noise,
        "--steps-per-epoch",
        "2",
        "--set",
        "data.crop_seconds=0.5",
        "--set",
        "data.pairs_per_batch=4",
        "--set",
        "data.val_batches=1",
        "--set",
        "training.audio_examples=0",
        *extra,
    ]


@pytest.fixture(scope="module")
def world(tiny_demo, tmp_path_factory):
    """Prepared speech and noise (16 kHz), speech at 8 kHz, one finished tiny pretraining run."""
    root = tmp_path_factory.mktemp("bad_inputs")
    for name, corpus, options in [
        ("clean", "librispeech", ["--val-fraction", "0.3"]),
        ("noise", "chime3", ["--chime3-channels", "all", "--val-fraction", "0.25"]),
        ("clean8k", "librispeech", ["--val-fraction", "0.3", "--sample-rate", "8000"]),
    ]:
        result = invoke("prepare", corpus, tiny_demo[corpus], root / name, "-j", "0", *options)
        assert result.exit_code == 0, result.output
    result = invoke(*pretrain_args(root / "run", root / "clean", root / "noise", "--epochs", "1"))
    assert result.exit_code == 0, result.output
    return {"root": root, "clean": root / "clean", "noise": root / "noise", "run": root / "run", **tiny_demo}


def damaged_copy(world, tmp, how):
    """A copy of the prepared speech whose train shard is emptied, cut short or bit-flipped."""
    folder = tmp / "clean"
    shutil.copytree(world["clean"], folder)
    shard = folder / TRAIN_SHARD
    data = bytearray(shard.read_bytes())
    if how == "empty":
        data = bytearray()
    elif how == "truncated":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    return folder


def write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def audio_folder(tmp):
    from jsqa_tf.audio import write_wav

    rng = np.random.default_rng(0)
    for name in ("a.wav", "b.wav"):
        write_wav(tmp / "audio" / name, 0.1 * rng.standard_normal(8000))
    return tmp / "audio"


def broken_audio(folder):
    write(folder / "x.wav", "not audio")
    write(folder / "y.wav", "nor this")
    return folder


def mos_csv(tmp, rows, header="path,mos"):
    audio_folder(tmp)
    return write(tmp / "audio" / "list.csv", header + "\n" + "".join(f"{row}\n" for row in rows))


def pairs_args(w, t, *options):
    """`jsqa-tf pairs` of the world's clean and noise folders into t/pairs, with `options`."""
    return ["pairs", w["clean"], w["noise"], t / "pairs", *options]


def no_pairs(tmp):
    assert not (tmp / "pairs" / "pairs.csv").exists()


def no_checkpoint(tmp):
    assert not list((tmp / "run").glob("checkpoints/epoch-*"))


def run_unchanged(tmp):
    state = (tmp / "run" / "checkpoints" / "state.json").read_text()
    assert state == "{" or json.loads(state)["epoch"] == 0
    assert (tmp / "run" / "encoder.keras").exists() and (
        tmp / "run" / "checkpoints" / "best.weights.h5"
    ).exists()


# Each case: (setup(world, tmp) -> (args, fragments of the error line), check(tmp) or None).
CASES = {
    # 1. a 0-byte shard hung pairs and pretrain forever
    "empty shard, pairs": (
        lambda w, t: (
            [
                "pairs",
                damaged_copy(w, t, "empty"),
                w["noise"],
                t / "pairs",
                "-n",
                "2",
                "--crop-seconds",
                "0.5",
            ],
            [f"{t}/clean/{TRAIN_SHARD}", "shard is 0 bytes, manifest.json says"],
        ),
        no_pairs,
    ),
    "empty shard, pretrain": (
        lambda w, t: (
            pretrain_args(t / "run", damaged_copy(w, t, "empty"), w["noise"]),
            [f"{t}/clean/{TRAIN_SHARD}", "shard is 0 bytes"],
        ),
        no_checkpoint,
    ),
    # 2. truncated and bit-flipped shards ended in TensorFlow's DataLossError, naming no file
    "truncated shard, pairs": (
        lambda w, t: (
            ["pairs", damaged_copy(w, t, "truncated"), w["noise"], t / "pairs", "-n", "2"],
            [f"{t}/clean/{TRAIN_SHARD}", "bytes, manifest.json says"],
        ),
        no_pairs,
    ),
    "flipped bit, pairs": (
        lambda w, t: (
            [
                "pairs",
                damaged_copy(w, t, "flipped"),
                w["noise"],
                t / "pairs",
                "-n",
                "8",
                "--crop-seconds",
                "0.5",
            ],
            [f"{t}/clean/{TRAIN_SHARD}", "corrupt after record", "jsqa-tf check"],
        ),
        no_pairs,
    ),
    "flipped bit, pretrain": (
        lambda w, t: (
            pretrain_args(t / "run", damaged_copy(w, t, "flipped"), w["noise"]),
            [f"{t}/clean/{TRAIN_SHARD}", "corrupt after record"],
        ),
        no_checkpoint,
    ),
    "flipped bit, check": (
        lambda w, t: (["check", damaged_copy(w, t, "flipped")], ["1 of 2 shard(s) damaged", TRAIN_SHARD]),
        None,
    ),
    # 3. 8 kHz speech mixed with 16 kHz noise and written as 16 kHz
    "sample-rate mismatch, pairs": (
        lambda w, t: (
            ["pairs", w["root"] / "clean8k", w["noise"], t / "pairs", "-n", "2"],
            [str(w["noise"]), "prepared at 16000 Hz, but 8000 Hz audio is needed"],
        ),
        no_pairs,
    ),
    "sample-rate mismatch, pretrain": (
        lambda w, t: (
            pretrain_args(t / "run", w["root"] / "clean8k", w["noise"]),
            [str(w["root"] / "clean8k"), "prepared at 8000 Hz, but 16000 Hz"],
        ),
        no_checkpoint,
    ),
    # 6. values that spoil results
    "negative learning rate": (
        lambda w, t: (
            pretrain_args(t / "run", w["clean"], w["noise"], "--set", "training.learning_rate=-1e-3"),
            [DEMO_PIPELINE, "training.learning_rate must be > 0, got -0.001"],
        ),
        no_checkpoint,
    ),
    "MOS 0": (
        lambda w, t: (
            ["prepare", "csv", mos_csv(t, ["a.wav,0"]), t / "out"],
            ["list.csv", "line 2: MOS 0 is outside"],
        ),
        None,
    ),
    "MOS 7": (
        lambda w, t: (
            ["prepare", "csv", mos_csv(t, ["a.wav,3", "b.wav,7"]), t / "out"],
            ["list.csv", "line 3: MOS 7 is outside the scale [1, 5]"],
        ),
        None,
    ),
    "MOS -2": (
        lambda w, t: (["prepare", "csv", mos_csv(t, ["a.wav,-2"]), t / "out"], ["line 2: MOS -2 is outside"]),
        None,
    ),
    "MOS outside --mos-range": (
        lambda w, t: (
            ["prepare", "csv", mos_csv(t, ["a.wav,60"]), t / "out", "--mos-range", "0", "50"],
            ["line 2: MOS 60 is outside the scale [0, 50]"],
        ),
        None,
    ),
    "one file, two MOS": (
        lambda w, t: (
            ["prepare", "csv", mos_csv(t, ["a.wav,2", "b.wav,3", "./a.wav,4"]), t / "out"],
            ["list.csv", "line 4: ./a.wav is listed already, on line 2"],
        ),
        None,
    ),
    "--sample-rate 7": (
        lambda w, t: (
            ["prepare", "folder", audio_folder(t), t / "out", "--sample-rate", "7"],
            ["prepare: sample_rate must be in [4000, 192000] Hz, got 7"],
        ),
        None,
    ),
    "min_seconds: -1": (
        lambda w, t: (
            [
                "prepare",
                "folder",
                audio_folder(t),
                t / "out",
                "--config",
                write(t / "p.yaml", "min_seconds: -1\n"),
            ],
            [f"{t}/p.yaml: min_seconds must be >= 0, got -1.0"],
        ),
        None,
    ),
    "pairs_per_batch: 1": (
        lambda w, t: (
            pairs_args(w, t, "--config", write(t / "p.yaml", "pairs_per_batch: 1\n")),
            [f"{t}/p.yaml: pairs_per_batch must be >= 2, got 1"],
        ),
        no_pairs,
    ),
    "--families echo": (
        lambda w, t: (
            pairs_args(w, t, "--families", "additive,echo"),
            ["pairs: families must be one of additive, codec, reverb, bandwidth; got 'echo'"],
        ),
        no_pairs,
    ),
    "--families codec without a bank": (
        lambda w, t: (
            pairs_args(w, t, "--families", "reverb,codec"),
            ["pairs: codec_bank_dir must be set when families holds codec"],
        ),
        no_pairs,
    ),
    "family_weights of the wrong length": (
        lambda w, t: (
            pairs_args(
                w,
                t,
                "--families",
                "additive,reverb",
                "--config",
                write(t / "p.yaml", "family_weights: [1, 2, 3]\n"),
            ),
            [f"{t}/p.yaml: family_weights must hold one weight per family (2: additive, reverb), got 3"],
        ),
        no_pairs,
    ),
    "reverb_window outside its range": (
        lambda w, t: (
            pairs_args(w, t, "--config", write(t / "p.yaml", "families: [reverb]\nreverb_window: 200\n")),
            [f"{t}/p.yaml: reverb_window must be in (0, 141.421]"],
        ),
        no_pairs,
    ),
    "--crop-seconds 0": (
        lambda w, t: (
            ["pairs", w["clean"], w["noise"], t / "pairs", "--crop-seconds", "0"],
            ["pairs: crop_seconds must be > 0, got 0.0"],
        ),
        no_pairs,
    ),
    # 7. tracebacks on user input
    "CSV row with more fields than the header": (
        lambda w, t: (
            ["prepare", "csv", mos_csv(t, ["a.wav,3,c1,extra"], header="path,mos,condition"), t / "out"],
            ["list.csv", "line 2: 4 fields, the header has 3"],
        ),
        None,
    ),
    "model.preset: huge": (
        lambda w, t: (
            pretrain_args(t / "run", w["clean"], w["noise"], "--set", "model.preset=huge"),
            ["model.preset must be one of jsqa, cdpam, small, tiny; got 'huge'"],
        ),
        no_checkpoint,
    ),
    "unknown key": (
        lambda w, t: (
            pretrain_args(t / "run", w["clean"], w["noise"], "--set", "training.learning_rat=1"),
            [DEMO_PIPELINE, "training: unknown key(s) learning_rat"],
        ),
        no_checkpoint,
    ),
    "jnd fit: CSV row without a label": (
        lambda w, t: (
            [
                "jnd",
                "fit",
                write(t / "list.csv", "ref,deg,label\na.wav,b.wav,1\nc.wav,d.wav\n"),
                "-o",
                t / "j.json",
            ],
            ["list.csv", "line 3: 2 field(s), expected those of the header: ref, deg, label"],
        ),
        lambda t: not (t / "j.json").exists(),
    ),
    "jnd fit: a list that is not UTF-8": (
        lambda w, t: (
            ["jnd", "fit", write(t / "list.txt", "0.1_é.wav\t0.2_é.wav\t1\n", "latin-1"), "-o", t / "j.json"],
            ["list.txt", "not UTF-8 text"],
        ),
        None,
    ),
    "jnd fit: --folds 0": (
        lambda w, t: (
            [
                "jnd",
                "fit",
                write(t / "l.txt", "0.1_a.wav\t0.2_a.wav\t1\n"),
                "-o",
                t / "j.json",
                "--folds",
                "0",
            ],
            ["folds must be >= 2, got 0"],
        ),
        None,
    ),
    "jnd fit: --c -1": (
        lambda w, t: (
            ["jnd", "fit", write(t / "l.txt", "0.1_a.wav\t0.2_a.wav\t1\n"), "-o", t / "j.json", "--c", "-1"],
            ["C must be > 0, got -1"],
        ),
        None,
    ),
    "jnd fit: -o under a file": (
        lambda w, t: (
            [
                "jnd",
                "fit",
                write(t / "l.txt", "0.1_a.wav\t0.2_a.wav\t1\n"),
                "-o",
                write(t / "f", "x") / "j.json",
            ],
            [f"{t}/f/j.json: cannot be written: {t}/f is a file, not a folder"],
        ),
        None,
    ),
    "jnd curve --bootstrap 0": (
        lambda w, t: (
            ["jnd", "curve", write(t / "l.txt", "0.1_a.wav\t0.2_a.wav\t1\n"), "--bootstrap", "0"],
            ["bootstrap resamples must be >= 1, got 0"],
        ),
        None,
    ),
    "prepare into a path under a file": (
        lambda w, t: (
            ["prepare", "folder", audio_folder(t), write(t / "f", "x") / "out"],
            [f"{t}/f/out/manifest.json: cannot be written", "is a file, not a folder"],
        ),
        None,
    ),
    "--resume with a truncated checkpoint": (
        lambda w, t: (
            pretrain_args(t / "run", w["clean"], w["noise"], "--resume", "--epochs", "2"),
            [f"{t}/run/checkpoints/epoch-0001.weights.h5: cannot be loaded", "cannot resume from it"],
        ),
        run_unchanged,
    ),
    "--resume with a broken state.json": (
        lambda w, t: (
            pretrain_args(t / "run", w["clean"], w["noise"], "--resume", "--epochs", "2"),
            [f"{t}/run/checkpoints/state.json: unreadable training state"],
        ),
        run_unchanged,
    ),
    "--resume without a run": (
        lambda w, t: (
            pretrain_args(t / "none", w["clean"], w["noise"], "--resume"),
            [f"{t}/none: no run to continue (no config.yaml); without --resume one starts"],
        ),
        None,
    ),
    "distill: teacher not found": (
        lambda w, t: (
            [
                "distill",
                "--config",
                write(t / "d.yaml", f"run_dir: {t / 'student'}\n"),
                "--teacher",
                t / "none",
            ],
            [f"{t}/none: model not found"],
        ),
        lambda t: not (t / "student").exists(),
    ),
    "distill: no teacher named": (
        lambda w, t: (
            ["distill", "--config", write(t / "d.yaml", f"run_dir: {t / 'student'}\n")],
            ["model.teacher must name the fine-tuned teacher"],
        ),
        lambda t: not (t / "student").exists(),
    ),
    "distill: a student preset that does not exist": (
        lambda w, t: (
            ["distill", "--config", write(t / "d.yaml", "run_dir: x\nmodel: {preset: huge}\n")],
            ["model.preset must be one of", "'huge'"],
        ),
        None,
    ),
    # 9. messages that hid the cause
    "no usable audio files": (
        lambda w, t: (
            ["prepare", "folder", broken_audio(t / "src"), t / "out"],
            [
                "no usable audio files; 2 problem file(s), e.g.",
                f"{t}/src/x.wav: not an audio file or corrupt",
            ],
        ),
        lambda t: not (t / "out" / "manifest.json").exists(),
    ),
    "header-only CSV": (
        lambda w, t: (
            ["prepare", "csv", mos_csv(t, []), t / "out"],
            [f"{t}/audio/list.csv: holds no rows below its header"],
        ),
        None,
    ),
    "CSV line numbers after blank lines": (
        lambda w, t: (
            ["prepare", "csv", mos_csv(t, ["", "a.wav,3", "", "", "b.wav,good"]), t / "out"],
            ["list.csv", "line 6: MOS 'good' is not a number"],
        ),
        None,
    ),
    # memory: a crop (or window) no range bounds is refused before any work, the estimate said
    "pairs: a 1e6 s crop": (
        lambda w, t: (
            ["pairs", w["clean"], w["noise"], t / "pairs", "-n", "2", "--crop-seconds", "1e6"],
            ["crop_seconds 1e+06 with pairs_per_batch 8 needs about", "GB of memory, more than the"],
        ),
        lambda t: not (t / "pairs").exists(),
    ),
    "pretrain: a 1e6 s crop": (
        lambda w, t: (
            pretrain_args(t / "run", w["clean"], w["noise"], "--set", "data.crop_seconds=1e6"),
            ["data.pairs.crop_seconds 1e+06 with data.pairs.pairs_per_batch 4 needs about"],
        ),
        no_checkpoint,
    ),
    # one resume rule: other settings name the setting, suggest no option that is then refused
    "rerun of a finished run with other settings": (
        lambda w, t: (
            pretrain_args(t / "run", w["clean"], w["noise"], "--set", "training.learning_rate=0.05"),
            [
                f"{t}/run: holds a run made with other settings: training.learning_rate is 0.001 there",
                "0.05 here; rerun with the run's settings to continue it, or choose another --run-dir",
            ],
        ),
        run_unchanged,
    ),
    "rerun of a finished run with other settings and --resume": (
        lambda w, t: (
            pretrain_args(
                t / "run", w["clean"], w["noise"], "--resume", "--set", "training.learning_rate=0.05"
            ),
            [f"{t}/run: holds a run made with other settings: training.learning_rate is 0.001 there, 0.05"],
        ),
        run_unchanged,
    ),
    "compare -o under a file": (
        lambda w, t: (
            ["compare", t / "metrics.json", "-o", write(t / "f", "x") / "table.md"],
            [f"{t}/f/table.md: cannot be written: {t}/f is a file, not a folder"],
        ),
        None,
    ),
    "not a prepared folder": (
        lambda w, t: (
            ["pairs", audio_folder(t), w["noise"], t / "pairs"],
            [f"{t}/audio: no manifest.json: not a folder written by `jsqa-tf prepare`"],
        ),
        no_pairs,
    ),
}


def _break_run(world, tmp, case):
    shutil.copytree(world["run"], tmp / "run")
    if case.startswith("rerun"):
        return
    if case == "--resume with a truncated checkpoint":
        checkpoint = tmp / "run" / "checkpoints" / "epoch-0001.weights.h5"
        checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    elif case == "--resume with a broken state.json":
        (tmp / "run" / "checkpoints" / "state.json").write_text("{")


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_naming_the_cause(case, world, tmp_path):
    setup, check = CASES[case]
    if case.startswith(("--resume with a", "rerun")):
        _break_run(world, tmp_path, case)
    args, fragments = setup(world, tmp_path)
    result = invoke(*args)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0], result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert str(fragment) in errors[0], errors[0]
    if check is not None:
        assert check(tmp_path) is not False


def test_disk_full_in_prepare_names_the_shard_and_keeps_finished_ones(tiny_demo, tmp_path, monkeypatch):
    import tensorflow as tf

    writers = []
    real = tf.io.TFRecordWriter

    class FullDisk(real):
        def __init__(self, path, *args, **kwargs):
            super().__init__(path, *args, **kwargs)
            writers.append(path)

        def write(self, record):
            if len(writers) == 2:  # the second shard hits a full disk
                raise tf.errors.ResourceExhaustedError(None, None, f"{writers[-1]}; No space left on device")
            super().write(record)

    monkeypatch.setattr(tf.io, "TFRecordWriter", FullDisk)
    args = [
        "prepare",
        "librispeech",
        tiny_demo["librispeech"],
        tmp_path / "out",
        "-j",
        "0",
        "--shard-seconds",
        "8",
    ]
    result = invoke(*args)
    assert result.exit_code == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {tmp_path}/out/train-00001-of-") and "No space left on device" in line
    assert "is the disk full?" in line and "finished shards are kept" in line
    first = tmp_path / "out" / "train-00000-of-00004.tfrecord"
    kept = first.read_bytes()
    monkeypatch.setattr(tf.io, "TFRecordWriter", real)  # space freed: the same command again
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert first.read_bytes() == kept and json.loads(result.stdout)["num_records"] == 6


def test_unexpected_errors_say_so_and_vv_shows_the_traceback(tmp_path, monkeypatch):
    from jsqa_tf.data import prepare as prepare_module

    def broken(config):
        raise KeyError("boom")

    monkeypatch.setattr(prepare_module, "list_corpus", broken)
    result = invoke("prepare", "folder", tmp_path, tmp_path / "out")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "error: unexpected KeyError: 'boom' (a bug in jsqa-tf? Run the same command with -vv for the "
        "traceback, and please report it)"
    )
    result = invoke("-vv", "prepare", "folder", tmp_path, tmp_path / "out")
    assert result.exit_code == 1 and "Traceback (most recent call last)" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: unexpected KeyError")


def test_a_finished_run_rerun_does_nothing_and_a_moved_run_resumes(world, tmp_path):
    """Quickstart's command run twice; issue 12.10: a moved run folder resumes."""
    args = pretrain_args(world["run"], world["clean"], world["noise"], "--epochs", "1")
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["epochs_done"] == 1 and "nothing to do" in result.stderr

    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(world["run"], moved)
    result = invoke(*pretrain_args(moved, world["clean"], world["noise"], "--resume", "--epochs", "2"))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["epochs_done"] == 2 and summary["run_dir"] == str(moved)
    history = (moved / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history] == ["epoch", "0", "1"]


def test_demo_data_shows_progress(tmp_path):
    result = invoke("demo-data", tmp_path / "demo", "--small")
    assert result.exit_code == 0 and "writing the demo corpus" in result.stderr


BANNERS = ("I0000", "W0000", "E0000", "absl::InitializeLog", "cuInit", "oneDNN", "cuda drivers")


def test_no_tensorflow_banners_and_models_load_with_jsqa_tf_load_model(world, tmp_path):
    """A CLI run that imports TensorFlow in this process and in two workers prints none of its
    start-up lines; `jsqa_tf.load_model` loads what jsqa-tf saved in a fresh process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    command = [
        sys.executable, "-m", "jsqa_tf", "prepare", "chime3", world["chime3"], tmp_path / "noise",
        "--chime3-channels", "all", "--shard-seconds", "12", "-j", "2",
    ]  # fmt: skip
    result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["splits"]["train"]["num_shards"] > 1  # written by the workers
    assert not [line for line in result.stderr.splitlines() if any(b in line for b in BANNERS)], result.stderr

    code = (
        "import sys, jsqa_tf\n"
        f"encoder = jsqa_tf.load_model({str(world['run'] / 'encoder.keras')!r})\n"
        "print(type(encoder).__name__, encoder.output_shape)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "WaveformEncoder (None, 32)"


def test_jnd_fit_skips_a_silent_pair_naming_it(tmp_path):
    """Issue 12.5: a silent file ended `jnd fit` with a PESQ traceback; skips named no pair."""
    from jsqa_tf.audio import write_wav
    from jsqa_tf.data.demo import synth_speech

    rng = np.random.default_rng(0)
    clean = 0.1 * synth_speech(rng, 2.0)
    noise = rng.standard_normal(len(clean)) * 0.05
    lines = []
    for source in range(4):
        shifted = np.roll(clean, 1000 * source)
        for gain in (0.1, 0.11, 0.5, 1.0):
            write_wav(tmp_path / f"{gain}_s{source}.wav", shifted + gain * noise)
        lines += [f"0.1_s{source}.wav\t0.11_s{source}.wav\t0", f"0.1_s{source}.wav\t1.0_s{source}.wav\t1"]
        lines += [f"0.11_s{source}.wav\t0.1_s{source}.wav\t0", f"0.11_s{source}.wav\t0.5_s{source}.wav\t1"]
    write_wav(tmp_path / "0.2_s9.wav", np.zeros(32000))
    lines.append("0.1_s0.wav\t0.2_s9.wav\t1")  # line 17: a silent file
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    result = invoke("jnd", "fit", tmp_path / "list.txt", "-o", tmp_path / "j.json", "-j", "0", "--folds", "2")
    assert result.exit_code == 0, result.output
    assert "warning: 1 pair(s) could not be scored and were skipped" in result.stderr
    assert "line 17 (0.1_s0.wav / 0.2_s9.wav): " in result.stderr and "0.2_s9.wav: silent" in result.stderr
    assert json.loads(result.stdout)["num_skipped"] == 1


def test_check_quick_says_it_checked_sizes_only(world, tmp_path):
    """A bit-flipped shard has the recorded size: --quick cannot know, and says so."""
    folder = damaged_copy(world, tmp_path, "flipped")
    result = invoke("check", "--quick", folder)
    assert result.exit_code == 0, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("2 shard(s) have the sizes manifest.json records; --quick checks sizes only")
    assert "cannot vouch for their contents" in line and "intact" not in result.stderr
    assert invoke("check", folder).exit_code == 1  # the checksums find it
