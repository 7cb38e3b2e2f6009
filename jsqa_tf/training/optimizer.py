"""Adam with a learning-rate multiplier for one group of variables (the encoder's lower rate)."""

from __future__ import annotations

import keras


class ScaledAdam(keras.optimizers.Adam):
    """Adam whose step for `scaled_variables` is multiplied by `scale`, with decoupled
    (AdamW-style) weight decay of every kernel (variables of rank >= 2, not biases or
    BatchNorm parameters), scaled by the same per-variable learning rate.

    Keras 3 has no per-group learning rates, and scaling gradients would not do under Adam
    (its step does not depend on the gradient's scale): the rate itself is scaled, inside
    `update_step`, which both the TensorFlow and the JAX trainers call per variable.

    Args:
        learning_rate: the base rate (the head's).
        scaled_variables: the variables stepped at `learning_rate * scale` (the encoder's).
        scale: the multiplier.
        decoupled_weight_decay: decay per step, times the variable's learning rate.
    """

    def __init__(
        self,
        learning_rate: float = 1e-3,
        scaled_variables=(),
        scale: float = 1.0,
        decoupled_weight_decay: float = 0.0,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self._scaled_ids = {id(variable) for variable in scaled_variables}
        self.scale = float(scale)
        self.decoupled_weight_decay = float(decoupled_weight_decay)
        self._multipliers: list[float] = []
        self._decays: list[bool] = []

    def build(self, variables):
        super().build(variables)
        self._multipliers = [self.scale if id(v) in self._scaled_ids else 1.0 for v in variables]
        self._decays = [len(v.shape) >= 2 for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        multiplier = self._multipliers[index]
        if multiplier != 1.0:
            learning_rate = learning_rate * multiplier
        if self.decoupled_weight_decay and self._decays[index]:
            decay = keras.ops.cast(learning_rate, variable.dtype) * self.decoupled_weight_decay
            self.assign_sub(variable, variable * decay)
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config.update(scale=self.scale, decoupled_weight_decay=self.decoupled_weight_decay)
        return config
