"""Activation layers: Activation, ReLU, LeakyReLU, PReLU, ELU, Softmax.

Each applies one pair from `keras_bp.activations` as a manual-gradient op;
the derivatives are written out in that module's docstring.
"""

import warnings

import keras
import tensorflow as tf

from keras_bp import activations
from keras_bp._validation import check_non_negative
from keras_bp.core import manual_gradient
from keras_bp.layers._stateless import build_at_init
from keras_bp.layers._weight_options import add_weight_with_options, set_weight_options, weight_options_config


class _ActivationLayer(keras.layers.Layer):
    """Applies `self.pair` elementwise; no weights."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        build_at_init(self)

    def call(self, inputs):
        return activations.apply(self.pair, inputs)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="keras_bp")
class Activation(_ActivationLayer):
    """Applies an activation function to an output (drop-in for `keras.layers.Activation`).

    Args:
        activation: Activation name or `keras.activations` function; see
            `keras_bp.activations.SUPPORTED`.
    """

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.pair = activations.get(activation)

    def get_config(self):
        return {**super().get_config(), "activation": activations.serialize(self.pair)}


@keras.saving.register_keras_serializable(package="keras_bp")
class ReLU(_ActivationLayer):
    """Rectified linear unit (drop-in for `keras.layers.ReLU`).

        f(x) = max_value                       if x >= max_value
        f(x) = x                               if threshold <= x < max_value
        f(x) = negative_slope * (x - threshold) otherwise

    Args:
        max_value: Non-negative float, the largest output; `None` for no limit.
        negative_slope: Non-negative float, slope below the threshold.
        threshold: Non-negative float, the threshold below which the output
            is `negative_slope * (x - threshold)`.
    """

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        # Keras's words lead each message (see keras_bp._validation).
        self.max_value = check_non_negative(
            "max_value", max_value, allow_none=True, lead="max_value of a ReLU layer cannot be a negative value."
        )
        self.negative_slope = check_non_negative(
            "negative_slope", negative_slope,
            lead="negative_slope of a ReLU layer cannot be None or a negative value.",
        )
        self.threshold = check_non_negative(
            "threshold", threshold, lead="threshold of a ReLU layer cannot be None or a negative value."
        )
        self.pair = activations.configured(
            "relu", negative_slope=self.negative_slope, max_value=self.max_value, threshold=self.threshold
        )

    def get_config(self):
        return {
            **super().get_config(),
            "max_value": self.max_value,
            "negative_slope": self.negative_slope,
            "threshold": self.threshold,
        }


@keras.saving.register_keras_serializable(package="keras_bp")
class LeakyReLU(_ActivationLayer):
    """Leaky ReLU: x if x > 0 else negative_slope * x (drop-in for `keras.layers.LeakyReLU`).

    Args:
        negative_slope: Non-negative float, the slope for x <= 0. Defaults to 0.3.
    """

    def __init__(self, negative_slope=0.3, **kwargs):
        if "alpha" in kwargs:
            # As Keras 3: the Keras 2 name still works, with a warning.
            negative_slope = kwargs.pop("alpha")
            warnings.warn("Argument `alpha` is deprecated. Use `negative_slope` instead.")
        super().__init__(**kwargs)
        self.negative_slope = check_non_negative(
            "negative_slope", negative_slope,
            lead="The negative_slope value of a Leaky ReLU layer cannot be None or negative value.",
        )
        self.pair = activations.configured("leaky_relu", negative_slope=self.negative_slope)

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


def prelu_forward(x, alpha):
    """y = relu(x) - alpha relu(-x), Keras's formula (alpha broadcast over the batch and shared axes)."""
    negative = tf.nn.relu(-x)
    y = tf.nn.relu(x) - alpha * negative
    return y, (x, negative, alpha)


def prelu_backward(saved, dy):
    """The slope is 1 above 0, alpha below, 0 at 0 itself (relu's gradient there); alpha's is -relu(-x).

        dx     = dy [x > 0] + alpha dy [x < 0]                              (input's shape)
        dalpha = -sum over the batch and shared axes of dy relu(-x)        (alpha's shape)

    dy [x > 0] and dy [x < 0] are relu's backward at x and at -x (ReluGrad,
    one fused kernel each; relu(-x) > 0 iff x < 0).
    """
    x, negative, alpha = saved
    dx = tf.raw_ops.ReluGrad(gradients=dy, features=x) + alpha * tf.raw_ops.ReluGrad(gradients=dy, features=negative)
    # alpha has no batch axis and 1 on the shared ones: sum those away.
    broadcast = [0] + [i + 1 for i, size in enumerate(alpha.shape) if size == 1]
    dalpha = -tf.reshape(tf.reduce_sum(dy * negative, axis=broadcast, keepdims=True), tf.shape(alpha))
    return dx, dalpha


_prelu = manual_gradient(prelu_forward, prelu_backward, name="prelu")


@keras.saving.register_keras_serializable(package="keras_bp")
class PReLU(keras.layers.Layer):
    """Parametric ReLU: x if x > 0 else alpha * x, alpha learned (drop-in for `keras.layers.PReLU`).

    Args:
        alpha_initializer: Initializer of the weights `alpha`. Defaults to "Zeros".
        alpha_regularizer: Regularizer of the weights.
        alpha_constraint: Constraint on the weights.
        shared_axes: The axes (an int or a list of ints, 1 = the first after
            the batch) along which one alpha is shared, e.g. `[1, 2]` for one
            alpha per channel of a (batch, height, width, channels) input.

    Input shape: any, batch first. Output shape: the input's.
    Weights: `alpha`, of shape `input_shape[1:]` with 1 on each shared axis.
    """

    def __init__(self, alpha_initializer="Zeros", alpha_regularizer=None, alpha_constraint=None, shared_axes=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        set_weight_options(self, alpha=(alpha_initializer, alpha_regularizer, alpha_constraint))
        if shared_axes is None:
            self.shared_axes = None
        elif not isinstance(shared_axes, (list, tuple)):
            self.shared_axes = [shared_axes]
        else:
            self.shared_axes = list(shared_axes)

    def build(self, input_shape):
        param_shape = list(input_shape[1:])
        for i in self.shared_axes or ():
            param_shape[i - 1] = 1
        self.alpha = add_weight_with_options(self, "alpha", param_shape)
        axes = {i: input_shape[i] for i in range(1, len(input_shape)) if i not in (self.shared_axes or ())}
        self.input_spec = keras.layers.InputSpec(ndim=len(input_shape), axes=axes)

    def call(self, inputs):
        return _prelu(inputs, tf.convert_to_tensor(self.alpha))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), **weight_options_config(self, "alpha"), "shared_axes": self.shared_axes}


@keras.saving.register_keras_serializable(package="keras_bp")
class ELU(_ActivationLayer):
    """Exponential linear unit: x if x > 0 else alpha (e^x - 1) (drop-in for `keras.layers.ELU`).

    Args:
        alpha: Float, the scale of the negative part. Defaults to 1.0.
    """

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)
        self.pair = activations.configured("elu", alpha=self.alpha)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


def _masked_softmax_op(axis):
    """Softmax over `axis` where masked positions get no probability.

    Forward, as Keras: z' = where(mask, z, -1e9); y = softmax(z'); y = where(mask, y, 0).
    Backward: dz = y * (dy - sum(dy * y, axis)) on kept positions, 0 on masked
    ones (y is already 0 there, and the where in the forward blocks them).
    """
    softmax = activations.configured("softmax", axis=axis)

    def forward(z, mask):
        mask = tf.cast(mask, tf.bool)
        large_negative = -3e4 if z.dtype == tf.float16 else -1e9
        y, _ = softmax.forward(tf.where(mask, z, tf.cast(large_negative, z.dtype)))
        y = tf.where(mask, y, tf.zeros_like(y))
        return y, (y, mask)

    def backward(saved, dy):
        y, mask = saved
        dz = softmax.backward(y, dy)
        return tf.where(mask, dz, tf.zeros_like(dz)), None

    return manual_gradient(forward, backward, name="masked_softmax")


def _check_mask_broadcastable(mask_shape, inputs_shape):
    """Raises, in Keras's words, unless each mask axis is 1 or the input's and there are no more of them."""
    if len(mask_shape) > len(inputs_shape):
        raise ValueError(
            "The `mask` must be broadcastable to `inputs` and must not have more dimensions. "
            f"Received: inputs.shape={inputs_shape}, mask.shape={mask_shape}"
        )
    for m, n in zip(reversed(mask_shape), reversed(inputs_shape)):
        if m is not None and n is not None and m not in (1, n):
            raise ValueError(
                "The `mask` must be broadcastable to `inputs`. Each mask dimension must be 1 or match the "
                f"corresponding input dimension. Received: inputs.shape={inputs_shape}, mask.shape={mask_shape}"
            )


@keras.saving.register_keras_serializable(package="keras_bp")
class Softmax(keras.layers.Layer):
    """Softmax activation layer (drop-in for `keras.layers.Softmax`).

    Args:
        axis: Integer or tuple of integers, the axis (axes) along which the
            softmax normalization is applied.

    Call arguments:
        inputs: The logits.
        mask: A boolean mask (or 0/1 values) broadcastable to `inputs`; masked
            positions get probability 0.
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis
        self.supports_masking = True
        axis_key = tuple(axis) if isinstance(axis, (list, tuple)) else axis
        if isinstance(axis_key, tuple) and len(axis_key) == 1:
            axis_key = axis_key[0]
        self._pair = activations.configured("softmax", axis=axis_key)
        self._masked_op = _masked_softmax_op(axis_key)
        build_at_init(self)

    def call(self, inputs, mask=None):
        if mask is None:
            return activations.apply(self._pair, inputs)
        _check_mask_broadcastable(mask.shape, inputs.shape)
        if mask.dtype != tf.bool:
            mask = mask > tf.cast(0.5, mask.dtype)
        mask = tf.broadcast_to(mask, tf.shape(inputs))
        return self._masked_op(inputs, mask)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}
