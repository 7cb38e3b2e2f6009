"""What a model with a custom loss needs to train under every tf.distribute strategy."""

from __future__ import annotations

from keras import ops
from keras.src.losses.loss import scale_loss_for_distribution  # not exported; stable in 3.x


class DistributedStepMixin:
    """Mixed into a `keras.Model` whose `compute_loss` / `compute_metrics` are its own.

    - `scaled(loss)`: divides by the replicas in sync under a tf.distribute strategy, as
      Keras's own losses do (their gradients are summed); Keras unscales the logged value.
    - `rank_one_logs` (set by the training run under MultiWorkerMirroredStrategy): Keras 3.15
      averages a step's logs across workers with reduce(..., axis=0), which fails on scalars
      (tensorflow#72388); `logs(results)` gives them shape [1], which it averages to a scalar.
    - Keras 3.15's TensorFlow trainer builds a model inside a strategy from a first batch,
      reducing a distributed batch with strategy.reduce, which MultiWorkerMirroredStrategy
      cannot do for a dict; the training run builds model and optimizer before `fit`, so
      that build is skipped then.
    """

    rank_one_logs = False

    @staticmethod
    def scaled(loss):
        return scale_loss_for_distribution(loss)

    def logs(self, results: dict) -> dict:
        if self.rank_one_logs:
            return {name: ops.reshape(value, [1]) for name, value in results.items()}
        return results

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self.built and self.optimizer is not None and self.optimizer.built:
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
