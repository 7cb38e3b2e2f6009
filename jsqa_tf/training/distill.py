"""`distill(config)`: a small student learns a fine-tuned teacher's MOS, in a run folder.

The training audio needs no labels: synthetic mixtures from the pretraining sources (the
pair sampler's clean crops and noise excerpts, mixed in the step over a wide SNR range,
clean to very noisy, at random levels) and crops of the MOS corpus's train audio. The frozen
teacher scores every clip inside the step, so the student sees far more audio than the
labelled set holds. Each epoch ends with teacher and student scoring the MOS corpus's val
files whole (windows past `window_seconds`), as `evaluate` and `predict` do.

Run folder (besides what every stage writes, see `jsqa_tf.training.run`):
    logs/               train loss and student-teacher MAE; validation student-teacher MAE,
                        RMSE, PCC, max |difference|, the student's RMSE/PCC to the labels
                        (labelled val files); the learning rate; clips/s; a student-vs-
                        teacher scatter plot each epoch
    model.keras         the student of the epoch with the lowest validation student-teacher
                        MAE: a `MOSRegressor`, so `evaluate`, `export` and `predict` take the
                        run folder as they take a fine-tuning run's
    model-last.keras    the student of the last epoch
    summary.json        final figures, including the untrained student's gap

Checkpoints hold the teacher's weights too (the whole `Distiller`): a resume needs nothing
but the run folder.
"""

from __future__ import annotations

import logging
import os

import keras
import numpy as np

from jsqa_tf import provenance
from jsqa_tf.config import DistillConfig
from jsqa_tf.errors import ConfigError
from jsqa_tf.models.saving import LAST_MODEL_FILE, MODEL_FILE, find_model_file, load_mos_regressor
from jsqa_tf.training.pretrain import epoch_seed
from jsqa_tf.training.run import (
    Run,
    TrainingError,
    demo_mos_shards,
    demo_shards,
    distributable,
    finished_run,
)

logger = logging.getLogger(__name__)

UNTRAINED_GAP = "untrained_val_teacher_mae"


# --- data ----------------------------------------------------------------------------------------


def _draws(config: DistillConfig, seed, index, count: int) -> dict:
    """Each mixture's SNR, noise-or-clean and gain, from stateless RNG keyed on (seed, batch)."""
    import tensorflow as tf

    data = config.data
    key = tf.stack([tf.cast(seed, tf.int64) + 3, tf.cast(index, tf.int64)])
    uniform = tf.random.stateless_uniform([count, 3], seed=key)
    (snr_low, snr_high), (gain_low, gain_high) = data.snr_range_db, data.gain_db_range
    gain_db = gain_low + (gain_high - gain_low) * uniform[:, 2]
    return {
        "snr_db": snr_low + (snr_high - snr_low) * uniform[:, 0],
        "noise_on": tf.cast(uniform[:, 1] >= data.clean_share, tf.float32),
        "gain": tf.pow(10.0, gain_db / 20.0),
    }


def epoch_batches(config: DistillConfig, sources: dict, global_mixtures: int, global_mos: int, seed):
    """One epoch's endless batches (inputs, labels) for the `Distiller`; graph ops only."""
    import tensorflow as tf

    from jsqa_tf.data.mos import mos_train_dataset
    from jsqa_tf.data.pairs import make_pair_dataset

    pairs = make_pair_dataset(
        config.pair_config(sources["clean"], sources["noise"], global_mixtures), seed=seed
    )

    def to_inputs(index, pair):
        clean, noise, _, num_valid = pair  # the JND pair's own SNRs are not used
        return {
            "clean": clean,
            "noise": noise,
            "num_valid_samples": num_valid,
            **_draws(config, seed, index, global_mixtures),
        }

    batches = pairs.enumerate().map(to_inputs, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if not global_mos:
        return batches
    crops = mos_train_dataset(
        sources["mos"],
        config.data.train_split,
        batch_size=global_mos,
        seed=seed + 5,
        num_files=0,  # only read with a selection; distillation uses the whole split
        crop_samples=int(round(config.data.crop_seconds * 16_000)),
    )

    def join(inputs, crop):
        (waveform, labels) = crop
        inputs = {
            **inputs,
            "mos_waveform": waveform["waveform"],
            "mos_num_valid_samples": waveform["num_valid_samples"],
        }
        return inputs, labels

    return tf.data.Dataset.zip(batches, crops).map(join)


def train_batches(config: DistillConfig, sources, global_mixtures, global_mos, steps, initial_epoch):
    """Exactly `steps` batches per epoch from `initial_epoch` on, seeded per epoch."""
    import tensorflow as tf

    @tf.autograph.experimental.do_not_convert  # plain Python that builds a pipeline
    def one_epoch(epoch):
        seed = epoch_seed(config.training.seed, epoch)
        return epoch_batches(config, sources, global_mixtures, global_mos, seed).take(steps)

    dataset = tf.data.Dataset.range(initial_epoch, config.training.epochs).flat_map(one_epoch)
    return distributable(dataset)


def data_sources(config: DistillConfig, progress=None) -> dict:
    """{"clean", "noise", "mos"} prepared folders (the demo's when `data.demo_dir` is set,
    written and prepared with `progress`)."""
    data = config.data
    if data.demo_dir:
        clean, noise = demo_shards(data.demo_dir, progress)
        return {"clean": clean, "noise": noise, "mos": demo_mos_shards(data.demo_dir, progress)}
    missing = [name for name in ("clean_dir", "noise_dir", "mos_dir") if not getattr(data, name)]
    if missing:
        raise TrainingError(
            f"data.{', data.'.join(missing)} must be set (prepared shards: clean speech, noise, "
            "and the MOS corpus whose val split is scored each epoch)"
        )
    return {"clean": data.clean_dir, "noise": data.noise_dir, "mos": data.mos_dir}


# --- model ---------------------------------------------------------------------------------------


def load_teacher(config: DistillConfig):
    """The teacher `MOSRegressor` (a run folder or a .keras file), frozen, rebuilt under the
    run's precision policy (a saved model keeps the float32 it was saved with; under
    mixed_bfloat16 the teacher's forward pass then costs what the student's does per MAC)."""
    from jsqa_tf.models import MOSRegressor

    if not config.model.teacher:
        raise ConfigError("model.teacher must name the fine-tuned teacher (a run folder or a .keras file)")
    saved = load_mos_regressor(config.model.teacher)
    teacher = MOSRegressor.from_config(saved.get_config())
    teacher.set_weights(saved.get_weights())
    teacher.trainable = False
    return teacher


def build_student(config: DistillConfig, teacher):
    """A fresh student `MOSRegressor` on the configured encoder preset (the teacher's MOS range)."""
    from jsqa_tf.models import MOSRegressor, encoder_from_preset

    try:
        encoder = encoder_from_preset(config.model.preset, name="encoder")
    except ValueError as error:
        raise ConfigError(f"model.preset: {error}") from None
    multi = {}
    if teacher.is_multi_target:  # the student learns every target of its teacher
        multi = dict(targets=teacher.targets, target_ranges=teacher.target_ranges, heads=teacher.heads)
    return MOSRegressor(
        encoder, hidden_dims=config.model.hidden_dims, mos_range=teacher.mos_range, name="student", **multi
    )


def build_distiller(config: DistillConfig, teacher, total_steps: int):
    """The `Distiller` (student fresh, teacher frozen), compiled with Adam (cosine decay)."""
    from jsqa_tf.models import Distiller

    training = config.training
    model = Distiller(
        build_student(config, teacher),
        teacher,
        embedding_loss_weight=config.model.embedding_loss_weight,
        label_loss_weight=training.label_loss_weight,
        name="distiller",
    )
    rate = training.learning_rate
    if training.decay:
        rate = keras.optimizers.schedules.CosineDecay(training.learning_rate, decay_steps=total_steps)
    model.compile(
        optimizer=keras.optimizers.Adam(rate),
        jit_compile="auto" if training.jit_compile is None else training.jit_compile,
    )
    model.optimizer.build(model.trainable_variables)  # before fit (and before a checkpoint loads)
    return model


def student_copy(model):
    """An uncompiled copy of the distiller's student (what is saved for users)."""
    from jsqa_tf.models import MOSRegressor

    copy = MOSRegressor.from_config(model.student.get_config())
    copy.set_weights(model.student.get_weights())
    return copy


# --- validation ----------------------------------------------------------------------------------


def gap_figures(teacher: np.ndarray, student: np.ndarray, mos: np.ndarray, targets=("mos",)) -> dict:
    """Student against teacher (MAE, RMSE, PCC, max |difference|) and, over the labelled
    files, student against the labels (RMSE, PCC). Of a multi-target model (scores
    [files, targets]) the gap figures span every target, `val_<target>_teacher_mae` is each
    one's, and the labels are compared with the MOS column."""
    from jsqa_tf import metrics
    from jsqa_tf.ranges import mos_column

    figures = {}
    if np.ndim(teacher) == 2:
        for index, target in enumerate(targets):
            figures[f"val_{target}_teacher_mae"] = float(
                np.mean(np.abs(student[:, index] - teacher[:, index]))
            )
        gap = gap_figures(teacher.reshape(-1), student.reshape(-1), np.full(teacher.size, np.nan))
        column = mos_column(targets)
        labels = gap_figures(teacher[:, column], student[:, column], mos)
        return figures | gap | {key: labels[key] for key in ("val_rmse", "val_pcc") if key in labels}

    difference = student - teacher
    figures = {
        "val_teacher_mae": float(np.mean(np.abs(difference))),
        "val_teacher_rmse": float(np.sqrt(np.mean(difference**2))),
        "val_teacher_pcc": metrics.pcc(teacher, student),
        "val_teacher_max": float(np.max(np.abs(difference))),
    }
    labelled = np.isfinite(mos)
    if labelled.sum() >= 2:
        figures["val_rmse"] = metrics.rmse(mos[labelled], student[labelled])
        figures["val_pcc"] = metrics.pcc(mos[labelled], student[labelled])
    return figures


class _StudentValidation(keras.callbacks.Callback):
    """Each epoch: the student scores the val files whole; its gap to the teacher's scores
    (computed once) and to the labels go into the logs (and so to the checkpoints,
    TensorBoard and history.csv); a student-vs-teacher scatter plot to TensorBoard."""

    def __init__(self, files_fn, config: DistillConfig, log_dir: str, state: dict, fresh: bool):
        super().__init__()
        self.files_fn, self.config, self.log_dir = files_fn, config, log_dir
        self.state, self.fresh = state, fresh
        self.teacher_scores = self.mos = None
        self.writer = None

    def _mos(self, scores):
        """The MOS (else first) column of a multi-target model's scores; a MOS model's as they are."""
        return scores if np.ndim(scores) == 1 else scores[:, self.model.teacher.tracked_target]

    def _score(self, model):
        from jsqa_tf.training.finetune import validate

        data = self.config.data
        return validate(
            model, self.files_fn(), window_seconds=data.window_seconds, batch_size=data.val_batch_size
        )

    def on_train_begin(self, logs=None):
        from jsqa_tf import metrics

        self.mos, self.teacher_scores = self._score(self.model.teacher)
        labelled = np.isfinite(self.mos)
        teacher_mos = self._mos(self.teacher_scores)
        if labelled.sum() >= 2:
            self.state["teacher_val_rmse"] = metrics.rmse(self.mos[labelled], teacher_mos[labelled])
            self.state["teacher_val_pcc"] = metrics.pcc(self.mos[labelled], teacher_mos[labelled])
        if self.fresh:  # the gap distillation starts from
            _, student = self._score(self.model.student)
            self.state[UNTRAINED_GAP] = float(np.mean(np.abs(student - self.teacher_scores)))
            logger.info("untrained student: mean |student - teacher| %.3f MOS", self.state[UNTRAINED_GAP])

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        from jsqa_tf.plots import mos_scatter_png

        _, student = self._score(self.model.student)
        figures = gap_figures(self.teacher_scores, student, self.mos, self.model.teacher.targets)
        rate = self.model.optimizer.learning_rate
        figures["learning_rate"] = float(keras.ops.convert_to_numpy(rate))
        if logs is not None:
            logs.update(figures)
        if self.writer is None:
            self.writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "validation_scatter"))
        mos_range = tuple(self.model.teacher.mos_range)
        png = mos_scatter_png(
            [("student vs teacher", self._mos(self.teacher_scores), self._mos(student))], mos_range
        )
        with self.writer.as_default(step=epoch + 1):
            tf.summary.image("val/student_vs_teacher", tf.image.decode_png(png)[None])
        self.writer.flush()


# --- the run -------------------------------------------------------------------------------------


def _history_row(run_dir: str, epoch: int | None) -> dict:
    """The validation figures of one (1-based) epoch, from history.csv (which spans resumes)."""
    import csv

    path = os.path.join(run_dir, "history.csv")
    if epoch is None or not os.path.exists(path):
        return {}
    with open(path, newline="", encoding="utf-8") as stream:
        for row in csv.DictReader(stream):
            if int(row["epoch"]) == epoch - 1:
                return {key: float(value) for key, value in row.items() if key.startswith("val_") and value}
    return {}


def distill(
    config: DistillConfig, *, resume: bool = False, verbose: int = 1, callbacks=None, progress=None
) -> dict:
    """Runs (or resumes) distillation; returns the summary written to summary.json.

    `progress` (`jsqa_tf.progress`) shows the demo data being written and prepared, if any.

    Raises:
        TrainingError: NaN/Inf loss, unusable run folder, data folders not set.
        ModelError: the teacher cannot be loaded.
        ConfigError: no teacher named, unknown student preset.
        CorpusError: the data cannot be used.
    """
    from jsqa_tf.data.mos import Selection, labelled_files
    from jsqa_tf.data.pairs import check_pairs_memory

    if (done := finished_run(config)) is not None:
        return done  # the same command again: nothing to do
    teacher_path = config.model.teacher
    if not teacher_path:
        raise ConfigError("model.teacher must name the fine-tuned teacher (a run folder or a .keras file)")
    find_model_file(teacher_path)  # a missing teacher is named before any folder is made
    with Run(config, resume) as run:
        config, data, training = run.config, run.config.data, run.config.training
        sources = data_sources(config, progress)
        global_mixtures = data.mixtures_per_batch * run.strategy.num_replicas
        global_mos = data.mos_clips_per_batch * run.strategy.num_replicas
        # A step's mixtures and MOS crops, and the step prefetched behind it, before any model.
        check_pairs_memory(
            config.pair_config(sources["clean"], sources["noise"], global_mixtures + global_mos),
            batches=2,
            names=("data.crop_seconds", "data.mixtures_per_batch"),
        )
        total_steps = training.epochs * training.steps_per_epoch
        with run.strategy.scope():
            model = build_distiller(config, load_teacher(config), total_steps)
            model.rank_one_logs = training.strategy == "multi-worker"  # see DistributedStepMixin
            run.restore(model)
        val_selection = Selection(data.val_databases)

        def val_files():
            return labelled_files(sources["mos"], data.val_split, val_selection)

        validation = _StudentValidation(
            val_files, config, run.log_dir, run.state, fresh=run.initial_epoch == 0
        )
        batches = train_batches(
            config, sources, global_mixtures, global_mos, training.steps_per_epoch, run.initial_epoch
        )
        logger.info(
            "distilling %s into a %s student: %d steps an epoch of %d mixtures + %d MOS-corpus crops",
            teacher_path,
            config.model.preset,
            training.steps_per_epoch,
            global_mixtures,
            global_mos,
        )
        run.fit(
            model,
            batches,
            epochs=training.epochs,
            initial_epoch=run.initial_epoch,
            steps_per_epoch=training.steps_per_epoch,
            clips_per_step=global_mixtures + global_mos,
            monitor="val_teacher_mae",
            patience=training.early_stopping_patience,
            callbacks=[validation, *(callbacks or [])],
            verbose=verbose,
        )
        state = run.state
        run.provenance = provenance.stage_record(
            "distill", run.run_dir, sources, [provenance.read_keras(find_model_file(teacher_path))]
        )
        run.save_model(student_copy(model), LAST_MODEL_FILE)
        if not run.load_best(model):
            raise TrainingError(f"{run.run_dir}: no epoch had a finite validation gap; no student to save")
        best = student_copy(model)
        run.save_model(best, MODEL_FILE)
        best_epoch = state.get("best_epoch")
        encoder = best.encoder
        summary = {
            "epochs_done": state["epoch"] + 1,
            "stopped_early_at_epoch": state.get("stopped_early_at_epoch"),
            "best_epoch": best_epoch,
            "best_val_teacher_mae": state.get("best_value"),
            UNTRAINED_GAP: state.get(UNTRAINED_GAP),
            "at_best_epoch": _history_row(run.run_dir, best_epoch),
            "teacher": os.path.abspath(teacher_path),
            "teacher_val_rmse": state.get("teacher_val_rmse"),
            "teacher_val_pcc": state.get("teacher_val_pcc"),
            "student_preset": config.model.preset,
            "student_parameters": int(best.count_params()),
            "student_gmac_per_second": (
                encoder.macs_per_second() / 1e9 if hasattr(encoder, "macs_per_second") else None
            ),
            "teacher_parameters": int(model.teacher.count_params()),
            "history": run.history,
            "steps_per_epoch": training.steps_per_epoch,
            "replicas": run.strategy.num_replicas,
            "backend": keras.backend.backend(),
            "run_dir": run.run_dir,
            "model": os.path.join(run.run_dir, MODEL_FILE),
        }
        run.write_summary(summary)
        return summary
