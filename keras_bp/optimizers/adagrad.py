"""Adagrad: a per-weight learning rate that shrinks with the gradients seen so far."""

import keras
import tensorflow as tf

from keras_bp._validation import check_non_negative, if_number
from keras_bp.optimizers._common import accepts_keras2_lr, dense_gradient


@keras.saving.register_keras_serializable(package="keras_bp")
class Adagrad(keras.optimizers.Optimizer):
    """Adagrad (Duchi et al., 2011): divide each step by the root of the summed
    squared gradients, so often-updated weights take smaller steps.

    For each weight `w` with gradient `g = dE/dw`, one step is:

    ```
    accumulator <- accumulator + g^2
    w <- w - learning_rate * g / sqrt(accumulator + epsilon)
    ```

    `accumulator` (one slot per weight) starts at `initial_accumulator_value`.

    Where epsilon sits: inside the square root, as in Keras. PyTorch's
    `torch.optim.Adagrad` puts it outside, `sqrt(accumulator) + eps`, and starts
    the accumulator at 0, so for the same numbers the first steps differ (with
    `accumulator` near 0, `sqrt(epsilon)` = 3e-4 is a much larger floor than
    `epsilon` = 1e-7). To match PyTorch, set `initial_accumulator_value` and
    `epsilon` so both floors are negligible against the gradients.

    Args:
        learning_rate: A float >= 0, a
            `keras.optimizers.schedules.LearningRateSchedule`, or a callable
            taking no arguments and returning the rate. Defaults to `0.001`
            (Adagrad often wants more; the paper's form is `1.0`). `lr` is
            accepted as its Keras 2 name, with a `DeprecationWarning`.
        initial_accumulator_value: Float >= 0, the starting value of
            `accumulator`. Defaults to `0.1`.
        epsilon: Float >= 0 added to `accumulator` inside the square root.
            Defaults to `1e-7`.
        weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema,
        ema_momentum, ema_overwrite_frequency, loss_scale_factor,
        gradient_accumulation_steps, name: As in `keras.optimizers.Optimizer`.
    """

    @accepts_keras2_lr
    def __init__(
        self,
        learning_rate=0.001,
        initial_accumulator_value=0.1,
        epsilon=1e-7,
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name=None,
        **kwargs,
    ):
        if_number(check_non_negative, "learning_rate", learning_rate)
        if_number(check_non_negative, "initial_accumulator_value", initial_accumulator_value)
        if_number(check_non_negative, "epsilon", epsilon)
        super().__init__(
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
            use_ema=use_ema,
            ema_momentum=ema_momentum,
            ema_overwrite_frequency=ema_overwrite_frequency,
            loss_scale_factor=loss_scale_factor,
            gradient_accumulation_steps=gradient_accumulation_steps,
            name=name,
            **kwargs,
        )
        self.initial_accumulator_value = initial_accumulator_value
        self.epsilon = epsilon

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._accumulator = self.add_optimizer_variables(
            variables,
            "accumulator",
            initializer=keras.initializers.Constant(self.initial_accumulator_value),
        )

    def update_step(self, gradient, variable, learning_rate):
        g = dense_gradient(gradient, variable.dtype)
        learning_rate = tf.cast(learning_rate, variable.dtype)
        epsilon = self.epsilon
        accumulator = self._accumulator[self._get_variable_index(variable)]
        self.assign_add(accumulator, tf.square(g))
        self.assign_sub(variable, learning_rate * g / tf.sqrt(accumulator + epsilon))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon,
            }
        )
        return config
