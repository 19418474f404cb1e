"""Nadam: Adam with Nesterov momentum."""

import keras
import tensorflow as tf

from keras_bp._validation import check_non_negative, check_unit_interval, if_number
from keras_bp.optimizers._common import accepts_keras2_lr, dense_gradient, scalar_dtype


@keras.saving.register_keras_serializable(package="keras_bp")
class Nadam(keras.optimizers.Optimizer):
    """Nadam (Dozat, 2016): Adam whose step looks ahead with Nesterov momentum,
    under a momentum schedule that warms up to `beta_1`.

    For each weight `w` with gradient `g = dE/dw`, step number `t`
    (`optimizer.iterations + 1`), one step is:

    ```
    mu_t    = beta_1 * (1 - 0.5 * 0.96^t)          momentum schedule
    mu_next = beta_1 * (1 - 0.5 * 0.96^(t + 1))
    u_product <- u_product * mu_t                  once per step: mu_1 * ... * mu_t
    m <- m + (1 - beta_1) * (g - m)
    v <- v + (1 - beta_2) * (g^2 - v)
    m_hat = mu_next * m / (1 - u_product * mu_next) + (1 - mu_t) * g / (1 - u_product)
    v_hat = v / (1 - beta_2^t)
    w <- w - learning_rate * m_hat / (sqrt(v_hat) + epsilon)
    ```

    Slots: `m` and `v` per weight (zeros at the start), and one scalar
    `u_product` (starts at 1) shared by all weights, updated once per step
    before the weights, exactly as Keras does. `m_hat` mixes the next step's
    momentum on `m` with the current gradient: that is the Nesterov look-ahead.
    For float16 and bfloat16 weights the scalars (`mu_t`, `u_product`, the
    `1 - beta` terms) are computed in float32, as in `Adam`.

    Where epsilon sits: outside the square root of the bias-corrected `v_hat`,
    as in PyTorch's `torch.optim.NAdam` (unlike our `Adam`, whose epsilon is
    the paper's "epsilon hat"). The other difference from PyTorch is the
    schedule: PyTorch uses `0.96^(t * momentum_decay)` with
    `momentum_decay=0.004`, so its `mu_t` reaches `beta_1` after thousands of
    steps instead of about a hundred.

    Args:
        learning_rate: A float >= 0, a
            `keras.optimizers.schedules.LearningRateSchedule`, or a callable
            taking no arguments and returning the rate. Defaults to `0.001`.
            `lr` is accepted as its Keras 2 name, with a `DeprecationWarning`.
        beta_1: Float in [0, 1), the momentum `mu_t` warms up to and the decay
            of `m`. Defaults to `0.9`.
        beta_2: Float in [0, 1), the decay of `v`. Defaults to `0.999`.
        epsilon: Float >= 0 added to `sqrt(v_hat)`. Defaults to `1e-7`.
        weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema,
        ema_momentum, ema_overwrite_frequency, loss_scale_factor,
        gradient_accumulation_steps, name: As in `keras.optimizers.Optimizer`.
    """

    @accepts_keras2_lr
    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
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
        if_number(check_unit_interval, "beta_1", beta_1, include_one=False)
        if_number(check_unit_interval, "beta_2", beta_2, include_one=False)
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
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon

    def build(self, variables):
        if self.built:
            return
        # Like Keras, u_product has the first weight's dtype (float32 if that
        # is a 16-bit type, see scalar_dtype).
        dtype = scalar_dtype(variables[0].dtype if variables else keras.backend.floatx())
        super().build(variables)
        self._m, self._v = self.add_optimizer_variables(variables, ["m", "v"])
        self._u_product = keras.Variable(1.0, dtype=dtype, name="u_product")

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # u_product is shared by all weights, so it moves once per step, here,
        # before the per-weight update_step calls read it.
        # NOTE: u_product * beta_1 * (...) rather than u_product * mu_t: the same
        # product, grouped as Keras groups it, so the rounding matches too.
        t = tf.cast(self.iterations + 1, self._u_product.dtype)
        u_product = self._u_product
        self.assign(u_product, u_product * self.beta_1 * (1.0 - 0.5 * 0.96**t))
        super()._backend_update_step(grads, trainable_variables, learning_rate)

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        g = dense_gradient(gradient, dtype)
        i = self._get_variable_index(variable)
        m, v = self._m[i], self._v[i]

        # Per-step scalars, computed in float32 for 16-bit weights (see
        # scalar_dtype) and cast to the weight's dtype where they meet it.
        # NOTE: tf.cast of a Python float rounds it to float32 first, even for
        # float64 weights; Keras does the same, and parity needs it.
        scalar = scalar_dtype(dtype)
        beta_1 = tf.cast(self.beta_1, scalar)
        beta_2 = tf.cast(self.beta_2, scalar)
        decay = tf.cast(0.96, scalar)
        t = tf.cast(self.iterations + 1, scalar)
        t_next = tf.cast(self.iterations + 2, scalar)
        mu_t = beta_1 * (1.0 - 0.5 * decay**t)
        mu_next = beta_1 * (1.0 - 0.5 * decay**t_next)
        u_product = tf.cast(self._u_product, scalar)
        u_product_next = u_product * mu_next

        def as_weight(scalar_value):
            return tf.cast(scalar_value, dtype)

        self.assign_add(m, (g - m) * as_weight(1 - beta_1))
        self.assign_add(v, (tf.square(g) - v) * as_weight(1 - beta_2))
        m_hat = (
            as_weight(mu_next) * m / as_weight(1 - u_product_next)
            + as_weight(1 - mu_t) * g / as_weight(1 - u_product)
        )
        v_hat = v / as_weight(1 - beta_2**t)
        self.assign_sub(
            variable,
            as_weight(learning_rate) * m_hat / (tf.sqrt(v_hat) + self.epsilon),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}
        )
        return config
