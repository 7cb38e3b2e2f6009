"""MOS fine-tuning on the demo corpus's NISQA part (tiny encoder, short crops)."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from jsqa_tf.config import FinetuneConfig, FinetuneTrainingConfig, MOSDataConfig, MOSModelConfig
from jsqa_tf.data.mos import Selection, count_labelled, labelled_files
from jsqa_tf.errors import ConfigError, CorpusError
from jsqa_tf.training import TrainingError, finetune

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(run_dir, data_dir, crop_seconds=1.0, **training):
    settings = dict(epochs=2, steps_per_epoch=3, deterministic=True)
    return FinetuneConfig(
        run_dir=str(run_dir),
        data=MOSDataConfig(data_dir=data_dir, crop_seconds=crop_seconds, batch_size=8, window_seconds=4.0),
        model=MOSModelConfig(encoder="scratch", preset="tiny", hidden_dims=(16, 8)),
        training=FinetuneTrainingConfig(**{**settings, **training}),
    )


class _EncoderWeights(keras.callbacks.Callback):
    """The encoder's weights (BatchNorm statistics included) at the start and after each epoch."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_train_begin(self, logs=None):
        if not self.seen:
            self.seen.append([np.array(w) for w in self.model.encoder.weights])

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append([np.array(w) for w in self.model.encoder.weights])


def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_freezing_keeps_the_encoder_unchanged_and_unfreezing_trains_it(mos_demo, tmp_path):
    weights = _EncoderWeights()
    config = tiny_config(tmp_path / "run", mos_demo["mos"], epochs=3, freeze_encoder_epochs=2)
    summary = finetune(config, verbose=0, callbacks=[weights])
    start, epoch1, epoch2, epoch3 = weights.seen
    assert same(start, epoch1) and same(epoch1, epoch2)  # frozen: weights and BN statistics
    assert not same(epoch2, epoch3)
    assert summary["history"]["encoder_learning_rate"] == [0.0, 0.0, 1e-3]
    for name in ("model.keras", "model-last.keras", "summary.json", "history.csv", "config.yaml"):
        assert (tmp_path / "run" / name).exists(), name


def test_resume_after_interruption_matches_an_uninterrupted_run(mos_demo, tmp_path):
    def run_weights(run_dir):
        return keras.saving.load_model(os.path.join(run_dir, "model-last.keras")).get_weights()

    # the interruption falls right after the frozen phase: the optimizer changes on resume
    whole = tiny_config(tmp_path / "whole", mos_demo["mos"], epochs=3, freeze_encoder_epochs=1)
    finetune(whole, verbose=0)
    part = tiny_config(tmp_path / "part", mos_demo["mos"], epochs=1, freeze_encoder_epochs=1)
    finetune(part, verbose=0)
    again = finetune(part, verbose=0)  # the same command again: reports, trains nothing
    assert (
        again["epochs_done"] == 1 and len((tmp_path / "part" / "history.csv").read_text().splitlines()) == 2
    )
    changed = tiny_config(
        tmp_path / "part", mos_demo["mos"], epochs=3, freeze_encoder_epochs=1, learning_rate=1e-2
    )
    with pytest.raises(TrainingError, match=r"training.learning_rate is [0-9.e-]+ there, 0.01 here; rerun"):
        finetune(changed, verbose=0)
    # more epochs continue the finished run, without --resume
    finetune(tiny_config(tmp_path / "part", mos_demo["mos"], epochs=3, freeze_encoder_epochs=1), verbose=0)
    for a, b in zip(run_weights(tmp_path / "whole"), run_weights(tmp_path / "part"), strict=True):
        np.testing.assert_array_equal(a, b)
    history = (tmp_path / "part" / "history.csv").read_text().splitlines()
    assert len(history) == 4  # header + 3 epochs, the resumed ones appended


@pytest.mark.slow  # ~30 s: 25 short epochs, enough to learn the demo labels
def test_fine_tuning_learns_the_demo_labels(mos_demo, tmp_path):
    train_mos = np.array([f.mos for f in labelled_files(mos_demo["mos"], "train")])
    val_mos = np.array([f.mos for f in labelled_files(mos_demo["mos"], "val")])
    mean_rmse = float(np.sqrt(np.mean((val_mos - train_mos.mean()) ** 2)))
    config = tiny_config(tmp_path / "run", mos_demo["mos"], crop_seconds=1.5, epochs=25, steps_per_epoch=None)
    summary = finetune(config, verbose=0)
    assert summary["steps_per_epoch"] == 5  # one pass over the 40 train files
    assert summary["best_val_rmse"] < 0.75 * mean_rmse, (summary["best_val_rmse"], mean_rmse)
    assert max(summary["history"]["val_pcc"]) > 0.6


def test_whole_file_batches_and_early_stopping(mos_demo, tmp_path):
    # a huge rate saturates the scaled sigmoid at once: no later epoch improves on the first
    config = tiny_config(
        tmp_path / "run",
        mos_demo["mos"],
        crop_seconds=None,
        epochs=6,
        learning_rate=50.0,
        early_stopping_patience=2,
        steps_per_epoch=2,
    )
    summary = finetune(config, verbose=0)
    assert summary["epochs_done"] < 6, summary["history"]["val_rmse"]
    assert summary["stopped_early_at_epoch"] == summary["epochs_done"]
    state = json.loads((tmp_path / "run" / "checkpoints" / "state.json").read_text())
    assert state["monitor"] == "val_rmse" and state["best_epoch"] == summary["best_epoch"]


def test_selections_are_nested_and_databases_filter(mos_demo):
    counts = [count_labelled(mos_demo["mos"], "train", Selection(fraction=f)) for f in (0.25, 0.5, 1.0)]
    assert counts[0] < counts[1] < counts[2] == 40
    quarter = {f.key for f in labelled_files(mos_demo["mos"], "train", Selection(fraction=0.25))}
    half = {f.key for f in labelled_files(mos_demo["mos"], "train", Selection(fraction=0.5))}
    assert quarter < half and len(quarter) == counts[0]
    assert count_labelled(mos_demo["mos"], "val", Selection(("NISQA_VAL_SIM",))) == 20
    with pytest.raises(CorpusError, match="holds no files"):
        count_labelled(mos_demo["mos"], "val", Selection(("NISQA_TEST_FOR",)))
    with pytest.raises(CorpusError, match="without a MOS"):
        count_labelled(mos_demo["clean"], "train")


def test_mos_data_must_be_16_khz(tiny_demo, tmp_path):
    """Shards prepared at another rate are refused, not read as 16 kHz (issue 12.3)."""
    from jsqa_tf.config import PrepareConfig
    from jsqa_tf.data.mos import mos_train_dataset
    from jsqa_tf.data.prepare import prepare

    prepare(
        PrepareConfig(corpus="nisqa", source=tiny_demo["nisqa"], sample_rate=8000, num_workers=0), tmp_path
    )
    with pytest.raises(CorpusError, match="prepared at 8000 Hz, but 16000 Hz audio is needed"):
        count_labelled(str(tmp_path), "train")
    with pytest.raises(CorpusError, match="prepared at 8000 Hz"):
        mos_train_dataset(str(tmp_path), "train", batch_size=2, seed=0, num_files=6)


def test_bad_settings_are_refused_with_the_field_named(mos_demo, tmp_path):
    with pytest.raises(ConfigError, match="training.learning_rate"):
        FinetuneTrainingConfig(learning_rate=-1e-3)
    with pytest.raises(ConfigError, match="data.train_fraction"):
        MOSDataConfig(train_fraction=0)
    with pytest.raises(ConfigError, match="model.embedding"):
        MOSModelConfig(embedding="half")
    bad_encoder = tiny_config(tmp_path / "run", mos_demo["mos"])
    bad_encoder = FinetuneConfig(
        run_dir=bad_encoder.run_dir,
        data=bad_encoder.data,
        training=bad_encoder.training,
        model=MOSModelConfig(encoder=str(tmp_path)),
    )
    with pytest.raises(Exception, match="not a finished pretraining run folder"):
        finetune(bad_encoder, verbose=0)


@pytest.mark.slow  # ~20 s: a fresh process importing JAX
def test_fine_tuning_runs_under_the_jax_backend(mos_demo, tmp_path):
    script = f"""
import json
from jsqa_tf.config import FinetuneConfig, FinetuneTrainingConfig, MOSDataConfig, MOSModelConfig
from jsqa_tf.training import finetune
config = FinetuneConfig(
    run_dir={str(tmp_path / "jax")!r},
    data=MOSDataConfig(data_dir={mos_demo["mos"]!r}, crop_seconds=None, batch_size=4, window_seconds=2.0),
    model=MOSModelConfig(preset="tiny", hidden_dims=(8,)),
    training=FinetuneTrainingConfig(
        epochs=1, steps_per_epoch=2, encoder_learning_rate=1e-4, weight_decay=1e-4
    ),
)
summary = finetune(config, verbose=0)
print(json.dumps({{k: summary[k] for k in ("backend", "best_val_rmse")}}))
"""
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["backend"] == "jax" and np.isfinite(summary["best_val_rmse"])


@pytest.mark.slow  # ~20 s: a fresh process with two logical CPU devices
def test_fine_tuning_under_a_mirrored_strategy_over_two_logical_cpus(mos_demo, tmp_path):
    from jsqa_tf.config import to_dict

    config = tiny_config(
        tmp_path / "run", mos_demo["mos"], epochs=2, freeze_encoder_epochs=1, strategy="mirrored"
    )
    config = FinetuneConfig(
        run_dir=config.run_dir,
        data=config.data,
        model=config.model,
        training=FinetuneTrainingConfig(**{**to_dict(config.training), "encoder_learning_rate": 1e-4}),
    )
    (tmp_path / "config.json").write_text(json.dumps(to_dict(config)))
    script = f"""
import json, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from jsqa_tf.config import FinetuneConfig, from_dict
from jsqa_tf.training import finetune
config = from_dict(FinetuneConfig, json.load(open({str(tmp_path / "config.json")!r})))
summary = finetune(config, verbose=0)
print(json.dumps({{k: summary[k] for k in ("replicas", "epochs_done", "best_val_rmse")}}))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["replicas"] == 2 and summary["epochs_done"] == 2 and np.isfinite(summary["best_val_rmse"])
