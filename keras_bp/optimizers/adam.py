"""The Adam optimizers: Adam (AMSGrad optional), AdamW (decoupled weight decay)."""

import keras
import tensorflow as tf

from keras_bp._validation import check_non_negative, check_unit_interval, if_number, invalid
from keras_bp.optimizers._common import accepts_keras2_lr, dense_gradient, scalar_dtype


@keras.saving.register_keras_serializable(package="keras_bp")
class Adam(keras.optimizers.Optimizer):
    """Adam (Kingma and Ba, 2014): momentum on the gradient, scaled per weight by
    the root of a moving average of its squared gradient.

    For each weight `w` with gradient `g = dE/dw`, step number `t`
    (`optimizer.iterations + 1`), one step is:

    ```
    m <- m + (1 - beta_1) * (g - m)       i.e. beta_1 * m + (1 - beta_1) * g
    v <- v + (1 - beta_2) * (g^2 - v)     i.e. beta_2 * v + (1 - beta_2) * g^2
    v_hat <- max(v_hat, v)                amsgrad=True only; v_hat replaces v below
    alpha = learning_rate * sqrt(1 - beta_2^t) / (1 - beta_1^t)
    w <- w - alpha * m / (sqrt(v) + epsilon)
    ```

    Slots, one per weight, zeros at the start: `m` (first moment), `v` (second
    moment), and `v_hat` (the largest `v` so far) when `amsgrad`. `alpha`
    folds both bias corrections into the learning rate (the paper's
    "efficient version", just before its Section 2.1), so `m` and `v` are
    never divided themselves. The `(1 - beta) * (new - old)` form is Keras's
    and is kept so results match Keras to the last bit. For float16 and
    bfloat16 weights `alpha` is computed in float32 (Keras computes it in the
    weight's dtype, where `beta_2 = 0.999` rounds to 1 in bfloat16 and the
    weight never moves).

    Where epsilon sits: outside the square root, and it is the paper's
    "epsilon hat": it is added to `sqrt(v)`, not to the bias-corrected
    `sqrt(v / (1 - beta_2^t))` of Algorithm 1, which PyTorch's `torch.optim.Adam`
    and optax use. Written in their form, our step is
    `lr * m_hat / (sqrt(v_hat) + epsilon / sqrt(1 - beta_2^t))`: at `t = 1`
    with `beta_2 = 0.999` our epsilon acts ~30x larger, fading to 1x as `t`
    grows. Together with the different defaults (`1e-7` here, `1e-8` there)
    this explains small early differences when comparing frameworks.

    Args:
        learning_rate: A float >= 0, a
            `keras.optimizers.schedules.LearningRateSchedule`, or a callable
            taking no arguments and returning the rate. Defaults to `0.001`.
            `lr` is accepted as its Keras 2 name, with a `DeprecationWarning`.
        beta_1: Float in [0, 1), the decay of `m`. Defaults to `0.9`.
        beta_2: Float in [0, 1), the decay of `v`. Defaults to `0.999`.
        epsilon: Float >= 0 added to `sqrt(v)` ("epsilon hat"). Defaults to
            `1e-7`.
        amsgrad: Whether to divide by the running maximum `v_hat` instead of
            `v` (Reddi et al., "On the Convergence of Adam and Beyond").
            Defaults to `False`.
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
        amsgrad=False,
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
        self.amsgrad = amsgrad

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._m, self._v = self.add_optimizer_variables(variables, ["m", "v"])
        self._v_hat = []
        if self.amsgrad:
            self._v_hat = self.add_optimizer_variables(variables, "v_hat")

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        g = dense_gradient(gradient, dtype)
        beta_1, beta_2, epsilon = self.beta_1, self.beta_2, self.epsilon
        i = self._get_variable_index(variable)
        m, v = self._m[i], self._v[i]

        self.assign_add(m, (g - m) * (1 - beta_1))
        self.assign_add(v, (tf.square(g) - v) * (1 - beta_2))
        if self.amsgrad:
            v_hat = self._v_hat[i]
            self.assign(v_hat, tf.maximum(v_hat, v))
            v = v_hat
        # The bias corrections in float32 for 16-bit weights (see scalar_dtype).
        scalar = scalar_dtype(dtype)
        t = tf.cast(self.iterations + 1, scalar)
        alpha = (
            tf.cast(learning_rate, scalar)
            * tf.sqrt(1 - tf.cast(beta_2, scalar) ** t)
            / (1 - tf.cast(beta_1, scalar) ** t)
        )
        alpha = tf.cast(alpha, dtype)
        self.assign_sub(variable, alpha * m / (tf.sqrt(v) + epsilon))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "amsgrad": self.amsgrad,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_bp")
class AdamW(Adam):
    """AdamW (Loshchilov and Hutter, 2019): Adam with decoupled weight decay.

    Each step first shrinks every weight (except those named in
    `exclude_from_weight_decay`), then takes the Adam step of `Adam` above
    with the gradient `g = dE/dw` of the loss alone:

    ```
    w <- w - learning_rate * weight_decay * w
    w <- Adam step of w with g
    ```

    "Decoupled": the decay is not added to `g` (which would be L2
    regularization, `g + weight_decay * w`), so it is not divided by
    `sqrt(v)`, and every weight decays at the same rate. The decay is applied
    by `keras.optimizers.Optimizer` itself (any optimizer given a
    `weight_decay` does the same); AdamW only makes it the default.

    Matching other frameworks: PyTorch's `torch.optim.AdamW` and optax's
    `adamw` also decay by `learning_rate * weight_decay * w` (their default
    `weight_decay` is `0.01` and `1e-4`, ours `0.004`); the paper scales the
    decay by the schedule multiplier only, not by the learning rate. Epsilon
    sits as in `Adam`.

    Args:
        learning_rate: As in `Adam`. Defaults to `0.001`.
        weight_decay: Float, the decay rate. Defaults to `0.004`; `None` is
            rejected (use `Adam` for no decay).
        beta_1, beta_2, epsilon, amsgrad: As in `Adam`.
        clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum,
        ema_overwrite_frequency, loss_scale_factor,
        gradient_accumulation_steps, name: As in `keras.optimizers.Optimizer`.
    """

    @accepts_keras2_lr
    def __init__(
        self,
        learning_rate=0.001,
        weight_decay=0.004,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-7,
        amsgrad=False,
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
        if weight_decay is None:
            # Keras's words lead (see keras_bp._validation).
            raise invalid(
                "weight_decay", None, "a float for AdamW (use Adam for no decay)",
                lead="Argument `weight_decay` must be a float. Received: weight_decay=None.",
            )
        if_number(check_non_negative, "weight_decay", weight_decay)
        super().__init__(
            learning_rate=learning_rate,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            amsgrad=amsgrad,
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
