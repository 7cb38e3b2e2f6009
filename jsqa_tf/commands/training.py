"""`jsqa-tf pretrain`, `finetune`, `distill` and `train`: a stage's config file, a few options
over it, --set over those; the library runs the stage (`jsqa_tf.training`)."""

from __future__ import annotations

import click

from jsqa_tf.commands.common import (
    SET_OPTION,
    assignments_of,
    config_option,
    echo_json,
    given,
    option_group,
    progress_bars,
)
from jsqa_tf.errors import JSQAError

_STAGE_KEYS = {
    "run_dir": "run_dir",
    "clean_dir": "data.clean_dir",
    "noise_dir": "data.noise_dir",
    "data_dir": "data.data_dir",
    "mos_dir": "data.mos_dir",
    "encoder": "model.encoder",
    "teacher": "model.teacher",
    "epochs": "training.epochs",
    "steps_per_epoch": "training.steps_per_epoch",
    "precision": "training.precision",
    "jit_compile": "training.jit_compile",
    "strategy": "training.strategy",
}
"""The training commands' options as the dotted keys of their config files."""

_run_options = option_group(
    click.option("--run-dir", help="Run folder (default: the config's run_dir)."),
    click.option("--precision", type=click.Choice(["float32", "mixed_float16", "mixed_bfloat16"])),
    click.option("--jit-compile/--no-jit-compile", default=None, help="Compile the step with XLA."),
    click.option(
        "--strategy",
        type=click.Choice(["default", "mirrored", "multi-worker"]),
        help="default: one device; mirrored: all local GPUs; multi-worker: TF_CONFIG cluster.",
    ),
    SET_OPTION,
    click.option(
        "--resume",
        is_flag=True,
        help="Only continue a run (refused where there is none); the same command continues anyway.",
    ),
)
"""The options of every training command (pretrain, finetune, distill, train)."""


def _run_stage(stage, cls, config_path: str, assignments, resume: bool, options: dict) -> None:
    """Runs a training stage on its config file, overridden by the options given (a data
    folder replaces the demo data; steps per epoch replace an epoch's hours of audio), then
    by --set; prints the summary without the history."""
    from jsqa_tf.config import apply_overrides, from_dict, load_yaml

    overrides = given(options, _STAGE_KEYS)
    if any(key.startswith("data.") for key in overrides):
        overrides["data.demo_dir"] = None
    if "training.steps_per_epoch" in overrides:  # pretraining's option wins over its file's epoch_hours
        overrides["training.epoch_hours"] = None
    overrides.update(assignments_of(assignments))
    config = from_dict(cls, apply_overrides(load_yaml(config_path), overrides), where=config_path)
    if not config.run_dir:
        raise JSQAError(f"{config_path}: run_dir is not set (--run-dir)")
    with progress_bars() as progress:
        summary = stage(config, resume=resume, progress=progress)
    echo_json({k: v for k, v in summary.items() if k != "history"})


@click.command()
@config_option("Pipeline YAML, e.g. pipelines/pretrain_demo.yaml.")
@click.option("--clean-dir", type=click.Path(file_okay=False), help="Prepared clean speech (train + val).")
@click.option("--noise-dir", type=click.Path(file_okay=False), help="Prepared noise (train + val).")
@click.option("--epochs", type=int, help="Training epochs.")
@click.option("--steps-per-epoch", type=int, help="Batches per epoch (instead of the file's epoch_hours).")
@_run_options
def pretrain(config_path, assignments, resume, **options) -> None:
    """Contrastive pretraining of the encoder on JND pairs (NT-Xent).

    Writes a run folder (config.yaml, checkpoints/, logs/ for TensorBoard, history.csv,
    encoder.keras = the last epoch, encoder-best.keras = the lowest validation loss,
    summary.json); prints the summary as JSON. Ctrl-C, then the same command, continues from the
    last finished epoch; a finished run is reported. The logged pair accuracy shows that the two views
    of a pair are told apart from the others (recognising the utterance or the noise is
    enough), not that the encoder learned anything perceptual (README).
    """
    from jsqa_tf.config import PretrainConfig
    from jsqa_tf.training import pretrain as run_pretrain

    _run_stage(run_pretrain, PretrainConfig, config_path, assignments, resume, options)


@click.command()
@config_option("YAML with FinetuneConfig sections (run_dir, data, model, training).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Prepared MOS shards (train + val).")
@click.option("--encoder", help="'scratch', a pretraining run folder, or an encoder .keras file.")
@click.option("--epochs", type=int, help="Training epochs.")
@_run_options
def finetune(config_path, assignments, resume, **options) -> None:
    """MOS fine-tuning of a (pretrained) encoder with the 4-layer regression head.

    Writes a run folder (config.yaml, checkpoints/, logs/ for TensorBoard, history.csv,
    model.keras = the epoch with the lowest validation RMSE, model-last.keras,
    summary.json); prints the summary as JSON. Ctrl-C, then the same command, continues from
    the last finished epoch; a finished run is reported.
    """
    from jsqa_tf.config import FinetuneConfig
    from jsqa_tf.training import finetune as run_finetune

    _run_stage(run_finetune, FinetuneConfig, config_path, assignments, resume, options)


@click.command()
@config_option("YAML with DistillConfig sections (run_dir, data, model, training).")
@click.option("--teacher", help="The fine-tuned teacher: a run folder or a .keras file.")
@click.option("--clean-dir", type=click.Path(file_okay=False), help="Prepared clean speech (train split).")
@click.option("--noise-dir", type=click.Path(file_okay=False), help="Prepared noise (train split).")
@click.option("--mos-dir", type=click.Path(file_okay=False), help="Prepared MOS corpus (train, val).")
@click.option("--epochs", type=int, help="Training epochs.")
@_run_options
def distill(config_path, assignments, resume, **options) -> None:
    """Trains a small student to give a fine-tuned teacher's MOS, on unlabelled audio.

    Writes a run folder (config.yaml, checkpoints/, logs/ for TensorBoard, history.csv,
    model.keras = the student of the epoch closest to the teacher on the val files,
    model-last.keras, summary.json); prints the summary as JSON. The student is a MOS model
    like any other: `evaluate`, `export` and `predict` take the run folder. Ctrl-C, then the
    same command, continues from the last finished epoch; a finished run is reported.
    """
    from jsqa_tf.config import DistillConfig
    from jsqa_tf.training.distill import distill as run_distill

    _run_stage(run_distill, DistillConfig, config_path, assignments, resume, options)


@click.command()
@config_option("Pipeline YAML: pipelines/demo.yaml, paper.yaml, label_efficiency.yaml.")
@_run_options
def train(config_path, run_dir, assignments, resume, **run_settings) -> None:
    """The whole of JSQA: pretraining, fine-tuning and evaluation (and a comparison of runs).

    Writes pretrain/, finetune/ and evaluate/ into the run folder (per run when the file
    has several, with compare.md; student/ with a distill section, saved_models/ with an
    export section). The same command again continues whichever stage was interrupted and
    skips the finished ones; other settings are refused, the setting named. --precision,
    --jit-compile and --strategy apply to every training stage; --set takes dotted keys of
    the file (e.g. finetune.training.epochs=5). Prints each run's headline figures as JSON.
    """
    from jsqa_tf.config import apply_overrides, load_yaml
    from jsqa_tf.training import train as run_train
    from jsqa_tf.training.pipeline import with_run_settings

    raw = with_run_settings(load_yaml(config_path), given(run_settings), config_path)
    raw = apply_overrides(raw, given({"run_dir": run_dir}) | assignments_of(assignments))
    with progress_bars() as progress:
        echo_json(run_train(raw, resume=resume, where=config_path, progress=progress))
