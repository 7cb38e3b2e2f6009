"""`pretrain(config)`: contrastive pretraining of the encoder on JND pairs, in a run folder.

Run folder (besides what every stage writes, see `jsqa_tf.training.run`):
    logs/                    loss, pair accuracy, learning rate, clips/s, example pairs as
                             audio, the |ΔSNR| histogram
    encoder.keras            the encoder after the last epoch (load with safe_mode on)
    encoder-best.keras       the encoder of the epoch with the lowest validation loss
    summary.json             final figures

The pairs of epoch e come from a seed derived from (seed, e), so a resumed run reads exactly
what an uninterrupted run reads from that epoch on.
"""

from __future__ import annotations

import logging
import os

import keras

from jsqa_tf import provenance
from jsqa_tf.config import PretrainConfig
from jsqa_tf.training.run import (
    Run,
    TrainingError,
    demo_shards,
    distributable,
    finished_run,
    record_encoder_numerics,
    resumed_encoder_numerics,
)

logger = logging.getLogger(__name__)

ENCODER_FILE = "encoder.keras"
BEST_ENCODER_FILE = "encoder-best.keras"


# --- data ----------------------------------------------------------------------------------


def _as_inputs(*batch):
    """The step's inputs of a pair batch: (clean, noise, snr_db, num_valid_samples), or with
    pair families (clean_a, clean_b, noise, snr_db, num_valid_samples)."""
    if len(batch) == 5:
        clean, clean_b, noise, snr_db, num_valid_samples = batch
        return {
            "clean": clean,
            "clean_b": clean_b,
            "noise": noise,
            "snr_db": snr_db,
            "num_valid_samples": num_valid_samples,
        }
    clean, noise, snr_db, num_valid_samples = batch
    return {"clean": clean, "noise": noise, "snr_db": snr_db, "num_valid_samples": num_valid_samples}


def epoch_seed(seed: int, epoch):
    """The pair sampler's seed for one training epoch (an int64 scalar tensor): shuffles,
    crops, excerpts, SNRs and the utterance-to-noise pairing all change with the epoch, and a
    resumed run reads what an uninterrupted one reads."""
    import tensorflow as tf

    return tf.constant(seed, tf.int64) * 7919 + tf.cast(epoch, tf.int64)


def train_dataset(config: PretrainConfig, clean_dir, noise_dir, global_pairs, steps, initial_epoch=0):
    """Exactly `steps` batches per epoch from `initial_epoch` on, seeded per epoch."""
    import tensorflow as tf

    from jsqa_tf.data.pairs import make_pair_dataset

    pairs = config.pair_config("train", clean_dir, noise_dir, global_pairs)

    @tf.autograph.experimental.do_not_convert  # plain Python that builds a pipeline
    def epoch_pairs(epoch):
        return make_pair_dataset(pairs, seed=epoch_seed(config.training.seed, epoch)).take(steps)

    dataset = tf.data.Dataset.range(initial_epoch, config.training.epochs).flat_map(epoch_pairs)
    return distributable(dataset.map(_as_inputs))


def val_pairs(config: PretrainConfig, clean_dir, noise_dir, global_pairs):
    """The `val_batches` batches of held-out speakers and noises that validation uses."""
    from jsqa_tf.data.pairs import make_pair_dataset

    pairs = config.pair_config("val", clean_dir, noise_dir, global_pairs)
    return make_pair_dataset(pairs, seed=config.training.seed + 10_007).take(config.data.val_batches)


def val_dataset(config: PretrainConfig, clean_dir, noise_dir, global_pairs):
    """The same `val_batches` batches every epoch (validation reads `val_batches` steps from
    the start each epoch; `distributable` repeats them, so no worker of a multi-worker
    strategy runs dry and is handed an empty batch)."""
    dataset = val_pairs(config, clean_dir, noise_dir, global_pairs).map(_as_inputs)
    return distributable(dataset.cache())


def demo_codec_bank(config: PretrainConfig, clean_dir: str) -> None:
    """On the demo corpus, a codec family's bank (`data.pairs.codec_bank_dir`) that does not
    exist yet is rendered from the demo's clean shards, once (the default MP3 ladder)."""
    from jsqa_tf.data.codec_bank import render_codec_bank
    from jsqa_tf.data.manifest import MANIFEST_NAME

    bank_dir = config.data.pairs.codec_bank_dir
    if "codec" in config.data.pairs.families and not os.path.exists(os.path.join(bank_dir, MANIFEST_NAME)):
        logger.info("rendering the demo's codec bank into %s", bank_dir)
        render_codec_bank(clean_dir, bank_dir)


def check_data(config: PretrainConfig, clean_dir, noise_dir) -> None:
    """Checks both folders (splits, shard sizes, 16 kHz) before any training, and warns when
    the crops would be mostly padding."""
    from jsqa_tf.data.pairs import crop_warnings

    for split in ("train", "val"):
        for warning in crop_warnings(
            config.pair_config(split, clean_dir, noise_dir, config.data.pairs.pairs_per_batch)
        ):
            if split == "train":
                logger.warning(warning)


# --- model -------------------------------------------------------------------------------------


def build_pretrainer(config: PretrainConfig, encoder_numerics: dict | None = None):
    """The `ContrastivePretrainer` of a config, compiled with Adam; `encoder_numerics`
    (decimation, batch_norm_epsilon) replace the preset's, and the config's own overrides win."""
    from jsqa_tf.models import ContrastivePretrainer, ProjectionHead, WaveformEncoder

    arguments = {**(encoder_numerics or {}), **config.model.overrides()}
    encoder = WaveformEncoder.from_preset(config.model.preset, **arguments, name="encoder")
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

    samples = config.pair_config("train", "", "", config.data.pairs.pairs_per_batch).crop_samples
    inputs = {
        "clean": np.zeros((2, samples), "float32"),
        "noise": np.zeros((2, samples), "float32"),
        "snr_db": np.zeros((2, 2), "float32"),
        "num_valid_samples": np.full((2,), samples, "int32"),
    }
    if not config.data.pairs.additive_only:
        inputs["clean_b"] = inputs["clean"]
    model(inputs)
    model.optimizer.build(model.trainable_variables)


# --- callbacks ----------------------------------------------------------------------------------


class _PairExamples(keras.callbacks.Callback):
    """Example pairs as audio and the |ΔSNR| histogram in TensorBoard, each epoch."""

    def __init__(self, log_dir, example_batch, config: PretrainConfig):
        super().__init__()
        self.log_dir = log_dir
        self.example_batch = example_batch
        self.config = config
        self.writer = None

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        from jsqa_tf.tensorboard import log_pairs

        if self.writer is None:
            self.writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "examples"))
        inputs = _as_inputs(*self.example_batch)
        pairs = self.config.data.pairs
        additive = pairs.family_counts.get("additive", 0)
        snr_db = inputs["snr_db"]
        log_pairs(
            self.writer,
            inputs["clean"],
            inputs["noise"],
            snr_db,
            num_valid_samples=inputs["num_valid_samples"],
            clean_b=inputs.get("clean_b"),
            all_abs_delta_db=abs(snr_db[:additive, 0] - snr_db[:additive, 1]).numpy(),
            step=epoch + 1,
            snr_window_db=self.config.data.pairs.snr_window_db,
            max_abs_delta_db=self.config.data.pairs.max_abs_delta_db,
            snr_placement=self.config.data.pairs.snr_placement,
            snr_range_db=self.config.data.pairs.snr_range_db,
            max_outputs=self.config.training.audio_examples,
        )


# --- the run -------------------------------------------------------------------------------------


def pretrain(
    config: PretrainConfig,
    *,
    resume: bool = False,
    verbose: int = 1,
    callbacks: list | None = None,
    progress=None,
) -> dict:
    """Runs (or resumes) contrastive pretraining; returns the summary written to summary.json.

    `progress` (`jsqa_tf.progress`) shows the demo data being written and prepared, if any.

    Raises:
        TrainingError: the loss became NaN/Inf (the last good checkpoint is kept and named),
            or the run folder does not fit the request.
    """
    import numpy as np

    from jsqa_tf.data.pairs import check_pairs_memory

    if (done := finished_run(config)) is not None:
        return done  # the same command again: nothing to do
    with Run(config, resume) as run:
        config, training = run.config, run.config.training
        clean_dir, noise_dir = config.data.clean_dir, config.data.noise_dir
        if not config.data.demo_dir and not (clean_dir and noise_dir):
            raise TrainingError("data.clean_dir and data.noise_dir must be set (--clean-dir, --noise-dir)")
        if config.data.demo_dir:
            clean_dir, noise_dir = demo_shards(config.data.demo_dir, progress)
            demo_codec_bank(config, clean_dir)
        check_data(config, clean_dir, noise_dir)
        global_pairs = config.data.pairs.pairs_per_batch * run.strategy.num_replicas
        # A step's batch and the one prefetched behind it, before any model is built.
        check_pairs_memory(
            config.pair_config("train", clean_dir, noise_dir, global_pairs),
            batches=2,
            names=("data.pairs.crop_seconds", "data.pairs.pairs_per_batch"),
        )
        with run.strategy.scope():
            model = build_pretrainer(config, resumed_encoder_numerics(run))
            record_encoder_numerics(run, model.encoder)
            _build_state(model, config)  # before fit: building from a distributed batch fails
            model.rank_one_logs = training.strategy == "multi-worker"  # see compute_metrics
            run.restore(model)
        steps = config.epoch_steps(run.strategy.num_replicas)
        train = train_dataset(config, clean_dir, noise_dir, global_pairs, steps, run.initial_epoch)
        val = val_dataset(config, clean_dir, noise_dir, global_pairs)
        stage_callbacks = list(callbacks or [])
        if training.audio_examples:  # from a pipeline of its own: `val`'s cache is never read halfway
            example_batch = next(iter(val_pairs(config, clean_dir, noise_dir, global_pairs)))
            stage_callbacks.append(_PairExamples(run.log_dir, example_batch, config))
        run.fit(
            model,
            train,
            epochs=training.epochs,
            initial_epoch=run.initial_epoch,
            steps_per_epoch=steps,
            clips_per_step=2 * global_pairs,
            monitor="val_loss",
            validation_data=val,
            validation_steps=config.data.val_batches,
            callbacks=stage_callbacks,
            verbose=verbose,
        )
        state = run.state
        summary = {
            "epochs_done": state["epoch"] + 1,
            "loss": state["loss"],
            "history": run.history,
            "best_epoch": state.get("best_epoch"),
            "best_val_loss": state.get("best_value"),
            "steps_per_epoch": steps,
            "epoch_audio_hours": steps * config.step_audio_seconds(run.strategy.num_replicas) / 3600,
            "encoder_parameters": int(sum(int(np.prod(v.shape)) for v in model.encoder.trainable_weights)),
            "replicas": run.strategy.num_replicas,
            "backend": keras.backend.backend(),
            "run_dir": run.run_dir,
        }
        run.provenance = provenance.stage_record(
            "pretrain", run.run_dir, {"clean": clean_dir, "noise": noise_dir}
        )
        run.save_model(model.encoder, ENCODER_FILE)
        if run.load_best(model):  # the last epoch's encoder is saved: the best one beside it
            run.save_model(model.encoder, BEST_ENCODER_FILE)
        run.write_summary(summary)
        return summary
