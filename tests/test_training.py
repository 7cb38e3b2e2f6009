"""Pretraining end to end on the tiny demo corpus (tiny encoder, 0.5 s pairs)."""

import dataclasses
import glob
import json
import logging
import os
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from jsqa_tf.config import (
    EncoderConfig,
    PairSampling,
    PrepareConfig,
    PretrainConfig,
    PretrainDataConfig,
    PretrainTrainingConfig,
    from_dict,
    load_yaml,
    to_dict,
)
from jsqa_tf.data.prepare import prepare
from jsqa_tf.errors import ConfigError, CorpusError
from jsqa_tf.models import WaveformEncoder
from jsqa_tf.training import TrainingError, pretrain

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def shards(tiny_demo, tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain_shards")
    clean = PrepareConfig(
        corpus="librispeech", source=tiny_demo["librispeech"], val_fraction=0.3, num_workers=0
    )
    noise = PrepareConfig(
        corpus="chime3", source=tiny_demo["chime3"], chime3_channels="all", val_fraction=0.25, num_workers=0
    )
    prepare(clean, root / "clean")
    prepare(noise, root / "noise")
    return str(root / "clean"), str(root / "noise")


def tiny_config(run_dir, shards, **training):
    settings = dict(epochs=3, steps_per_epoch=8, learning_rate=3e-3, audio_examples=1, deterministic=True)
    return PretrainConfig(
        run_dir=str(run_dir),
        data=PretrainDataConfig(
            clean_dir=shards[0],
            noise_dir=shards[1],
            pairs=PairSampling(crop_seconds=0.5, pairs_per_batch=4),
            val_batches=2,
        ),
        model=EncoderConfig(preset="tiny"),
        training=PretrainTrainingConfig(**{**settings, **training}),
    )


def encoder_weights(run_dir):
    return keras.saving.load_model(os.path.join(run_dir, "encoder.keras")).get_weights()


def test_pipelines_are_valid_configs():
    for name in ("pretrain_proj", "pretrain_noproj", "pretrain_demo"):
        config = from_dict(PretrainConfig, load_yaml(os.path.join(REPO, "pipelines", f"{name}.yaml")))
        assert config.model.projection == (name != "pretrain_noproj")
    paper = from_dict(PretrainConfig, load_yaml(os.path.join(REPO, "pipelines", "pretrain_proj.yaml")))
    assert (paper.model.preset, paper.training.learning_rate, paper.training.temperature) == (
        "jsqa",
        1e-3,
        1.0,
    )
    assert (paper.data.pairs.pairs_per_batch, paper.training.epochs) == (8, 45)
    # The paper's budget: 33 GB of 16-bit 16 kHz pairs = 286.46 h of audio per epoch.
    assert paper.training.epoch_hours == 286.46 and paper.training.steps_per_epoch is None
    assert paper.epoch_steps() == round(33e9 / 32_000 / 64) == 16_113
    demo = from_dict(PretrainConfig, load_yaml(os.path.join(REPO, "pipelines", "pretrain_demo.yaml")))
    assert demo.epoch_steps() == 25  # the demo stays fast: explicit steps


def test_an_epoch_is_hours_of_audio_or_steps_not_both(shards, tmp_path):
    def config(**training):
        return PretrainConfig(
            "run",
            data=PretrainDataConfig(pairs=PairSampling(crop_seconds=4.0, pairs_per_batch=8)),
            training=PretrainTrainingConfig(**training),
        )

    # A step is pairs x replicas x 2 mixtures x crop seconds of audio: 64 s on one device.
    assert config(epoch_hours=1.0).step_audio_seconds() == 64.0
    assert config(epoch_hours=1.0).epoch_steps() == round(3600 / 64) == 56
    assert config(epoch_hours=1.0).epoch_steps(num_replicas=2) == round(3600 / 128) == 28
    assert config(steps_per_epoch=7).epoch_steps(num_replicas=4) == 7
    assert config().epoch_steps() == 1000  # neither given
    assert config(epoch_hours=1e-6).epoch_steps() == 1  # at least one step
    with pytest.raises(ConfigError, match="steps_per_epoch or training.epoch_hours, not both"):
        config(steps_per_epoch=10, epoch_hours=1.0)
    with pytest.raises(ConfigError, match="epoch_hours must be > 0"):
        config(epoch_hours=0.0)
    # In a run: 0.5 s crops x 4 pairs x 2 = 4 s per step; 12 s of audio per epoch = 3 steps.
    hours = tiny_config(
        tmp_path / "run", shards, epochs=1, steps_per_epoch=None, epoch_hours=12 / 3600, audio_examples=0
    )
    summary = pretrain(hours, verbose=0)
    assert summary["steps_per_epoch"] == 3 and summary["epoch_audio_hours"] == pytest.approx(12 / 3600)


def test_loss_falls_and_the_run_folder_is_complete(shards, tmp_path):
    run = tmp_path / "run"
    summary = pretrain(tiny_config(run, shards, epochs=4, steps_per_epoch=12), verbose=0)
    losses = summary["history"]["loss"]
    assert losses[-1] < losses[0] - 0.05, losses
    assert summary["epochs_done"] == 4 and summary["backend"] == "tensorflow"
    for name in (
        "config.yaml",
        "history.csv",
        "summary.json",
        "encoder.keras",
        "checkpoints/state.json",
        "checkpoints/best.weights.h5",
        "checkpoints/epoch-0004.weights.h5",
    ):
        assert (run / name).exists(), name
    assert len(glob.glob(str(run / "checkpoints" / "epoch-*.weights.h5"))) == 3  # keep_checkpoints
    encoder = keras.saving.load_model(run / "encoder.keras", safe_mode=True)
    assert isinstance(encoder, WaveformEncoder) and encoder.output_shape == (None, 32)
    saved = from_dict(PretrainConfig, load_yaml(run / "config.yaml"))
    assert to_dict(saved) == to_dict(tiny_config(run, shards, epochs=4, steps_per_epoch=12))

    import tensorflow as tf

    tags = set()
    for event_file in glob.glob(str(run / "logs" / "**" / "events*"), recursive=True):
        for event in tf.compat.v1.train.summary_iterator(event_file):
            tags |= {value.tag for value in event.summary.value}
    assert {
        "epoch_loss",
        "epoch_pair_accuracy",
        "epoch_learning_rate",
        "epoch_clips_per_second",
        "jnd_pairs/a_then_b",
    } <= tags

    # The same command again does nothing (and changes nothing); other settings are refused.
    state = (run / "checkpoints" / "state.json").read_bytes()
    again = pretrain(tiny_config(run, shards, epochs=4, steps_per_epoch=12), verbose=0)
    assert again["epochs_done"] == 4 and again["loss"] == summary["loss"]
    assert (run / "checkpoints" / "state.json").read_bytes() == state
    again = pretrain(tiny_config(run, shards, epochs=4, steps_per_epoch=12), resume=True, verbose=0)
    assert again["epochs_done"] == 4 and (run / "checkpoints" / "state.json").read_bytes() == state
    with pytest.raises(
        TrainingError, match="other settings: training.learning_rate is 0.003 there, 0.01 here;"
    ):
        pretrain(tiny_config(run, shards, epochs=5, steps_per_epoch=12, learning_rate=1e-2), resume=True)


def test_a_resumed_run_keeps_the_encoder_numerics_it_started_with(shards, tmp_path, caplog):
    """The state records the encoder's decimation and BatchNorm epsilon; a resume builds the
    same, and a run started before the record (when every preset had stride and 1e-3) resumes
    with those, not with what its preset computes now."""

    def config(run, epochs):
        base = tiny_config(run, shards, epochs=epochs, steps_per_epoch=2, audio_examples=0)
        small_cdpam = EncoderConfig(preset="cdpam", first_filters=2, num_blocks=2, embedding_dim=8)
        return dataclasses.replace(base, model=small_cdpam)

    def numerics(run):
        encoder = keras.saving.load_model(run / "encoder.keras")
        return encoder.decimation, encoder.batch_norm_epsilon

    recorded, older = tmp_path / "recorded", tmp_path / "older"
    for run in (recorded, older):
        pretrain(config(run, 1), verbose=0)
        assert numerics(run) == ("subsample", 1e-5)  # the preset's, CDPAM's
    state_path = older / "checkpoints" / "state.json"
    state = json.loads(state_path.read_text())
    assert state["encoder_numerics"] == {"decimation": "subsample", "batch_norm_epsilon": 1e-5}
    del state["encoder_numerics"]
    state_path.write_text(json.dumps(state))  # as a run started before the record
    pretrain(config(recorded, 2), resume=True, verbose=0)
    assert numerics(recorded) == ("subsample", 1e-5)
    pretrain(config(older, 2), resume=True, verbose=0)
    assert numerics(older) == ("stride", 1e-3)
    assert "started before the encoder's numerics were recorded" in caplog.text
    assert json.loads(state_path.read_text())["encoder_numerics"]["decimation"] == "stride"


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_and_the_pretrainer_round_trips(shards, tmp_path, precision):
    config = tiny_config(tmp_path / "run", shards, epochs=1, steps_per_epoch=4, precision=precision)
    summary = pretrain(config, verbose=0)
    assert np.isfinite(summary["loss"])
    assert keras.mixed_precision.dtype_policy().name == "float32"  # restored after the run
    encoder = keras.saving.load_model(tmp_path / "run" / "encoder.keras")
    # Variables are float32 under mixed precision; the saved encoder takes the global policy
    # of whoever loads it (float32 here), ready for fine-tuning or export.
    assert encoder.dtype_policy.name == "float32" and encoder.weights[0].dtype == "float32"

    from jsqa_tf.training import build_pretrainer

    model = build_pretrainer(
        dataclasses.replace(config, training=dataclasses.replace(config.training, precision="float32"))
    )
    x = {
        "clean": np.ones((2, 800), "float32") * 0.1,
        "noise": np.ones((2, 800), "float32"),
        "snr_db": np.zeros((2, 2), "float32"),
    }
    expected = np.asarray(model(x))
    model.optimizer.build(model.trainable_variables)  # saved with its (Adam) state
    model.save(tmp_path / "pretrainer.keras")
    loaded = keras.saving.load_model(tmp_path / "pretrainer.keras", safe_mode=True)
    np.testing.assert_array_equal(np.asarray(loaded(x)), expected)
    assert loaded.encoder.get_config() == model.encoder.get_config()


class AtStep(keras.callbacks.Callback):
    """Runs `act` before a given batch of a given epoch (both 0-based)."""

    def __init__(self, epoch, batch, act):
        super().__init__()
        self.epoch, self.batch, self.act, self.current = epoch, batch, act, None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.current, batch) == (self.epoch, self.batch):
            self.act(self.model)


def press_ctrl_c(model):
    raise KeyboardInterrupt


def poison_first_conv(model):
    kernel = model.encoder.get_layer("block1_conv1").kernel
    kernel.assign(np.full(kernel.shape, np.nan, "float32"))


def test_resume_after_interruption_matches_an_uninterrupted_run(shards, tmp_path, caplog):
    """Bit-exact: same seeds, op determinism, the epoch's pairs re-derived from (seed, epoch),
    model and optimizer state (including the dropout RNG state) restored from the checkpoint.
    The noise comes from the in-memory noise bank (see tests/data/test_pairs.py for the
    record-reading fallback)."""
    with caplog.at_level(logging.INFO, logger="jsqa_tf.data.noise_bank"):
        pretrain(tiny_config(tmp_path / "straight", shards), verbose=0)
    assert "noise bank: " in caplog.text
    with pytest.raises(KeyboardInterrupt):
        pretrain(tiny_config(tmp_path / "broken", shards), callbacks=[AtStep(1, 3, press_ctrl_c)], verbose=0)
    state = json.loads((tmp_path / "broken" / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 0  # one finished epoch before Ctrl-C
    summary = pretrain(tiny_config(tmp_path / "broken", shards), verbose=0)  # the same command
    assert summary["epochs_done"] == 3
    for straight, resumed in zip(
        encoder_weights(tmp_path / "straight"), encoder_weights(tmp_path / "broken"), strict=True
    ):
        np.testing.assert_array_equal(straight, resumed)
    history = (tmp_path / "broken" / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history] == ["epoch", "0", "1", "2"]


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(shards, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"NaN/Inf at epoch 2, step 3.*epoch-0001.weights.h5 \(epoch 1\)"):
        pretrain(tiny_config(run, shards), callbacks=[AtStep(1, 2, poison_first_conv)], verbose=0)
    checkpoints = sorted(os.listdir(run / "checkpoints"))
    assert "epoch-0001.weights.h5" in checkpoints and "epoch-0002.weights.h5" not in checkpoints
    assert json.loads((run / "checkpoints" / "state.json").read_text())["epoch"] == 0
    assert not (run / "encoder.keras").exists()


def run_script(script, env=None, timeout=240):
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, **(env or {})},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_mirrored_strategy_over_two_logical_cpus(shards, tmp_path):
    config = tiny_config(tmp_path / "run", shards, epochs=1, steps_per_epoch=3, strategy="mirrored")
    (tmp_path / "config.json").write_text(json.dumps(to_dict(config)))
    script = f"""
import json, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from jsqa_tf.config import PretrainConfig, from_dict
from jsqa_tf.training import pretrain
config = from_dict(PretrainConfig, json.load(open({str(tmp_path / "config.json")!r})))
print(json.dumps(pretrain(config, verbose=0)))
"""
    summary = json.loads(run_script(script).strip().splitlines()[-1])
    assert summary["replicas"] == 2 and summary["epochs_done"] == 1
    assert np.isfinite(summary["loss"])


def test_training_and_validation_streams_never_run_dry(shards):
    """Issue 12.11: the two-worker test failed 1 run in 6 with `Incompatible shapes: [0,8006,8]
    vs. [16]`. Under a multi-worker strategy tf.distribute hands a worker that has run out of
    a finite dataset an empty batch; an infinite one turns that partial-batch handling off.
    The stages state their steps, so the repetition is never read."""
    import tensorflow as tf

    from jsqa_tf.training.pretrain import train_dataset, val_dataset

    config = tiny_config("unused", shards)
    val = val_dataset(config, *shards, 4)
    train = train_dataset(config, *shards, 4, config.training.steps_per_epoch)
    assert val.cardinality() == train.cardinality() == tf.data.INFINITE_CARDINALITY
    batches = [batch["snr_db"].numpy() for _, batch in zip(range(4), val, strict=False)]
    np.testing.assert_array_equal(batches[0], batches[2])  # the same val_batches (2) every pass
    assert not np.array_equal(batches[0], batches[1])


BIND_FAILURE = "Could not start gRPC server"  # TensorFlow's error when a worker's port is taken
CLUSTER_ATTEMPTS = 3


def free_port():
    """A port free on every interface (where TensorFlow's server binds) at this moment."""
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


def run_two_workers(command, logs_dir, attempt):
    """Runs `command` as the two workers of a localhost cluster; [(returncode, stdout, stderr)].

    The ports are free when chosen but stay unbound until each worker has imported TensorFlow
    (seconds): another process may take one meanwhile. TensorFlow's server cannot adopt a
    socket held for it (it binds the port itself, with SO_REUSEPORT off), so the caller
    retries on a bind failure instead. A worker that fails ends the other, which would wait
    for it."""
    workers = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    logs = [logs_dir / f"attempt{attempt}-worker{index}" for index in range(2)]
    processes = []
    for index, log in enumerate(logs):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "TF_CPP_MIN_LOG_LEVEL": "2"}
        with open(log.with_suffix(".out"), "w") as out, open(log.with_suffix(".err"), "w") as err:
            processes.append(subprocess.Popen(command, env=env, cwd=REPO, stdout=out, stderr=err))
    deadline = time.monotonic() + 240  # against a hang only
    try:
        while time.monotonic() < deadline and any(p.poll() is None for p in processes):
            if any(p.poll() not in (None, 0) for p in processes):
                break
            time.sleep(0.2)
    finally:
        for process in processes:
            process.kill()
            process.wait()
    return [
        (process.returncode, log.with_suffix(".out").read_text(), log.with_suffix(".err").read_text())
        for process, log in zip(processes, logs, strict=True)
    ]


@pytest.mark.slow  # ~10 s: two worker processes, each importing TensorFlow, over gRPC
def test_two_worker_multi_worker_mirrored_strategy_on_localhost(shards, tmp_path):
    config = tiny_config(tmp_path / "unused", shards, epochs=1, steps_per_epoch=3, deterministic=False)
    config_path = tmp_path / "pretrain.yaml"
    from jsqa_tf.config import dump_yaml

    dump_yaml(config, config_path)
    command = [sys.executable, "-m", "jsqa_tf", "pretrain", "--config", str(config_path)]
    command += ["--strategy", "multi-worker"]
    for attempt in range(CLUSTER_ATTEMPTS):  # a fresh run folder each time
        run = tmp_path / f"run-{attempt}"
        results = run_two_workers([*command, "--run-dir", str(run)], tmp_path, attempt)
        if not any(code != 0 and BIND_FAILURE in stderr for code, _, stderr in results):
            break
    for code, _, stderr in results:
        assert code == 0, f"attempt {attempt + 1} of {CLUSTER_ATTEMPTS}: {stderr[-3000:]}"
    chief = json.loads(results[0][1])
    assert chief["replicas"] == 2 and chief["epochs_done"] == 1
    assert (run / "encoder.keras").exists()
    assert (run / "worker-1" / "encoder.keras").exists()  # the other worker's files


FAMILIES = PairSampling(
    crop_seconds=0.5, pairs_per_batch=4, families=("additive", "reverb", "bandwidth"), noise_under_share=0.5
)


def test_pair_families_pretrain_with_two_speech_views(shards, tmp_path):
    """Additive, reverb and bandwidth pairs in one batch: the step mixes clean and clean_b
    (some views without noise, SNR +inf) and the loss stays finite; the example-pair callback
    logs them."""
    config = tiny_config(tmp_path / "run", shards, epochs=1, steps_per_epoch=3)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, pairs=FAMILIES))
    summary = pretrain(config, verbose=0)
    assert summary["epochs_done"] == 1 and all(np.isfinite(summary["history"]["loss"]))
    assert os.listdir(tmp_path / "run" / "logs" / "examples")


@pytest.mark.slow  # ~19 s: a fresh process that imports JAX and XLA-compiles the train step
def test_pretraining_runs_under_the_jax_backend(shards, tmp_path):
    """Pair families (two speech views, SNRs of +inf) under JAX: the same step."""
    config = tiny_config(tmp_path / "run", shards, epochs=2, steps_per_epoch=4, deterministic=False)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, pairs=FAMILIES))
    (tmp_path / "config.json").write_text(json.dumps(to_dict(config)))
    script = f"""
import json
from jsqa_tf.config import PretrainConfig, from_dict
from jsqa_tf.training import pretrain
config = from_dict(PretrainConfig, json.load(open({str(tmp_path / "config.json")!r})))
print(json.dumps(pretrain(config, verbose=0)))
"""
    summary = json.loads(
        run_script(script, env={"KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}).splitlines()[-1]
    )
    assert summary["backend"] == "jax" and summary["epochs_done"] == 2
    assert all(np.isfinite(summary["history"]["loss"]))
    assert (tmp_path / "run" / "encoder.keras").exists()


def test_pretrain_command_runs_resumes_and_reports_errors(shards, tmp_path):
    from click.testing import CliRunner

    from jsqa_tf.cli import main

    def run(*args):
        command = [
            "pretrain",
            "--config",
            os.path.join(REPO, "pipelines", "pretrain_demo.yaml"),
            "--run-dir",
            str(tmp_path / "run"),
            "--clean-dir",
            shards[0],
            "--noise-dir",
            shards[1],
            "--steps-per-epoch",
            "3",
            "--set",
            "data.pairs.crop_seconds=0.5",
            "--set",
            "data.pairs.pairs_per_batch=4",
            "--set",
            "data.val_batches=1",
            "--set",
            "training.audio_examples=0",
            *args,
        ]
        return CliRunner().invoke(main, command, catch_exceptions=False)

    result = run("--epochs", "1")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["epochs_done"] == 1  # stdout: the JSON summary only
    assert "val_pair_accuracy" in result.stderr  # Keras's progress bar goes to stderr
    saved = load_yaml(tmp_path / "run" / "config.yaml")
    assert saved["data"]["demo_dir"] is None and saved["data"]["pairs"]["crop_seconds"] == 0.5

    result = run("--epochs", "2")  # more epochs continue the finished run
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["epochs_done"] == 2
    result = run("--set", "training.learning_rat=0.1")
    assert result.exit_code == 1 and "unknown key(s) learning_rat" in result.output


def test_a_failed_start_can_be_started_over_and_data_errors_are_clear(shards, tiny_demo, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(CorpusError, match="missing: no manifest.json"):
        pretrain(tiny_config(run, (str(tmp_path / "missing"), shards[1])), verbose=0)
    # No epoch finished there: the same folder takes a corrected run without --resume.
    assert pretrain(tiny_config(run, shards, epochs=1, steps_per_epoch=2), verbose=0)["epochs_done"] == 1

    train_only = tmp_path / "train_only"
    prepare(PrepareConfig(corpus="librispeech", source=tiny_demo["librispeech"], num_workers=0), train_only)
    with pytest.raises(CorpusError, match="has no 'val' split; it has train; prepare it with --val-fraction"):
        pretrain(tiny_config(tmp_path / "r1", (str(train_only), shards[1])), verbose=0)
    empty = dataclasses.replace(tiny_config(tmp_path / "r2", shards), data=PretrainDataConfig())
    with pytest.raises(TrainingError, match="clean_dir and data.noise_dir must be set"):
        pretrain(empty, verbose=0)
