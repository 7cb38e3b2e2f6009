"""Distillation: a small student `MOSRegressor` learns a frozen teacher's MOS on unlabelled audio."""

from __future__ import annotations

import keras
from keras import ops

from jsqa_tf.mixing import mix_at_snr
from jsqa_tf.models.distributed_step import DistributedStepMixin


def mixtures(clean, noise, snr_db, noise_on, gain, num_valid_samples):
    """The training step's synthetic clips: `noise` added to `clean` at `snr_db` where
    `noise_on` is 1 (clean where 0), scaled by `gain`, peak-limited to `mixing.CLIP_LEVEL`,
    zero past each clip's valid length. keras.ops only.

    Args:
        clean, noise: float [batch, samples].
        snr_db, noise_on, gain: float [batch].
        num_valid_samples: int [batch].

    Returns:
        float32 [batch, samples].
    """
    frames = ops.arange(ops.shape(clean)[1], dtype="int32")
    valid = ops.cast(frames[None, :] < ops.cast(num_valid_samples, "int32")[:, None], "float32")
    # the gain goes on the speech: the noise's is computed from the speech's power, so the SNR holds
    clean = ops.cast(clean, "float32") * ops.cast(gain, "float32")[:, None] * valid
    noise = ops.cast(noise, "float32") * ops.cast(noise_on, "float32")[:, None] * valid
    return mix_at_snr(clean, noise, snr_db, num_valid_samples=num_valid_samples, prevent_clipping=True)


class Distiller(DistributedStepMixin, keras.Model):
    """Trains `student` to give `teacher`'s MOS (the teacher is frozen, run in inference mode).

    Input, a dict of one batch: "clean", "noise" float [m, samples], "snr_db", "noise_on",
    "gain" float [m] and "num_valid_samples" int [m] for m synthetic mixtures (mixed here, by
    `mixtures`); optionally "mos_waveform" float [k, samples] and "mos_num_valid_samples"
    int [k], crops of real MOS-corpus audio. Target (optional): the MOS labels [k] of those
    crops, NaN where a file has none.

    Output: {"student", "teacher"} MOS [m + k], "student_embedding", "teacher_embedding", and
    with an embedding loss "projected_embedding" (the student's, projected to the teacher's width).
    Of a multi-target teacher (mos, noi, col, dis, loud), "student" and "teacher" are
    [m + k, targets]: the student, built with the teacher's targets, learns every one.

    Loss (float32): mean squared student-teacher MOS difference (over every target); plus
    `embedding_loss_weight` × the squared error between a linear projection of the student's
    embedding and the teacher's, over the teacher embedding's variance (so 1 = predicting
    its batch mean); plus `label_loss_weight` × the MSE to the labels where there are labels.
    Tracked: the mean |student - teacher| ("teacher_mae").

    Not saved as a model: its checkpoints are weights, and what users load is the student.

    Args:
        student: a `MOSRegressor` (trained).
        teacher: a `MOSRegressor` (frozen here).
        embedding_loss_weight, label_loss_weight: as above.
    """

    def __init__(
        self, student, teacher, embedding_loss_weight: float = 0.0, label_loss_weight: float = 0.0, **kwargs
    ):
        super().__init__(**kwargs)
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self.projection = None
        if embedding_loss_weight > 0:
            self.projection = keras.layers.Dense(teacher.embedding_width, dtype="float32", name="projection")
            self.projection.build((None, student.embedding_width))
        self.embedding_loss_weight = embedding_loss_weight
        self.label_loss_weight = label_loss_weight
        self.built = True
        self.teacher_mae = keras.metrics.Mean(name="teacher_mae")

    def call(self, inputs, training=False):
        waveform = mixtures(
            inputs["clean"],
            inputs["noise"],
            inputs["snr_db"],
            inputs["noise_on"],
            inputs["gain"],
            inputs["num_valid_samples"],
        )
        num_valid = ops.cast(inputs["num_valid_samples"], "int32")
        if "mos_waveform" in inputs:
            waveform = ops.concatenate([waveform, ops.cast(inputs["mos_waveform"], "float32")], axis=0)
            num_valid = ops.concatenate(
                [num_valid, ops.cast(inputs["mos_num_valid_samples"], "int32")], axis=0
            )
        clips = {"waveform": waveform, "num_valid_samples": num_valid}
        student_embedding = self.student.embed(clips, training=training)
        student = self._scores(self.student.head(student_embedding, training=training))
        teacher_embedding = ops.stop_gradient(self.teacher.embed(clips, training=False))
        teacher = ops.stop_gradient(self._scores(self.teacher.head(teacher_embedding, training=False)))
        outputs = {
            "student": ops.cast(student, "float32"),
            "teacher": ops.cast(teacher, "float32"),
            "student_embedding": student_embedding,
            "teacher_embedding": ops.cast(teacher_embedding, "float32"),
        }
        if self.projection is not None:
            outputs["projected_embedding"] = self.projection(student_embedding)
        return outputs

    def _scores(self, head_output):
        """[batch] of a MOS model; [batch, targets] of a multi-target one."""
        return head_output if self.teacher.is_multi_target else ops.squeeze(head_output, -1)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        student, teacher = y_pred["student"], y_pred["teacher"]
        loss = ops.mean(ops.square(student - teacher))  # of several targets: over every one
        if self.teacher.is_multi_target:  # the labels are MOS labels: the MOS column learns them
            student = student[:, self.teacher.tracked_target]
        if self.projection is not None:
            target = y_pred["teacher_embedding"]
            projected = ops.cast(y_pred["projected_embedding"], "float32")
            variance = ops.mean(ops.var(target, axis=0)) + 1e-6
            loss = loss + self.embedding_loss_weight * ops.mean(ops.square(projected - target)) / variance
        if self.label_loss_weight > 0 and y is not None:
            labels = ops.cast(y, "float32")
            predicted = student[ops.shape(student)[0] - ops.shape(labels)[0] :]
            labelled = ops.cast(ops.isfinite(labels), "float32")
            error = ops.where(labelled > 0, predicted - labels, 0.0)
            label_loss = ops.sum(ops.square(error)) / ops.maximum(ops.sum(labelled), 1.0)
            loss = loss + self.label_loss_weight * label_loss
        return self.scaled(loss)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        self.teacher_mae.update_state(ops.abs(y_pred["student"] - y_pred["teacher"]))
        return self.logs(self.get_metrics_result())

    @property
    def metrics(self):
        return [*super().metrics, self.teacher_mae]
