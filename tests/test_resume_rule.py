"""One resume rule for every stage: the same command again continues an unfinished run and
reports a finished one; other settings are refused in one line naming the setting (its value
there and here), suggesting nothing that would then be refused.

The table: pretrain, finetune, distill, train × {unfinished, finished} × {same, changed}. Each
command's two runs (interrupted after its first of two epochs; that run continued to the end)
are made once, at toy sizes, and each row works on a copy.
"""

import dataclasses
import json
import os
import shutil

import keras
import pytest

from jsqa_tf.config import (
    EncoderConfig,
    PairSampling,
    PretrainConfig,
    PretrainDataConfig,
    PretrainTrainingConfig,
)
from jsqa_tf.training import TrainingError

pytestmark = pytest.mark.slow  # ~60 s: four commands' runs of two tiny epochs, made once


class Interrupt(keras.callbacks.Callback):
    """Ctrl-C as the second epoch begins: the first is checkpointed."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt


def _relocated(config, run_dir):
    return dataclasses.replace(config, run_dir=str(run_dir))


def _changed(config):
    return dataclasses.replace(config, training=dataclasses.replace(config.training, learning_rate=0.05))


class Stage:
    """A training stage's function and config, run on any folder."""

    def __init__(self, run, config):
        self.run, self.config = run, config

    def start_interrupted(self, run_dir):
        with pytest.raises(KeyboardInterrupt):
            self.run(_relocated(self.config, run_dir), verbose=0, callbacks=[Interrupt()])

    def again(self, run_dir, changed=False):
        config = _relocated(self.config, run_dir)
        return self.run(_changed(config) if changed else config, verbose=0)

    @staticmethod
    def trained_epochs(run_dir):
        return json.loads((run_dir / "checkpoints" / "state.json").read_text())["epoch"] + 1

    changed_key = "training.learning_rate"


class Pipeline:
    """`train` on a one-run pipeline (pretraining, fine-tuning, evaluation); interrupted in
    its fine-tuning's second epoch."""

    changed_key = "finetune.training.learning_rate"

    def __init__(self, mos_demo):
        self.raw = {
            "pretrain": {
                "data": {"clean_dir": mos_demo["clean"], "noise_dir": mos_demo["noise"], "val_batches": 1,
                         "pairs": {"crop_seconds": 0.5, "pairs_per_batch": 4}},
                "model": {"preset": "tiny", "projection": False},
                "training": {"epochs": 1, "steps_per_epoch": 2, "audio_examples": 0},
            },
            "finetune": {
                "data": {"data_dir": mos_demo["mos"], "crop_seconds": 1.0, "window_seconds": 4.0},
                "model": {"preset": "tiny", "hidden_dims": [8]},
                "training": {"epochs": 2, "steps_per_epoch": 2, "learning_rate": 1e-3},
            },
            "evaluate": {"num_bootstrap": 20},
        }  # fmt: skip

    def start_interrupted(self, run_dir):
        import importlib

        from jsqa_tf.training import train

        module = importlib.import_module("jsqa_tf.training.finetune")
        real = module.finetune
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(
                module, "finetune", lambda config, **kw: real(config, **kw, callbacks=[Interrupt()])
            )
            with pytest.raises(KeyboardInterrupt):
                train({**self.raw, "run_dir": str(run_dir)}, verbose=0)

    def again(self, run_dir, changed=False):
        from jsqa_tf.training import train

        raw = json.loads(json.dumps({**self.raw, "run_dir": str(run_dir)}))
        if changed:
            raw["finetune"]["training"]["learning_rate"] = 0.05
        return train(raw, verbose=0)

    @staticmethod
    def trained_epochs(run_dir):
        return Stage.trained_epochs(run_dir / "finetune")


@pytest.fixture(scope="module")
def commands(mos_demo, tiny_mos_keras):
    from jsqa_tf.training import distill, finetune, pretrain
    from tests.test_distill import tiny_config as distill_config
    from tests.test_finetune import tiny_config as finetune_config

    pretrain_config = PretrainConfig(
        run_dir="",
        data=PretrainDataConfig(
            clean_dir=mos_demo["clean"],
            noise_dir=mos_demo["noise"],
            pairs=PairSampling(crop_seconds=0.5, pairs_per_batch=4),
            val_batches=1,
        ),
        model=EncoderConfig(preset="tiny", projection=False),
        training=PretrainTrainingConfig(epochs=2, steps_per_epoch=2, audio_examples=0),
    )
    return {
        "pretrain": Stage(pretrain, pretrain_config),
        "finetune": Stage(finetune, finetune_config("", mos_demo["mos"], steps_per_epoch=2)),
        "distill": Stage(distill, distill_config("", mos_demo, tiny_mos_keras, steps_per_epoch=2)),
        "train": Pipeline(mos_demo),
    }


@pytest.fixture(scope="module")
def runs(commands, tmp_path_factory):
    """{command: {"unfinished": folder, "finished": folder}}."""
    made = {}
    for name, command in commands.items():
        root = tmp_path_factory.mktemp(f"resume_{name}")
        command.start_interrupted(root / "unfinished")
        shutil.copytree(root / "unfinished", root / "finished")
        command.again(root / "finished")
        made[name] = {"unfinished": root / "unfinished", "finished": root / "finished"}
    return made


def _files(folder):
    """Every file's bytes (logs aside): what a refused or reporting command must leave alone."""
    found = {}
    for parent, _, names in os.walk(folder):
        if "logs" in parent.split(os.sep):
            continue
        for name in names:
            path = os.path.join(parent, name)
            with open(path, "rb") as stream:
                found[os.path.relpath(path, folder)] = stream.read()
    return found


@pytest.mark.parametrize("name", ["pretrain", "finetune", "distill", "train"])
@pytest.mark.parametrize("state", ["unfinished", "finished"])
@pytest.mark.parametrize("settings", ["same", "changed"])
def test_the_resume_rule(name, state, settings, commands, runs, tmp_path):
    command = commands[name]
    run_dir = tmp_path / "run"
    shutil.copytree(runs[name][state], run_dir)  # a moved run folder is the same run
    before = _files(run_dir)
    assert command.trained_epochs(run_dir) == (1 if state == "unfinished" else 2)
    if settings == "changed":
        with pytest.raises(TrainingError) as caught:
            command.again(run_dir, changed=True)
        message = str(caught.value)
        assert "\n" not in message and "--resume" not in message, message
        assert f"holds a run made with other settings: {command.changed_key} is " in message, message
        assert (
            " there, 0.05 here; rerun with the run's settings to continue it, or choose another " in message
        )
        assert _files(run_dir) == before
    elif state == "unfinished":
        command.again(run_dir)  # continues: the second epoch, from the checkpoint
        assert command.trained_epochs(run_dir) == 2
    else:
        command.again(run_dir)  # reports: nothing trained, nothing written
        assert _files(run_dir) == before


def test_the_resume_flag_only_refuses_where_there_is_no_run(commands, tmp_path):
    from jsqa_tf.training import pretrain

    config = _relocated(commands["pretrain"].config, tmp_path / "none")
    with pytest.raises(
        TrainingError, match="no run to continue \\(no config.yaml\\); without --resume one starts"
    ):
        pretrain(config, resume=True, verbose=0)
    from jsqa_tf.training import train

    raw = {**commands["train"].raw, "run_dir": str(tmp_path / "pipeline")}
    with pytest.raises(
        TrainingError, match="no run to continue \\(no pipeline.yaml\\); without --resume one"
    ):
        train(raw, resume=True, verbose=0)
    assert not (tmp_path / "pipeline").exists()
