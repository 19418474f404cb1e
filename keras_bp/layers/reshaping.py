"""The reshaping layers (Flatten, Reshape): the backward of a reshape is the inverse reshape."""

import math

import keras
import tensorflow as tf

from keras_bp._validation import check_input_rank
from keras_bp.core import manual_gradient
from keras_bp.layers._spatial import standardize_data_format


def _reshape_op(perm=None):
    """y = reshape(transpose(x, perm), shape); dx = transpose(reshape(dy, shape of x'), perm^-1)."""
    inverse = None if perm is None else [perm.index(i) for i in range(len(perm))]

    def forward(x, new_shape):
        if perm is not None:
            x = tf.transpose(x, perm)
        return tf.reshape(x, new_shape), tf.shape(x)

    def backward(x_shape, dy):
        dx = tf.reshape(dy, x_shape)
        if inverse is not None:
            dx = tf.transpose(dx, inverse)
        return dx, None

    return manual_gradient(forward, backward, name="reshape")


_plain_reshape = _reshape_op()


@keras.saving.register_keras_serializable(package="keras_bp")
class Flatten(keras.layers.Layer):
    """Flattens the input, keeping the batch axis (drop-in for `keras.layers.Flatten`).

    Args:
        data_format: `"channels_last"` or `"channels_first"`; with
            channels_first the channels are moved last before flattening, so
            that weights transfer between data formats, as Keras does.

    Input shape:
        `(batch_size, ...)`.

    Output shape:
        `(batch_size, product of the other dimensions)`.
    """

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(min_ndim=1)
        self.built = True

    def call(self, inputs):
        rank = len(inputs.shape)
        flat = tf.stack([tf.shape(inputs)[0], -1]) if rank > 1 else tf.constant([-1, 1])
        if self.data_format == "channels_first" and rank > 2:
            return _reshape_op((0, *range(2, rank), 1))(inputs, flat)
        return _plain_reshape(inputs, flat)

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        size = None if any(d is None for d in rest) else math.prod(rest)
        return (input_shape[0], size)

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


@keras.saving.register_keras_serializable(package="keras_bp")
class Reshape(keras.layers.Layer):
    """Reshapes the input to `(batch_size, *target_shape)` (drop-in for `keras.layers.Reshape`).

    Args:
        target_shape: Tuple of integers, the output shape without the batch
            axis; one entry may be -1, inferred from the input's size.
    """

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        try:
            target_shape = tuple(target_shape)
        except TypeError:
            target_shape = (target_shape,)
        if (
            any(not isinstance(d, int) or isinstance(d, bool) or (d <= 0 and d != -1) for d in target_shape)
            or target_shape.count(-1) > 1
        ):
            raise ValueError(
                "target_shape must be a tuple of positive integers with at most "
                f"one -1, received: target_shape={target_shape!r}"
            )
        self.target_shape = target_shape
        self.built = True

    def call(self, inputs):
        check_input_rank("Reshape", "inputs", inputs.shape, min_rank=1)
        new_shape = tf.concat([tf.shape(inputs)[:1], tf.constant(self.target_shape, tf.int32)], 0)
        return _plain_reshape(inputs, new_shape)

    def compute_output_shape(self, input_shape):
        target = list(self.target_shape)
        if -1 in target:
            rest = input_shape[1:]
            known = math.prod(d for d in target if d != -1)
            if any(d is None for d in rest):
                target[target.index(-1)] = None
            else:
                size = math.prod(rest)
                if size % known:
                    raise ValueError(
                        f"Cannot reshape inputs of shape {tuple(input_shape)} to "
                        f"target_shape={self.target_shape}"
                    )
                target[target.index(-1)] = size // known
        elif None not in input_shape[1:] and math.prod(input_shape[1:]) != math.prod(target):
            raise ValueError(
                f"Cannot reshape inputs of shape {tuple(input_shape)} to "
                f"target_shape={self.target_shape}: the sizes differ"
            )
        return (input_shape[0], *target)

    def get_config(self):
        return {**super().get_config(), "target_shape": self.target_shape}
