"""`pretrain(config)`: contrastive pretraining of the encoder on JND pairs, in a run folder.

Run folder:
    config.yaml                     the resolved configuration
    checkpoints/epoch-NNNN.weights.h5   model + optimizer state after each epoch (last few kept)
    checkpoints/best.weights.h5     the epoch with the lowest validation loss
    checkpoints/state.json          last completed epoch, best epoch and losses
    logs/                           TensorBoard: loss, pair accuracy, learning rate, clips/s,
                                    example pairs as audio, the |ΔSNR| histogram
    history.csv                     one row per epoch
    encoder.keras                   the trained encoder (load with safe_mode on)
    summary.json                    final figures

Resuming (`resume=True`) loads the last checkpoint (weights and optimizer state) and starts at
the next epoch; the pairs of epoch e come from a seed derived from (seed, e), so a resumed run
reads exactly what an uninterrupted run reads from that epoch on.
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

from jsqa_tf import atomic
from jsqa_tf.config import PretrainConfig, dump_yaml, from_dict, load_yaml, to_dict
from jsqa_tf.errors import JSQAError

logger = logging.getLogger(__name__)


class TrainingError(JSQAError):
    """Training cannot go on (a NaN loss, an unusable run folder)."""


# --- data ----------------------------------------------------------------------------------


def demo_shards(demo_dir: str) -> tuple[str, str]:
    """Writes the demo corpus and prepares clean and noise shards under `demo_dir` (once)."""
    from jsqa_tf.config import PrepareConfig
    from jsqa_tf.data.demo import make_demo_corpus
    from jsqa_tf.data.prepare import prepare

    paths = make_demo_corpus(os.path.join(demo_dir, "corpus"))
    clean, noise = os.path.join(demo_dir, "shards", "clean"), os.path.join(demo_dir, "shards", "noise")
    prepare(PrepareConfig(corpus="librispeech", source=paths["librispeech"], val_fraction=0.2), clean)
    noise_config = PrepareConfig(
        corpus="chime3", source=paths["chime3"], chime3_channels="all", val_fraction=0.25
    )
    prepare(noise_config, noise)
    return clean, noise


def _as_inputs(clean, noise, snr_db):
    return {"clean": clean, "noise": noise, "snr_db": snr_db}


def train_dataset(config: PretrainConfig, clean_dir, noise_dir, global_pairs, initial_epoch=0):
    """Exactly `steps_per_epoch` batches per epoch from `initial_epoch` on, seeded per epoch."""
    import tensorflow as tf

    from jsqa_tf.data.pairs import make_pair_dataset

    pairs = config.pair_config("train", clean_dir, noise_dir, global_pairs)
    steps = config.training.steps_per_epoch

    @tf.autograph.experimental.do_not_convert  # plain Python that builds a pipeline
    def epoch_pairs(epoch):
        seed = tf.constant(config.training.seed, tf.int64) * 7919 + epoch
        return make_pair_dataset(pairs, seed=seed).take(steps)

    dataset = tf.data.Dataset.range(initial_epoch, config.training.epochs).flat_map(epoch_pairs)
    return _distributable(dataset.map(_as_inputs))


def val_dataset(config: PretrainConfig, clean_dir, noise_dir, global_pairs):
    """The same `val_batches` batches of held-out speakers and noises every epoch."""

    from jsqa_tf.data.pairs import make_pair_dataset

    pairs = config.pair_config("val", clean_dir, noise_dir, global_pairs)
    dataset = make_pair_dataset(pairs, seed=config.training.seed + 10_007).take(config.data.val_batches)
    return _distributable(dataset.map(_as_inputs).cache())


def _distributable(dataset):
    """Shards by element (not by file) under a multi-worker strategy."""
    import tensorflow as tf

    options = tf.data.Options()
    # Our sources are zipped and flat-mapped streams, not plain file lists: shard by element.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


# --- model -------------------------------------------------------------------------------------


def build_pretrainer(config: PretrainConfig):
    """The `ContrastivePretrainer` of a config, compiled with Adam."""
    from jsqa_tf.models import ContrastivePretrainer, ProjectionHead, WaveformEncoder

    encoder = WaveformEncoder.from_preset(config.model.preset, **config.model.overrides(), name="encoder")
    head = (
        ProjectionHead(encoder.contrastive_dim, dropout=config.model.projection_dropout, name="projection")
        if config.model.projection
        else None
    )
    model = ContrastivePretrainer(
        encoder,
        head,
        temperature=config.training.temperature,
        prevent_clipping=config.training.prevent_clipping,
        name="pretrainer",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(config.training.learning_rate),
        jit_compile="auto" if config.training.jit_compile is None else config.training.jit_compile,
    )
    return model


def _build_state(model, config: PretrainConfig) -> None:
    """Creates every variable (model and optimizer) so that a checkpoint can be loaded."""
    import numpy as np

    samples = config.pair_config("train", "", "", 2).crop_samples
    model(
        {
            "clean": np.zeros((2, samples), "float32"),
            "noise": np.zeros((2, samples), "float32"),
            "snr_db": np.zeros((2, 2), "float32"),
        }
    )
    model.optimizer.build(model.trainable_variables)


def _strategy(name: str):
    """(scope, replicas, is_chief, task id) of a distribution strategy name.

    mirrored: every local GPU, or every logical CPU device where there is no GPU (tests);
    multi-worker: tf.distribute.MultiWorkerMirroredStrategy over the TF_CONFIG cluster.
    """
    if name == "default":
        if keras.backend.backend() != "tensorflow":
            return contextlib.nullcontext(), 1, True, 0
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
    return strategy.scope(), strategy.num_replicas_in_sync, is_chief, task_id


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


# --- callbacks ----------------------------------------------------------------------------------


class _Checkpoints(keras.callbacks.Callback):
    """Saves model + optimizer after every epoch with a finite loss; tracks the best."""

    def __init__(self, folder: str, keep: int, state: dict):
        super().__init__()
        self.folder, self.keep, self.state = folder, keep, state
        self.bad_step = None
        self.current_epoch = 0

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
        val_loss = logs.get("val_loss")
        improved = val_loss is not None and val_loss < self.state.get("best_val_loss", math.inf)
        if improved:
            best = os.path.join(self.folder, "best.weights.h5")
            with atomic.atomic_path(best, suffix=".weights.h5") as temp_path:
                shutil.copyfile(path, temp_path)
            self.state.update(best_val_loss=float(val_loss), best_epoch=epoch + 1)
        self.state.update(
            # the file name only: a run folder can be moved and still resumed
            epoch=epoch,
            last_checkpoint=os.path.basename(path),
            loss=float(logs["loss"]),
            rng_states=rng_states(self.model),
        )
        atomic.write_json(os.path.join(self.folder, "state.json"), self.state)
        for old in sorted(glob.glob(os.path.join(self.folder, "epoch-*.weights.h5")))[: -self.keep]:
            os.remove(old)


class _Summaries(keras.callbacks.Callback):
    """Clips per second into the epoch logs (Keras's TensorBoard callback writes them, with
    the loss, accuracy and learning rate), and example pairs as audio in TensorBoard."""

    def __init__(self, log_dir, example_batch, config: PretrainConfig, clips_per_step: int):
        super().__init__()
        self.log_dir = log_dir
        self.example_batch = example_batch
        self.config = config
        self.clips_per_step = clips_per_step
        self.writer = None
        self.started = self.last_batch_end = None

    def on_epoch_begin(self, epoch, logs=None):
        self.started = self.last_batch_end = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.last_batch_end = time.perf_counter()  # clips/s counts training, not validation

    def on_epoch_end(self, epoch, logs=None):
        seconds = self.last_batch_end - self.started
        if logs is not None:
            logs["clips_per_second"] = self.clips_per_step * self.config.training.steps_per_epoch / seconds
        if self.config.training.audio_examples and self.example_batch is not None:
            import tensorflow as tf

            from jsqa_tf.tensorboard import log_pairs

            if self.writer is None:
                self.writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "examples"))
            clean, noise, snr_db = self.example_batch
            log_pairs(
                self.writer,
                clean,
                noise,
                snr_db,
                step=epoch + 1,
                snr_window_db=self.config.data.snr_window_db,
                max_abs_delta_db=self.config.data.max_abs_delta_db,
                max_outputs=self.config.training.audio_examples,
            )


# --- the run -------------------------------------------------------------------------------------


def _flatten(data: dict, prefix: str = "") -> dict:
    """{"training": {"epochs": 3}} -> {"training.epochs": 3}."""
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _prepare_run_dir(config: PretrainConfig, resume: bool) -> dict:
    """Creates the run folder, or checks it for a resume; returns the saved training state."""
    run_dir = config.run_dir
    config_path = os.path.join(run_dir, "config.yaml")
    state_path = os.path.join(run_dir, "checkpoints", "state.json")
    if not resume:
        if os.path.exists(state_path):
            raise TrainingError(
                f"{run_dir}: holds a run already; pass --resume to continue it, or another --run-dir"
            )
        # A folder with a config but no finished epoch (a start that failed) is started over.
        os.makedirs(os.path.join(run_dir, "checkpoints"), exist_ok=True)
        dump_yaml(config, config_path)
        return {}
    if not os.path.exists(config_path):
        raise TrainingError(f"{run_dir}: no run to resume (no config.yaml)")
    saved = _flatten(to_dict(from_dict(PretrainConfig, load_yaml(config_path), where=config_path)))
    wanted = _flatten(to_dict(config))
    differences = sorted(key for key in wanted if key != "training.epochs" and saved.get(key) != wanted[key])
    if differences:
        raise TrainingError(
            f"{config_path}: the run was made with other settings ({', '.join(differences)}); "
            "only training.epochs may change on --resume"
        )
    dump_yaml(config, config_path)  # epochs may have grown
    if not os.path.exists(state_path):
        return {}
    with open(state_path, encoding="utf-8") as stream:
        return json.load(stream)


def pretrain(
    config: PretrainConfig,
    *,
    resume: bool = False,
    verbose: int = 1,
    callbacks: list | None = None,
) -> dict:
    """Runs (or resumes) contrastive pretraining; returns the summary written to summary.json.

    Raises:
        TrainingError: the loss became NaN/Inf (the last good checkpoint is kept and named),
            or the run folder does not fit the request.
    """
    import numpy as np
    import tensorflow as tf

    training = config.training
    # The strategy first: a multi-worker one must exist before TensorFlow runs any op.
    scope, replicas, is_chief, task_id = _strategy(training.strategy)
    run_dir = os.path.abspath(config.run_dir)
    if not is_chief:  # other workers keep their own (identical) files apart from the chief's
        run_dir = os.path.join(run_dir, f"worker-{task_id}")
    config = dataclasses.replace(config, run_dir=run_dir)
    state = _prepare_run_dir(config, resume)
    initial_epoch = state.get("epoch", -1) + 1
    if initial_epoch >= training.epochs:
        raise TrainingError(f"{config.run_dir}: all {training.epochs} epochs are done; raise training.epochs")

    keras.utils.set_random_seed(training.seed)
    if training.deterministic and keras.backend.backend() == "tensorflow":
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy(training.precision)
    try:
        clean_dir, noise_dir = config.data.clean_dir, config.data.noise_dir
        if not config.data.demo_dir and not (clean_dir and noise_dir):
            raise TrainingError("data.clean_dir and data.noise_dir must be set (--clean-dir, --noise-dir)")
        if config.data.demo_dir:
            clean_dir, noise_dir = demo_shards(config.data.demo_dir)
        global_pairs = config.data.pairs_per_batch * replicas
        with scope:
            model = build_pretrainer(config)
            _build_state(model, config)  # before fit: building from a distributed batch fails
            model.rank_one_logs = training.strategy == "multi-worker"  # see compute_metrics
            if initial_epoch > 0:
                checkpoint = os.path.join(config.run_dir, "checkpoints", state["last_checkpoint"])
                model.load_weights(checkpoint)
                restore_rng_states(model, state.get("rng_states", {}))
                logger.info("resumed from %s (epoch %d)", checkpoint, initial_epoch)
        train = train_dataset(config, clean_dir, noise_dir, global_pairs, initial_epoch)
        val = val_dataset(config, clean_dir, noise_dir, global_pairs)
        example = next(iter(val))
        example_batch = (example["clean"], example["noise"], example["snr_db"])

        checkpoints = _Checkpoints(
            os.path.join(config.run_dir, "checkpoints"), training.keep_checkpoints, state
        )
        log_dir = os.path.join(config.run_dir, "logs")
        all_callbacks = [
            _Summaries(log_dir, example_batch, config, 2 * global_pairs),
            checkpoints,
            keras.callbacks.TensorBoard(log_dir, update_freq="epoch", write_graph=False),
            keras.callbacks.CSVLogger(os.path.join(config.run_dir, "history.csv"), append=initial_epoch > 0),
            *(callbacks or []),
        ]
        # Keras draws its progress bar on stdout; stdout is for results: send it to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            history = model.fit(
                train,
                validation_data=val,
                epochs=training.epochs,
                initial_epoch=initial_epoch,
                steps_per_epoch=training.steps_per_epoch,
                # Stated, not discovered: with a dataset of unknown length, Keras 3.15 runs one
                # more, empty, validation step whose zeros dilute the validation figures.
                validation_steps=config.data.val_batches,
                callbacks=all_callbacks,
                shuffle=False,  # the pipeline shuffles
                verbose=verbose,
            )
        if checkpoints.bad_step is not None:
            epoch, step = checkpoints.bad_step
            last = state.get("last_checkpoint")
            last = last and os.path.join(config.run_dir, "checkpoints", last)
            kept = (
                f"the last good checkpoint is {last} (epoch {state['epoch'] + 1})"
                if last
                else "no epoch had finished, so there is no checkpoint"
            )
            raise TrainingError(
                f"the training loss became NaN/Inf at epoch {epoch}, step {step}; training stopped; "
                f"{kept}. Lower training.learning_rate, or check the data."
            )
        summary = {
            "epochs_done": state["epoch"] + 1,
            "loss": state["loss"],
            "history": {key: [float(v) for v in values] for key, values in history.history.items()},
            "best_epoch": state.get("best_epoch"),
            "best_val_loss": state.get("best_val_loss"),
            "encoder_parameters": int(sum(int(np.prod(v.shape)) for v in model.encoder.trainable_weights)),
            "replicas": replicas,
            "backend": keras.backend.backend(),
            "run_dir": config.run_dir,
        }
        with atomic.atomic_path(os.path.join(config.run_dir, "encoder.keras"), suffix=".keras") as temp:
            model.encoder.save(temp)
        atomic.write_json(os.path.join(config.run_dir, "summary.json"), summary)
        return summary
    finally:
        keras.mixed_precision.set_global_policy("float32")
