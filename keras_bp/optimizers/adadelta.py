"""Adadelta: steps sized by the ratio of recent step sizes to recent gradients."""

import keras
import tensorflow as tf

from keras_bp._validation import check_non_negative, check_unit_interval, if_number
from keras_bp.optimizers._common import accepts_keras2_lr, dense_gradient


@keras.saving.register_keras_serializable(package="keras_bp")
class Adadelta(keras.optimizers.Optimizer):
    """Adadelta (Zeiler, 2012): like RMSprop, but the numerator is a moving RMS
    of past steps, so the step has the units of the weight.

    For each weight `w` with gradient `g = dE/dw`, one step is:

    ```
    mean_square_gradient <- rho * mean_square_gradient + (1 - rho) * g^2
    delta = -sqrt(mean_square_delta + epsilon) * g
            / sqrt(mean_square_gradient + epsilon)
    mean_square_delta <- rho * mean_square_delta + (1 - rho) * delta^2
    w <- w + learning_rate * delta
    ```

    Both slots (one per weight, zeros at the start) are moving averages:
    `mean_square_gradient` of `g^2`, `mean_square_delta` of the unscaled steps
    `delta^2`. The paper has no learning rate (it is `1.0`); Keras adds one.

    Where epsilon sits: inside both square roots, as in the paper, Keras and
    PyTorch's `torch.optim.Adadelta`. It is not only a guard against division
    by zero: at the start `mean_square_delta` is 0, so `sqrt(epsilon)` sets the
    size of the first steps. PyTorch's defaults `eps=1e-6`, `lr=1.0` therefore
    take first steps about 3000x larger than Keras's `1e-7`, `0.001`
    (`sqrt(1e-6 / 1e-7)` ~ 3, times 1000).

    Args:
        learning_rate: A float >= 0, a
            `keras.optimizers.schedules.LearningRateSchedule`, or a callable
            taking no arguments and returning the rate. Defaults to `0.001`
            (the paper's form is `1.0`). `lr` is accepted as its Keras 2 name,
            with a `DeprecationWarning`.
        rho: Float in [0, 1), the decay of both moving averages. Defaults to
            `0.95`.
        epsilon: Float >= 0 added inside both square roots. Defaults to `1e-7`.
        weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema,
        ema_momentum, ema_overwrite_frequency, loss_scale_factor,
        gradient_accumulation_steps, name: As in `keras.optimizers.Optimizer`.
    """

    @accepts_keras2_lr
    def __init__(
        self,
        learning_rate=0.001,
        rho=0.95,
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
        if_number(check_unit_interval, "rho", rho, include_one=False)
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
        self.rho = rho
        self.epsilon = epsilon

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._mean_square_gradient, self._mean_square_delta = (
            self.add_optimizer_variables(
                variables, ["mean_square_gradient", "mean_square_delta"]
            )
        )

    def update_step(self, gradient, variable, learning_rate):
        g = dense_gradient(gradient, variable.dtype)
        learning_rate = tf.cast(learning_rate, variable.dtype)
        rho, epsilon = self.rho, self.epsilon
        i = self._get_variable_index(variable)
        mean_square_gradient = self._mean_square_gradient[i]
        mean_square_delta = self._mean_square_delta[i]

        self.assign(
            mean_square_gradient,
            rho * mean_square_gradient + (1 - rho) * tf.square(g),
        )
        delta = -(
            tf.sqrt(mean_square_delta + epsilon)
            * g
            / tf.sqrt(mean_square_gradient + epsilon)
        )
        self.assign(
            mean_square_delta,
            rho * mean_square_delta + (1 - rho) * tf.square(delta),
        )
        self.assign_add(variable, learning_rate * delta)

    def get_config(self):
        config = super().get_config()
        config.update({"rho": self.rho, "epsilon": self.epsilon})
        return config
