"""UnitNormalization: y = x / ||x||_2 along `axis`, with its backward."""

import keras
import tensorflow as tf

from keras_bp._validation import ArgumentTypeError
from keras_bp.core import manual_gradient
from keras_bp.layers._stateless import build_at_init

# As Keras (ops.normalize's epsilon for this layer): 1 / ||x|| is capped at 1 / _EPSILON.
_EPSILON = 1e-12


def unit_norm_op(axis):
    """x -> y = x r,  r = min(1 / sqrt(sum_axis x^2), 1 / eps)   (r: x's shape, axis kept as 1).

    Backward, where r is not capped (tf.minimum passes ties to its first argument):
        dL/dr = sum_axis(dy x)                          (r's shape)
        dr/dx = -r^3 x                                  (d(q^-1/2)/dq = -q^-3/2 / 2, dq/dx = 2x)
        dx    = dy r - x r^3 sum_axis(dy x)             (input's shape)
    where it is (a zero vector), r is a constant: dx = dy r.
    """

    def forward(x):
        square_sum = tf.reduce_sum(tf.square(x), axis=axis, keepdims=True)
        inv_norm = tf.math.rsqrt(square_sum)
        r = tf.minimum(inv_norm, 1.0 / _EPSILON)
        return x * r, (x, r, inv_norm <= 1.0 / _EPSILON)

    def backward(saved, dy):
        x, r, uncapped = saved
        d_r = tf.reduce_sum(dy * x, axis=axis, keepdims=True) * tf.cast(uncapped, dy.dtype)
        return dy * r - x * r * r * r * d_r

    return manual_gradient(forward, backward, name="unit_normalization")


@keras.saving.register_keras_serializable(package="keras_bp")
class UnitNormalization(keras.layers.Layer):
    """Scales each input vector to unit L2 norm along `axis` (drop-in for `keras.layers.UnitNormalization`).

    Args:
        axis: Integer or list/tuple of integers, the axis or axes to normalize across.

    Input shape: any. Output shape: the input's.
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)):
            self.axis = list(axis)
        elif isinstance(axis, int):
            self.axis = axis
        else:
            # Keras raises TypeError with these words; ArgumentTypeError is a ValueError too.
            raise ArgumentTypeError(
                "Invalid value for `axis` argument: expected an int or a list/tuple of ints. "
                f"axis must be an int or a list/tuple of ints, received: axis={axis!r}"
            )
        self.supports_masking = True
        self._op = unit_norm_op(self.axis)
        build_at_init(self)

    def call(self, inputs):
        if len(inputs.shape) == 0:
            inputs = tf.expand_dims(inputs, 0)  # as ops.normalize
        return self._op(inputs)

    def compute_output_shape(self, input_shape):
        axes = [self.axis] if isinstance(self.axis, int) else self.axis
        for axis in axes:
            if axis >= len(input_shape) or axis < -len(input_shape):
                raise ValueError(f"Axis {self.axis} is out of bounds for input shape {input_shape}.")
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}
