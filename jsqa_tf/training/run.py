"""The run folder every training stage plugs into: one implementation, used by each stage.

A stage (pretraining, fine-tuning, distillation) builds its model and datasets; `Run` does
the rest:
    config.yaml                          the resolved configuration (checked when rerun)
    checkpoints/epoch-NNNN.weights.h5    model + optimizer after each epoch (last few kept)
    checkpoints/best.weights.h5          the epoch with the best monitored validation figure
    checkpoints/state.json               last finished epoch, best epoch, RNG states
    logs/                                TensorBoard (Keras's callback + the stage's own)
    history.csv                          one row per epoch

One resume rule for every stage (`finished_run`): the same command again continues an
unfinished run and reports a finished one; other settings are refused, the setting named
(only training.epochs may grow). Continuing loads the last checkpoint (weights, optimizer
state and dropout RNG state) and starts at the next epoch; stages seed their data per epoch,
so a resumed run reads exactly what an uninterrupted one reads. A NaN/Inf loss stops
training at once, names the last good checkpoint, and never saves the diverged model.
Distribution strategies (mirrored, multi-worker) are chosen here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import logging
import math
import os
import shutil
import sys
import time

import keras

from jsqa_tf import atomic, provenance
from jsqa_tf.config import dump_yaml, from_dict, load_yaml, to_dict
from jsqa_tf.errors import JSQAError
from jsqa_tf.progress import Progress, demo_callbacks, prepare_callbacks

logger = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
STATE_FILE = "state.json"
BEST_WEIGHTS = "best.weights.h5"


class TrainingError(JSQAError):
    """Training cannot go on (a NaN loss, an unusable run folder)."""


# --- data ---------------------------------------------------------------------------------------


def _demo_corpus(demo_dir: str, progress) -> dict:
    from jsqa_tf.data.demo import make_demo_corpus

    return make_demo_corpus(os.path.join(demo_dir, "corpus"), **demo_callbacks(progress))


def demo_shards(demo_dir: str, progress: Progress | None = None) -> tuple[str, str]:
    """Writes the demo corpus and prepares clean and noise shards under `demo_dir` (once),
    reporting each step to `progress` (`jsqa_tf.progress`)."""
    from jsqa_tf.config import PrepareConfig
    from jsqa_tf.data.prepare import prepare

    paths = _demo_corpus(demo_dir, progress)
    clean, noise = os.path.join(demo_dir, "shards", "clean"), os.path.join(demo_dir, "shards", "noise")
    prepare(
        PrepareConfig(corpus="librispeech", source=paths["librispeech"], val_fraction=0.2),
        clean,
        **prepare_callbacks(progress, "preparing the demo speech: {num_shards} shard(s)"),
    )
    noise_config = PrepareConfig(
        corpus="chime3", source=paths["chime3"], chime3_channels="all", val_fraction=0.25
    )
    noise_progress = prepare_callbacks(progress, "preparing the demo noise: {num_shards} shard(s)")
    prepare(noise_config, noise, **noise_progress)
    return clean, noise


def demo_mos_shards(demo_dir: str, progress: Progress | None = None) -> str:
    """Writes the demo corpus and prepares its NISQA part under `demo_dir` (once): train is
    NISQA_TRAIN_SIM, val is NISQA_VAL_SIM (other speakers)."""
    from jsqa_tf.config import PrepareConfig
    from jsqa_tf.data.prepare import prepare

    paths = _demo_corpus(demo_dir, progress)
    mos = os.path.join(demo_dir, "shards", "mos")
    prepare(
        PrepareConfig(corpus="nisqa", source=paths["nisqa"], val_databases=("NISQA_VAL_SIM",)),
        mos,
        **prepare_callbacks(progress, "preparing the demo MOS data: {num_shards} shard(s)"),
    )
    return mos


def distributable(dataset):
    """Repeats without end, shards by element (not by file) under a multi-worker strategy,
    and prefetches.

    Stages state their steps (steps_per_epoch, validation_steps), so the repetition is never
    read; it makes the dataset infinite, which turns off tf.distribute's partial-batch
    handling: with a finite dataset, a multi-worker strategy hands a worker that has run out
    an empty batch (`Incompatible shapes: [0,...]`) to keep the workers in step.
    """
    import tensorflow as tf

    options = tf.data.Options()
    # Our sources are zipped and flat-mapped streams, not plain file lists: shard by element.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.repeat().with_options(options).prefetch(tf.data.AUTOTUNE)


# --- strategies and random state -----------------------------------------------------------------


@dataclasses.dataclass
class Strategy:
    """A distribution strategy as a stage needs it."""

    strategy: object  # a tf.distribute.Strategy, or None (JAX backend, one device)
    num_replicas: int
    is_chief: bool
    task_id: int

    def scope(self) -> contextlib.AbstractContextManager:
        """A new context in which variables are created for this strategy."""
        return contextlib.nullcontext() if self.strategy is None else self.strategy.scope()


def make_strategy(name: str) -> Strategy:
    """default: one device; mirrored: every local GPU, or every logical CPU device where there
    is no GPU (tests); multi-worker: tf.distribute.MultiWorkerMirroredStrategy over TF_CONFIG."""
    if name == "default":
        if keras.backend.backend() != "tensorflow":
            return Strategy(None, 1, True, 0)
        import tensorflow as tf

        strategy = tf.distribute.get_strategy()
    elif keras.backend.backend() != "tensorflow":
        raise TrainingError(f"strategy {name!r} needs KERAS_BACKEND=tensorflow")
    elif name == "mirrored":
        import tensorflow as tf

        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        strategy = tf.distribute.MirroredStrategy([device.name for device in devices])
    else:
        import tensorflow as tf

        if "TF_CONFIG" not in os.environ:
            raise TrainingError("strategy 'multi-worker' needs TF_CONFIG (cluster and task)")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    task_id = getattr(resolver, "task_id", None) or 0
    is_chief = task_type in (None, "chief") or (task_type == "worker" and task_id == 0)
    return Strategy(strategy, strategy.num_replicas_in_sync, is_chief, task_id)


def _seed_generators(model, prefix=""):
    """Every layer's random-number generator (dropout), by layer path."""
    found = {}
    for layer in getattr(model, "layers", []):
        path = f"{prefix}{layer.name}"
        generator = getattr(layer, "seed_generator", None)
        if generator is not None:
            found[path] = generator
        found.update(_seed_generators(layer, prefix=f"{path}/"))
    return found


def rng_states(model) -> dict:
    """The dropout RNG states: `save_weights` leaves them out, and an exact resume needs them."""
    return {
        path: keras.ops.convert_to_numpy(g.state.value).tolist()
        for path, g in _seed_generators(model).items()
    }


def restore_rng_states(model, states: dict) -> None:
    for path, generator in _seed_generators(model).items():
        if path in states:
            generator.state.assign(keras.ops.convert_to_tensor(states[path], dtype="int64"))


# --- the encoder's numerics across a resume -------------------------------------------------------

ENCODER_NUMERICS = "encoder_numerics"
# What every `WaveformEncoder` preset computed before the numerics were recorded: Keras's
# BatchNorm epsilon and stride-2 decimation (the `jsqa` and `cdpam` presets now use CDPAM's).
LEGACY_ENCODER_NUMERICS = {"decimation": "stride", "batch_norm_epsilon": 1e-3}


def resumed_encoder_numerics(run) -> dict:
    """The decimation and BatchNorm epsilon a resumed run's fresh encoder must be built with:
    those recorded when it started, or, for a run started before they were recorded, the ones
    its checkpoints were trained with (`LEGACY_ENCODER_NUMERICS`). Empty on a fresh start (the
    preset decides). Settings the config gives explicitly are applied over these."""
    if run.initial_epoch == 0:
        return {}
    recorded = run.state.get(ENCODER_NUMERICS)
    if recorded is None:
        logger.warning(
            "%s: started before the encoder's numerics were recorded; resuming with those it was "
            "trained with (decimation %s, BatchNorm epsilon %g)",
            run.run_dir,
            LEGACY_ENCODER_NUMERICS["decimation"],
            LEGACY_ENCODER_NUMERICS["batch_norm_epsilon"],
        )
        return dict(LEGACY_ENCODER_NUMERICS)
    return dict(recorded)


def record_encoder_numerics(run, encoder) -> None:
    """Keeps `encoder`'s numerics in the training state, written with every checkpoint."""
    run.state[ENCODER_NUMERICS] = {
        "decimation": encoder.decimation,
        "batch_norm_epsilon": encoder.batch_norm_epsilon,
    }


# --- callbacks ------------------------------------------------------------------------------------


class Checkpoints(keras.callbacks.Callback):
    """Saves model + optimizer after every epoch with a finite loss; tracks the best epoch by
    `monitor` (lower is better) and stops after `patience` epochs without improvement."""

    def __init__(self, folder: str, keep: int, state: dict, monitor: str, patience: int | None = None):
        super().__init__()
        self.folder, self.keep, self.state = folder, keep, state
        self.monitor, self.patience = monitor, patience
        self.bad_step = None
        self.current_epoch = 0
        self.stopped_early = False

    def on_epoch_begin(self, epoch, logs=None):
        self.current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.bad_step = (self.current_epoch + 1, batch + 1)  # both 1-based, for people
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.bad_step is not None or not math.isfinite(float(logs.get("loss", math.nan))):
            return  # never save a diverged model
        path = os.path.join(self.folder, f"epoch-{epoch + 1:04d}.weights.h5")
        with atomic.atomic_path(path, suffix=".weights.h5") as temp_path:
            self.model.save_weights(temp_path)
        value = logs.get(self.monitor)
        improved = value is not None and value < self.state.get("best_value", math.inf)
        if improved:
            with atomic.atomic_path(os.path.join(self.folder, BEST_WEIGHTS), suffix=".weights.h5") as temp:
                shutil.copyfile(path, temp)
            self.state.update(best_value=float(value), best_epoch=epoch + 1, monitor=self.monitor)
        self.state.update(
            # the file name only: a run folder can be moved and still resumed
            epoch=epoch,
            last_checkpoint=os.path.basename(path),
            loss=float(logs["loss"]),
            rng_states=rng_states(self.model),
        )
        best_epoch = self.state.get("best_epoch")
        if self.patience is not None and best_epoch is not None and epoch + 1 - best_epoch >= self.patience:
            self.state["stopped_early_at_epoch"] = epoch + 1
            self.stopped_early = True
            self.model.stop_training = True
        atomic.write_json(os.path.join(self.folder, STATE_FILE), self.state)
        for old in sorted(glob.glob(os.path.join(self.folder, "epoch-*.weights.h5")))[: -self.keep]:
            os.remove(old)


class ClipRate(keras.callbacks.Callback):
    """Clips per second of training (validation excluded) into the epoch logs, which Keras's
    TensorBoard callback and the CSV logger then write."""

    def __init__(self, clips_per_step: int):
        super().__init__()
        self.clips_per_step = clips_per_step
        self.steps = 0
        self.started = self.last_batch_end = None

    def on_epoch_begin(self, epoch, logs=None):
        self.started = self.last_batch_end = time.perf_counter()
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.last_batch_end = time.perf_counter()
        self.steps += 1

    def on_epoch_end(self, epoch, logs=None):
        seconds = self.last_batch_end - self.started
        if logs is not None and seconds > 0:
            logs["clips_per_second"] = self.clips_per_step * self.steps / seconds


# --- the run ----------------------------------------------------------------------------------------


def flatten(data: dict, prefix: str = "") -> dict:
    """{"training": {"epochs": 3}} -> {"training.epochs": 3}."""
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# Settings a resumed run may change: how long it runs, and where it lies (a folder can be moved).
RESUMABLE_CHANGES = ("run_dir", "training.epochs")


def setting_differences(config) -> list[tuple[str, object, object]]:
    """(dotted key, value in the run folder's config.yaml, value in `config`) for each setting
    that differs, `run_dir` aside."""
    config_path = os.path.join(config.run_dir, "config.yaml")
    saved = flatten(to_dict(from_dict(type(config), load_yaml(config_path), where=config_path)))
    wanted = flatten(to_dict(config))
    # A run folder moved with its siblings (a pipeline's pretrain/ beside its finetune/) names
    # them where they were: a path under the old parent equals the same path under the new one.
    moved_from = os.path.dirname(os.path.abspath(saved.get("run_dir") or config.run_dir))
    moved_to = os.path.dirname(os.path.abspath(config.run_dir))

    def same(old, new) -> bool:
        if old == new:
            return True
        if isinstance(old, str) and isinstance(new, str) and old.startswith(moved_from + os.sep):
            return os.path.join(moved_to, os.path.relpath(old, moved_from)) == new
        return False

    keys = sorted(set(saved) | set(wanted))
    return [
        (key, saved.get(key), wanted.get(key))
        for key in keys
        if key != "run_dir" and not same(saved.get(key), wanted.get(key))
    ]


def config_differences(config) -> list[str]:
    """The settings (dotted keys) in which `config` differs from its run folder's config.yaml."""
    return [key for key, _, _ in setting_differences(config)]


def other_settings_message(where: str, differences: list[tuple[str, object, object]], new_run: str) -> str:
    """One line: which setting differs from the run's (and how), and what to do."""
    key, saved, wanted = differences[0]
    more = f" (and {len(differences) - 1} more setting(s))" if len(differences) > 1 else ""
    return (
        f"{where}: holds a run made with other settings: {key} is {saved!r} there, {wanted!r} here{more}; "
        f"rerun with the run's settings to continue it, or {new_run} for a new run"
    )


def finished_run(config, summary_file: str = "summary.json", *, quiet: bool = False) -> dict | None:
    """The one resume rule of every stage, before any work: rerunning the same command
    continues an unfinished run (returns None: `Run` continues it) and reports a finished one
    (returns its summary: nothing to do); a folder that holds a run of other settings is
    refused, naming the setting. Only `training.epochs` may change: raised, it continues a
    finished run; and the folder may have moved.

    Raises:
        TrainingError: the folder holds a run of other settings, or cannot be read.
    """
    from jsqa_tf.errors import ConfigError

    run_dir = config.run_dir
    config_path = os.path.join(run_dir, "config.yaml")
    summary_path = os.path.join(run_dir, summary_file)
    started = os.path.exists(os.path.join(run_dir, CHECKPOINTS, STATE_FILE)) or os.path.exists(summary_path)
    if not started:
        return None  # nothing trained yet: a start (a start that failed is started over)
    if not os.path.exists(config_path):
        raise TrainingError(f"{run_dir}: holds checkpoints but no config.yaml; choose another --run-dir")
    try:
        differences = setting_differences(config)
    except ConfigError as error:
        raise TrainingError(f"{config_path}: cannot be read ({error}); choose another --run-dir") from None
    changed = [difference for difference in differences if difference[0] not in RESUMABLE_CHANGES]
    if changed:
        raise TrainingError(other_settings_message(run_dir, changed, "choose another --run-dir"))
    if not os.path.exists(summary_path):
        return None  # unfinished: continue it
    epochs = dict((key, saved) for key, saved, _ in differences).get("training.epochs")
    if epochs is not None and config.training.epochs > epochs:
        return None  # finished, and more epochs asked for: continue it
    try:
        with open(summary_path, encoding="utf-8") as stream:
            summary = json.load(stream)
    except (OSError, json.JSONDecodeError) as error:
        raise TrainingError(f"{summary_path}: cannot be read ({error}); choose another --run-dir") from None
    if not quiet:
        logger.warning(
            "%s holds a finished run of these settings (%s epochs); nothing to do. Raise training.epochs "
            "(--epochs) to train it further, or choose another --run-dir for a new run",
            run_dir,
            summary.get("epochs_done", "all"),
        )
    return summary


def _open_run_dir(config, resume: bool) -> dict:
    """Creates the run folder, or opens it to continue the run it holds (the settings were
    checked by `finished_run`); returns the saved training state."""
    run_dir = config.run_dir
    config_path = os.path.join(run_dir, "config.yaml")
    state_path = os.path.join(run_dir, CHECKPOINTS, STATE_FILE)
    atomic.check_writable(config_path)
    if not os.path.exists(state_path):
        if resume and not os.path.exists(config_path):
            raise TrainingError(
                f"{run_dir}: no run to continue (no config.yaml); without --resume one starts"
            )
        # A folder with a config but no finished epoch (a start that failed) is started over.
        os.makedirs(os.path.join(run_dir, CHECKPOINTS), exist_ok=True)
        dump_yaml(config, config_path)
        return {}
    if finished_run(config, quiet=True) is not None:  # a caller that did not ask first
        raise TrainingError(f"{run_dir}: all {config.training.epochs} epochs are done; raise training.epochs")
    dump_yaml(config, config_path)  # epochs may have grown
    try:
        with open(state_path, encoding="utf-8") as stream:
            return json.load(stream)
    except (OSError, json.JSONDecodeError) as error:
        raise TrainingError(f"{state_path}: unreadable training state ({error}); cannot continue the run")


class Run:
    """One stage's run: folder, strategy, seeds and precision, and `fit` with checkpoints.

    Use as a context manager (it resets the global precision policy on exit):

        with Run(config, resume) as run:
            with run.strategy.scope():
                model = build(...)
                run.restore(model)          # on --resume: weights, optimizer, RNG states
            run.fit(model, train, ...)

    Args:
        config: a stage config with `run_dir` and a `training` section holding `epochs`,
            `strategy`, `seed`, `deterministic`, `precision`, `keep_checkpoints`.
        resume: continue the run in `config.run_dir`.
    """

    def __init__(self, config, resume: bool = False):
        training = config.training
        # The strategy first: a multi-worker one must exist before TensorFlow runs any op.
        self.strategy = make_strategy(training.strategy)
        run_dir = os.path.abspath(config.run_dir)
        if not self.strategy.is_chief:  # other workers keep their own (identical) files apart
            run_dir = os.path.join(run_dir, f"worker-{self.strategy.task_id}")
        self.config = dataclasses.replace(config, run_dir=run_dir)
        self.run_dir = run_dir
        self.state = _open_run_dir(self.config, resume)
        self.initial_epoch = self.state.get("epoch", -1) + 1
        self.provenance: dict | None = None  # the stage sets it (`jsqa_tf.provenance`) before it saves
        if self.initial_epoch >= training.epochs:
            raise TrainingError(f"{run_dir}: all {training.epochs} epochs are done; raise training.epochs")
        self.checkpoint_dir = os.path.join(run_dir, CHECKPOINTS)
        self.log_dir = os.path.join(run_dir, "logs")
        self.history: dict[str, list[float]] = {}
        self._checkpoints = None

    def __enter__(self):
        import tensorflow as tf

        training = self.config.training
        keras.utils.set_random_seed(training.seed)
        if training.deterministic and keras.backend.backend() == "tensorflow":
            tf.config.experimental.enable_op_determinism()
        keras.mixed_precision.set_global_policy(training.precision)
        return self

    def __exit__(self, *exc_info):
        keras.mixed_precision.set_global_policy("float32")
        return False

    def checkpoint_path(self, name: str) -> str:
        return os.path.join(self.checkpoint_dir, name)

    def restore(self, model) -> None:
        """On a resume: the last checkpoint's weights, optimizer state and RNG states."""
        if self.initial_epoch == 0:
            return
        checkpoint = self.checkpoint_path(self.state["last_checkpoint"])
        try:
            model.load_weights(checkpoint)
        except Exception as error:  # h5py raises OSError / KeyError / ValueError on bad files
            raise TrainingError(f"{checkpoint}: cannot be loaded ({error}); cannot resume from it")
        restore_rng_states(model, self.state.get("rng_states", {}))
        logger.info("resumed from %s (epoch %d)", checkpoint, self.initial_epoch)

    def fit(
        self,
        model,
        train,
        *,
        epochs: int,
        initial_epoch: int,
        steps_per_epoch: int,
        clips_per_step: int,
        monitor: str,
        validation_data=None,
        validation_steps: int | None = None,
        patience: int | None = None,
        callbacks: list | None = None,
        verbose: int = 1,
    ) -> bool:
        """Trains epochs [initial_epoch, epochs) with checkpoints, TensorBoard and the CSV
        history; may be called again for later epochs (e.g. after unfreezing).

        `callbacks` run first at each epoch's end, so that figures they add to the logs (a
        validation pass of their own) reach the checkpoints, TensorBoard and the CSV.

        Returns:
            False when training stopped early (patience), True otherwise.

        Raises:
            TrainingError: the loss became NaN/Inf.
        """
        if self._checkpoints is None:
            self._checkpoints = Checkpoints(
                self.checkpoint_dir, self.config.training.keep_checkpoints, self.state, monitor, patience
            )
        all_callbacks = [
            *(callbacks or []),
            ClipRate(clips_per_step),
            self._checkpoints,
            keras.callbacks.TensorBoard(self.log_dir, update_freq="epoch", write_graph=False),
            keras.callbacks.CSVLogger(os.path.join(self.run_dir, "history.csv"), append=initial_epoch > 0),
        ]
        # Keras draws its progress bar on stdout; stdout is for results: send it to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            history = model.fit(
                train,
                validation_data=validation_data,
                epochs=epochs,
                initial_epoch=initial_epoch,
                steps_per_epoch=steps_per_epoch,
                # Stated, not discovered: with a dataset of unknown length, Keras 3.15 runs one
                # more, empty, validation step whose zeros dilute the validation figures.
                validation_steps=validation_steps,
                callbacks=all_callbacks,
                shuffle=False,  # the pipelines shuffle
                verbose=verbose,
            )
        for key, values in history.history.items():
            self.history.setdefault(key, []).extend(float(v) for v in values)
        self._raise_if_diverged()
        return not self._checkpoints.stopped_early

    def _raise_if_diverged(self) -> None:
        if self._checkpoints.bad_step is None:
            return
        epoch, step = self._checkpoints.bad_step
        last = self.state.get("last_checkpoint")
        last = last and self.checkpoint_path(last)
        kept = (
            f"the last good checkpoint is {last} (epoch {self.state['epoch'] + 1})"
            if last
            else "no epoch had finished, so there is no checkpoint"
        )
        raise TrainingError(
            f"the training loss became NaN/Inf at epoch {epoch}, step {step}; training stopped; "
            f"{kept}. Lower training.learning_rate, or check the data."
        )

    def load_best(self, model) -> bool:
        """Loads the best epoch's weights into `model`; False when no epoch was monitored."""
        best = self.checkpoint_path(BEST_WEIGHTS)
        if not os.path.exists(best):
            return False
        model.load_weights(best)
        return True

    def save_model(self, model, name: str) -> str:
        """Saves a Keras model into the run folder atomically, with the stage's provenance
        record inside (`jsqa_tf.provenance`) when it is set; returns its path."""
        path = os.path.join(self.run_dir, name)
        with atomic.atomic_path(path, suffix=".keras") as temp:
            model.save(temp)
            if self.provenance:
                provenance.embed(temp, self.provenance)
        return path

    def write_summary(self, summary: dict) -> None:
        if self.provenance:  # before summary.json, which marks the run finished
            provenance.write_run_record(self.run_dir, self.provenance)
        atomic.write_json(os.path.join(self.run_dir, "summary.json"), summary)
