"""Training stages, each in its own module, all on one run-folder implementation (`run`).

pretrain    contrastive pretraining of the encoder on JND pairs
finetune    MOS fine-tuning of encoder + head on labelled speech
distill     a small student learns a fine-tuned teacher's MOS on unlabelled audio
pipeline    `jsqa-tf train`: pretraining -> fine-tuning -> evaluation (-> distillation ->
            evaluation of the student -> export), one or more runs
"""

from jsqa_tf.training.distill import distill
from jsqa_tf.training.finetune import build_regressor, finetune
from jsqa_tf.training.pipeline import train
from jsqa_tf.training.pretrain import build_pretrainer, pretrain
from jsqa_tf.training.run import Run, TrainingError, demo_mos_shards, demo_shards

__all__ = [
    "Run",
    "TrainingError",
    "build_pretrainer",
    "build_regressor",
    "demo_mos_shards",
    "demo_shards",
    "distill",
    "finetune",
    "pretrain",
    "train",
]
