"""Stochastic gradient descent, plain, with momentum, or with Nesterov momentum."""

import keras
import tensorflow as tf

from keras_bp._validation import check_non_negative, check_unit_interval, if_number
from keras_bp.optimizers._common import accepts_keras2_lr, dense_gradient


@keras.saving.register_keras_serializable(package="keras_bp")
class SGD(keras.optimizers.Optimizer):
    """Gradient descent (with momentum), the update of plain backpropagation.

    For each weight `w` with gradient `g = dE/dw`, one step is:

    ```
    momentum == 0:   w <- w - learning_rate * g

    momentum > 0:    velocity <- momentum * velocity - learning_rate * g
                     w <- w + velocity

    nesterov=True:   velocity <- momentum * velocity - learning_rate * g
                     w <- w + momentum * velocity - learning_rate * g
    ```

    `velocity` (one slot per weight, zeros at the start, created only when
    `momentum > 0`) is a running sum of past steps; it keeps moving along a
    direction the gradient keeps pointing to and damps directions it flips
    between. Nesterov's form takes the step from where momentum is about to
    carry the weight.

    Matching other frameworks: PyTorch's `torch.optim.SGD` keeps
    `b <- momentum * b + g` and steps `w <- w - lr * b`; with a constant learning
    rate (and `dampening=0`) that is the same trajectory, since
    `velocity = -lr * b`. When the learning rate changes during training the two
    differ: here the old velocity keeps the learning rate it was taken with.

    Args:
        learning_rate: A float >= 0, a
            `keras.optimizers.schedules.LearningRateSchedule`, or a callable
            taking no arguments and returning the rate. Defaults to `0.01`.
            `lr` is accepted as its Keras 2 name, with a `DeprecationWarning`.
        momentum: Float in [0, 1], the decay of `velocity`. `0` is plain
            gradient descent. Defaults to `0.0`.
        nesterov: Whether to use Nesterov momentum. Defaults to `False`.
        weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema,
        ema_momentum, ema_overwrite_frequency, loss_scale_factor,
        gradient_accumulation_steps, name: As in `keras.optimizers.Optimizer`.
    """

    @accepts_keras2_lr
    def __init__(
        self,
        learning_rate=0.01,
        momentum=0.0,
        nesterov=False,
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
        # Keras's words lead (see keras_bp._validation).
        if_number(check_unit_interval, "momentum", momentum, lead="`momentum` must be a float between [0, 1].")
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
        self.momentum = momentum
        self.nesterov = nesterov

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        # add_optimizer_variables (not one add_variable_from_reference per
        # weight) skips weights Keras overwrites with their gradient (float8
        # scales) and keeps Keras's order of optimizer.variables.
        self._velocity = []
        if self.momentum != 0:
            self._velocity = self.add_optimizer_variables(variables, "velocity")

    def update_step(self, gradient, variable, learning_rate):
        g = dense_gradient(gradient, variable.dtype)
        learning_rate = tf.cast(learning_rate, variable.dtype)
        if self.momentum == 0:
            self.assign_sub(variable, learning_rate * g)
            return
        momentum = tf.cast(self.momentum, variable.dtype)
        velocity = self._velocity[self._get_variable_index(variable)]
        self.assign(velocity, momentum * velocity - learning_rate * g)
        if self.nesterov:
            self.assign_add(variable, momentum * velocity - learning_rate * g)
        else:
            self.assign_add(variable, velocity)

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum, "nesterov": self.nesterov})
        return config
