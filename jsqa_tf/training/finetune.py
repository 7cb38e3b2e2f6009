"""`finetune(config)`: JSQA's second stage, MOS regression on labelled speech, in a run folder.

Run folder (besides what every stage writes, see `jsqa_tf.training.run`):
    logs/                 train loss and RMSE; validation loss, RMSE, MAE, PCC, SRCC; the
                          learning rates; clips/s; a validation scatter plot each epoch
    model.keras           the epoch with the lowest validation RMSE (what `evaluate`,
                          `export` and `predict` load from this folder)
    model-last.keras      the last epoch
    summary.json          final figures

Validation scores every file of the val split whole (in windows past `window_seconds`), as
evaluation does, so "best by validation RMSE" means best at what the model is used for.
The batches of epoch e come from a seed derived from (seed, e): a resumed run reads what an
uninterrupted run reads.
"""

from __future__ import annotations

import logging
import math
import os

import keras
import numpy as np

from jsqa_tf import provenance
from jsqa_tf.config import FinetuneConfig
from jsqa_tf.errors import ModelError
from jsqa_tf.models.saving import LAST_MODEL_FILE, MODEL_FILE, load_keras_file
from jsqa_tf.training.run import (
    Run,
    TrainingError,
    demo_mos_shards,
    distributable,
    finished_run,
    record_encoder_numerics,
    resumed_encoder_numerics,
)

logger = logging.getLogger(__name__)


# --- model ---------------------------------------------------------------------------------------


def load_encoder(model_config, scratch_numerics: dict | None = None):
    """The encoder a fine-tuning config names: fresh ("scratch"; `scratch_numerics` replace
    the preset's decimation and BatchNorm epsilon), a pretraining run's (`encoder-best.keras`
    or `encoder.keras`), or a `.keras` file."""
    from jsqa_tf.models import WaveformEncoder

    path = encoder_file(model_config)
    if path is None:
        return WaveformEncoder.from_preset(model_config.preset, **(scratch_numerics or {}), name="encoder")
    return load_keras_file(path, WaveformEncoder, "an encoder")


def encoder_file(model_config) -> str | None:
    """The `.keras` file of the encoder a fine-tuning config names (None for "scratch")."""
    from jsqa_tf.training.pretrain import BEST_ENCODER_FILE, ENCODER_FILE

    source = model_config.encoder
    if source == "scratch":
        return None
    path = os.path.abspath(source)
    if os.path.isdir(path):
        wanted = BEST_ENCODER_FILE if model_config.encoder_checkpoint == "best" else ENCODER_FILE
        candidate = os.path.join(path, wanted)
        if not os.path.exists(candidate) and wanted == BEST_ENCODER_FILE:
            fallback = os.path.join(path, ENCODER_FILE)
            if os.path.exists(fallback):
                logger.warning("%s has no %s (no validation ran); using %s", path, wanted, ENCODER_FILE)
                candidate = fallback
        if not os.path.exists(candidate):
            raise ModelError(path, f"no {wanted}: not a finished pretraining run folder")
        path = candidate
    elif not os.path.exists(path):
        raise ModelError(path, "encoder not found (model.encoder: 'scratch', a pretraining run or a .keras)")
    return path


def build_regressor(config: FinetuneConfig, scratch_numerics: dict | None = None):
    """The `MOSRegressor` of a config (encoder loaded or fresh, head fresh), not compiled."""
    from jsqa_tf.models import MOSRegressor

    model = config.model
    return MOSRegressor(
        load_encoder(model, scratch_numerics),
        hidden_dims=model.hidden_dims,
        embedding=model.embedding,
        dropout=model.dropout,
        mos_range=tuple(model.mos_range),
        targets=tuple(model.targets),
        target_ranges=tuple(tuple(pair) for pair in model.target_ranges) or None,
        target_weights=tuple(model.target_weights) or None,
        heads=model.heads,
        name="mos_regressor",
    )


def compile_regressor(model, config: FinetuneConfig, *, frozen: bool) -> None:
    """Compiles for one phase: encoder frozen (head alone) or trained at its own rate."""
    from jsqa_tf.training.optimizer import ScaledAdam

    training = config.training
    model.encoder.trainable = not frozen
    encoder_rate = training.encoder_learning_rate
    optimizer = ScaledAdam(
        training.learning_rate,
        scaled_variables=() if frozen or encoder_rate is None else model.encoder.trainable_variables,
        scale=1.0 if encoder_rate is None else encoder_rate / training.learning_rate,
        decoupled_weight_decay=training.weight_decay,
    )
    model.compile(
        optimizer=optimizer,
        jit_compile="auto" if training.jit_compile is None else training.jit_compile,
    )
    model.optimizer.build(model.trainable_variables)  # before fit (and before a checkpoint loads)


def inference_copy(model):
    """An uncompiled copy of a trained `MOSRegressor` (what is saved for users)."""
    from jsqa_tf.models import MOSRegressor

    copy = MOSRegressor.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    copy.encoder.trainable = copy.trainable = True
    return copy


# --- validation ----------------------------------------------------------------------------------


def validate(model, files, *, window_seconds: float, batch_size: int, per_target: bool = False):
    """Scores labelled files whole (windows past `window_seconds`), as `evaluate` does:
    (mos, predicted) arrays; with `per_target`, {target: (labels, predicted)} (labels NaN
    where a file is not rated on the target)."""
    from jsqa_tf.evaluation import score_labelled, target_columns
    from jsqa_tf.ranges import model_targets

    results = score_labelled(model, files, window_seconds=window_seconds, batch_size=batch_size)
    if per_target:
        return target_columns(results, model_targets(model))
    return np.array([file.mos for file, _ in results]), np.array([predicted for _, predicted in results])


def target_figures(columns: dict, weights) -> dict:
    """Validation figures of a multi-target model: per target `val_<target>_rmse`, `_mae`,
    `_pcc`, `_srcc` over its rated files; `val_loss` the training loss's weighted mean of the
    targets' MSE; `val_rmse` etc. the MOS's (else the first target's), which checkpoints and
    early stopping follow."""
    from jsqa_tf import metrics
    from jsqa_tf.ranges import mos_column

    figures, weighted, total = {}, 0.0, 0.0
    for (target, (labels, predicted)), weight in zip(columns.items(), weights, strict=True):
        rated = np.isfinite(labels)
        if not rated.any():
            continue
        labels, predicted = labels[rated], predicted[rated]
        weighted += weight * float(np.mean((predicted - labels) ** 2))
        total += weight
        figures[f"val_{target}_rmse"] = metrics.rmse(labels, predicted)
        figures[f"val_{target}_mae"] = metrics.mae(labels, predicted)
        if len(labels) > 1:
            figures[f"val_{target}_pcc"] = metrics.pcc(labels, predicted)
            figures[f"val_{target}_srcc"] = metrics.srcc(labels, predicted)
    tracked = list(columns)[mos_column(columns)]
    figures["val_loss"] = weighted / total if total else float("nan")
    for name in ("rmse", "mae", "pcc", "srcc"):
        figures[f"val_{name}"] = figures.get(f"val_{tracked}_{name}", float("nan"))
    return figures


class _MOSValidation(keras.callbacks.Callback):
    """Each epoch: scores the val files whole, adds val_loss (MSE), val_rmse, val_mae,
    val_pcc, val_srcc and the learning rates to the logs (which the checkpoints, TensorBoard
    and history.csv then see), and writes the scatter plot to TensorBoard."""

    def __init__(self, files_fn, config: FinetuneConfig, log_dir: str):
        super().__init__()
        self.files_fn = files_fn
        self.config = config
        self.log_dir = log_dir
        self.writer = None

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        from jsqa_tf import metrics
        from jsqa_tf.plots import mos_scatter_png

        data, training = self.config.data, self.config.training
        scoring = dict(window_seconds=data.window_seconds, batch_size=data.batch_size)
        if self.model.is_multi_target:
            columns = validate(self.model, self.files_fn(), per_target=True, **scoring)
            figures = target_figures(columns, self.model.target_weights)
            panels = [
                (target, labels[np.isfinite(labels)], predicted[np.isfinite(labels)])
                for target, (labels, predicted) in columns.items()
            ]
        else:
            mos, predicted = validate(self.model, self.files_fn(), **scoring)
            figures = {
                "val_loss": float(np.mean((predicted - mos) ** 2)),
                "val_rmse": metrics.rmse(mos, predicted),
                "val_mae": metrics.mae(mos, predicted),
                "val_pcc": metrics.pcc(mos, predicted),
                "val_srcc": metrics.srcc(mos, predicted),
            }
            panels = [("val files", mos, predicted)]
        encoder_rate = 0.0 if not self.model.encoder.trainable else training.encoder_learning_rate
        figures["learning_rate"] = training.learning_rate
        figures["encoder_learning_rate"] = training.learning_rate if encoder_rate is None else encoder_rate
        if logs is not None:
            logs.update(figures)
        if self.writer is None:
            self.writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "validation_scatter"))
        with self.writer.as_default(step=epoch + 1):
            if len(panels) == 1:
                png = mos_scatter_png(panels, tuple(self.config.model.mos_range))
                tf.summary.image("val/scatter", tf.image.decode_png(png)[None])
            else:  # one image per target, each on its own range
                for (target, labels, predicted), scale in zip(panels, self.model.target_ranges, strict=True):
                    png = mos_scatter_png([(f"val {target}", labels, predicted)], scale)
                    tf.summary.image(f"val/scatter_{target}", tf.image.decode_png(png)[None])
        self.writer.flush()


# --- the run ---------------------------------------------------------------------------------------


def _data_dir(config: FinetuneConfig, progress=None) -> str:
    if config.data.demo_dir:
        return demo_mos_shards(config.data.demo_dir, progress)
    if not config.data.data_dir:
        raise TrainingError("data.data_dir must be set (prepared MOS shards; --data-dir)")
    return config.data.data_dir


def train_batches(config: FinetuneConfig, data_dir, selection, num_files, global_batch, first, last):
    """Exactly `steps` batches per epoch for epochs [first, last), seeded per epoch."""
    import tensorflow as tf

    from jsqa_tf.data.mos import mos_train_dataset

    data, training = config.data, config.training
    steps = steps_per_epoch(config, num_files, global_batch)
    crop = None if data.crop_seconds is None else int(round(data.crop_seconds * 16_000))

    @tf.autograph.experimental.do_not_convert  # plain Python that builds a pipeline
    def epoch_batches(epoch):
        seed = tf.constant(training.seed, tf.int64) * 7919 + epoch
        return mos_train_dataset(
            data_dir,
            data.train_split,
            batch_size=global_batch,
            seed=seed,
            num_files=num_files,
            selection=selection,
            crop_samples=crop,
            bucket_samples=int(round(data.length_bucket_seconds * 16_000)),
            targets=tuple(config.model.targets),
        ).take(steps)

    return distributable(tf.data.Dataset.range(first, last).flat_map(epoch_batches))


def check_memory(config: FinetuneConfig, data_dir: str, global_batch: int) -> None:
    """Refuses, before any model is built, crops (or whole files) and batches whose training
    batches would not fit in the memory available: a step's batch and the one prefetched
    behind it, at the cost per sample of a JND pair's crop (`jsqa_tf.data.pairs.PAIR_BYTES`)."""
    from jsqa_lite.memory import check_fits
    from jsqa_tf.data.pairs import PAIR_BYTES
    from jsqa_tf.data.pipeline import split_info

    data = config.data
    batch = f"data.batch_size {data.batch_size}"
    if data.crop_seconds is not None:
        seconds, settings, advice = data.crop_seconds, f"data.crop_seconds {data.crop_seconds:g}", ""
    else:
        info = split_info(data_dir, data.train_split)
        seconds = (info.get("file_seconds") or {}).get("max") or info["total_seconds"]
        settings = f"whole files (the longest {seconds:.0f} s)"
        advice = " (or set data.crop_seconds)"
    needed = 2 * global_batch * seconds * 16_000 * PAIR_BYTES
    check_fits(
        needed, f"{settings} with {batch}", f"lower data.batch_size{advice or ' or data.crop_seconds'}"
    )


def steps_per_epoch(config: FinetuneConfig, num_files: int, global_batch: int) -> int:
    """The configured steps, or one pass over the train files."""
    return config.training.steps_per_epoch or max(1, math.ceil(num_files / global_batch))


def finetune(
    config: FinetuneConfig, *, resume: bool = False, verbose: int = 1, callbacks=None, progress=None
) -> dict:
    """Runs (or resumes) MOS fine-tuning; returns the summary written to summary.json.

    `progress` (`jsqa_tf.progress`) shows the demo data being written and prepared, if any.

    Raises:
        TrainingError: NaN/Inf loss (the last good checkpoint is named), unusable run folder.
        ModelError: the encoder named by the config cannot be loaded.
        CorpusError: the data cannot be used (no MOS labels, no files selected).
    """
    from jsqa_tf.data.mos import Selection, count_labelled, labelled_files

    if (done := finished_run(config)) is not None:
        return done  # the same command again: nothing to do
    with Run(config, resume) as run:
        config, data, training = run.config, run.config.data, run.config.training
        data_dir = _data_dir(config, progress)
        train_selection = Selection(data.train_databases, data.train_fraction, data.subset_seed)
        val_selection = Selection(data.val_databases)
        targets = tuple(config.model.targets)
        num_train = count_labelled(data_dir, data.train_split, train_selection, targets)
        num_val = count_labelled(data_dir, data.val_split, val_selection, targets)
        global_batch = data.batch_size * run.strategy.num_replicas
        check_memory(config, data_dir, global_batch)
        steps = steps_per_epoch(config, num_train, global_batch)
        logger.info(
            "fine-tuning on %d files (%d steps an epoch), validating on %d", num_train, steps, num_val
        )

        freeze = min(training.freeze_encoder_epochs, training.epochs)
        with run.strategy.scope():
            scratch = config.model.encoder == "scratch"  # a loaded encoder keeps its own numerics
            model = build_regressor(config, resumed_encoder_numerics(run) if scratch else None)
            if scratch:
                record_encoder_numerics(run, model.encoder)
            model.rank_one_logs = training.strategy == "multi-worker"  # see DistributedStepMixin
            # The optimizer holds the variables of the checkpoint's phase (frozen or not).
            last_done = run.initial_epoch - 1
            compile_regressor(model, config, frozen=last_done < freeze if last_done >= 0 else freeze > 0)
            run.restore(model)

        def val_files():
            return labelled_files(data_dir, data.val_split, val_selection)

        stage_callbacks = [_MOSValidation(val_files, config, run.log_dir), *(callbacks or [])]
        fit_args = dict(
            steps_per_epoch=steps,
            clips_per_step=global_batch,
            monitor="val_rmse",
            patience=training.early_stopping_patience,
            callbacks=stage_callbacks,
            verbose=verbose,
        )
        going = True
        if run.initial_epoch < freeze:  # phase 1: the head alone
            batches = train_batches(
                config, data_dir, train_selection, num_train, global_batch, run.initial_epoch, freeze
            )
            going = run.fit(model, batches, epochs=freeze, initial_epoch=run.initial_epoch, **fit_args)
        start = max(run.initial_epoch, freeze)
        if going and start < training.epochs:  # phase 2: encoder and head
            if not model.encoder.trainable:  # unfreeze: a new optimizer over every variable
                with run.strategy.scope():
                    compile_regressor(model, config, frozen=False)
            batches = train_batches(
                config, data_dir, train_selection, num_train, global_batch, start, training.epochs
            )
            run.fit(model, batches, epochs=training.epochs, initial_epoch=start, **fit_args)

        state = run.state
        encoder = encoder_file(config.model)
        run.provenance = provenance.stage_record(
            "finetune", run.run_dir, {"mos": data_dir}, [provenance.read_keras(encoder)] if encoder else []
        )
        run.save_model(inference_copy(model), LAST_MODEL_FILE)
        best = inference_copy(model)  # uncompiled: the best epoch's optimizer may be another phase's
        if not run.load_best(best):
            raise TrainingError(f"{run.run_dir}: no epoch had a finite validation RMSE; no model to save")
        run.save_model(best, MODEL_FILE)
        summary = {
            "epochs_done": state["epoch"] + 1,
            "stopped_early_at_epoch": state.get("stopped_early_at_epoch"),
            "best_epoch": state.get("best_epoch"),
            "best_val_rmse": state.get("best_value"),
            "history": run.history,
            "num_train_files": num_train,
            "num_val_files": num_val,
            "steps_per_epoch": steps,
            "encoder": config.model.encoder,
            "targets": list(config.model.targets),
            "encoder_parameters": int(sum(int(np.prod(v.shape)) for v in best.encoder.trainable_weights)),
            "head_parameters": int(sum(int(np.prod(v.shape)) for v in best.head.trainable_weights)),
            "replicas": run.strategy.num_replicas,
            "backend": keras.backend.backend(),
            "run_dir": run.run_dir,
            "model": os.path.join(run.run_dir, MODEL_FILE),
        }
        run.write_summary(summary)
        return summary
