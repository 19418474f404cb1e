"""RMSprop: divide each step by a moving root-mean-square of recent gradients."""

import keras
import tensorflow as tf

from keras_bp._validation import check_non_negative, check_unit_interval, if_number
from keras_bp.optimizers._common import accepts_keras2_lr, dense_gradient


@keras.saving.register_keras_serializable(package="keras_bp")
class RMSprop(keras.optimizers.Optimizer):
    """RMSprop (Hinton, 2012): scale each weight's step by the root of a moving
    average of its squared gradients.

    For each weight `w` with gradient `g = dE/dw`, one step is:

    ```
    v <- rho * v + (1 - rho) * g^2                      mean square of g
    m <- rho * m + (1 - rho) * g                        mean of g (centered only)
    step = learning_rate * g / sqrt(v + epsilon)        centered=False
    step = learning_rate * g / sqrt(v - m^2 + epsilon)  centered=True
    w <- w - step                                       momentum == 0
    velocity <- momentum * velocity + step              momentum > 0
    w <- w - velocity
    ```

    Slots, one per weight, zeros at the start: `v`; `m` only when `centered`
    (then `v - m^2` estimates the variance of `g`); `velocity` only when
    `momentum > 0`.

    Where epsilon sits: inside the square root, as in Keras. PyTorch's
    `torch.optim.RMSprop` uses `sqrt(v) + eps` and defaults to `alpha=0.99`
    (our `rho`) and `eps=1e-8`, so the same hyperparameters give different
    steps wherever `v` is small: `sqrt(1e-7)` = 3e-4 here against `1e-8` there.
    Match the floor, not the number, when porting.

    Args:
        learning_rate: A float >= 0, a
            `keras.optimizers.schedules.LearningRateSchedule`, or a callable
            taking no arguments and returning the rate. Defaults to `0.001`.
            `lr` is accepted as its Keras 2 name, with a `DeprecationWarning`.
        rho: Float in [0, 1), the decay of `v` and `m`. Defaults to `0.9`.
        momentum: Float in [0, 1], the decay of `velocity`. Defaults to `0.0`.
        epsilon: Float >= 0 added inside the square root. Defaults to `1e-7`.
        centered: Whether to divide by the variance (`v - m^2`) instead of the
            mean square `v`. Defaults to `False`.
        weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema,
        ema_momentum, ema_overwrite_frequency, loss_scale_factor,
        gradient_accumulation_steps, name: As in `keras.optimizers.Optimizer`.
    """

    @accepts_keras2_lr
    def __init__(
        self,
        learning_rate=0.001,
        rho=0.9,
        momentum=0.0,
        epsilon=1e-7,
        centered=False,
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
        if_number(check_unit_interval, "momentum", momentum)
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
        self.momentum = momentum
        self.epsilon = epsilon
        self.centered = centered

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        # Same creation order as Keras's RMSprop, so optimizer.variables line up.
        self._v = self.add_optimizer_variables(variables, "v")
        self._velocity = []
        if self.momentum > 0:
            self._velocity = self.add_optimizer_variables(variables, "velocity")
        self._m = []
        if self.centered:
            self._m = self.add_optimizer_variables(variables, "m")

    def update_step(self, gradient, variable, learning_rate):
        g = dense_gradient(gradient, variable.dtype)
        learning_rate = tf.cast(learning_rate, variable.dtype)
        rho, momentum, epsilon = self.rho, self.momentum, self.epsilon
        i = self._get_variable_index(variable)

        v = self._v[i]
        self.assign(v, rho * v + (1 - rho) * tf.square(g))
        if self.centered:
            m = self._m[i]
            self.assign(m, rho * m + (1 - rho) * g)
            step = learning_rate * g / tf.sqrt(v - tf.square(m) + epsilon)
        else:
            step = learning_rate * g / tf.sqrt(v + epsilon)

        if self.momentum > 0:
            velocity = self._velocity[i]
            self.assign(velocity, momentum * velocity + step)
            self.assign_sub(variable, velocity)
        else:
            self.assign_sub(variable, step)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "rho": self.rho,
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "centered": self.centered,
            }
        )
        return config
