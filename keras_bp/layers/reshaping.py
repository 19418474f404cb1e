"""The reshaping layers (Flatten, Reshape, Permute): entries move, so the backward moves the gradient back.

    reshape:    y = reshape(x, shape)            dL/dx = reshape(dy, shape of x)
    permute:    y = transpose(x, p)              dL/dx = transpose(dy, p^-1)

A `tf.SparseTensor` input is reshaped as Keras does, by `tf.sparse.reshape`:
only its indices move, its values pass through unchanged, so the gradient
of the values is the upstream gradient itself (TensorFlow's, with no
arithmetic in which a bug could hide).
"""

import functools
import math

import keras
import tensorflow as tf

from keras_bp._validation import check_input_rank, invalid
from keras_bp.core import manual_gradient
from keras_bp.layers._spatial import standardize_data_format
from keras_bp.layers._stateless import build_at_init


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


def _spec_like(inputs, shape):
    """The symbolic output: `shape`, the input's dtype, sparse where the input is (as Keras's layers)."""
    return keras.KerasTensor(shape, dtype=inputs.dtype, sparse=inputs.sparse)


@functools.lru_cache(maxsize=None)
def _transpose_op(perm):
    """y = transpose(x, p); dx = transpose(dy, p^-1), p^-1[p[i]] = i."""
    inverse = tuple(perm.index(i) for i in range(len(perm)))
    return manual_gradient(
        lambda x: (tf.transpose(x, perm), None), lambda _, dy: tf.transpose(dy, inverse), name="permute"
    )


def _static_size(shape, default=None):
    """The number of elements of `shape`, or `default` where an axis is unknown."""
    return default if any(d is None for d in shape) else math.prod(shape)


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
        build_at_init(self)

    def call(self, inputs):
        rank = len(inputs.shape)
        perm = (0, *range(2, rank), 1) if self.data_format == "channels_first" and rank > 2 else None
        if isinstance(inputs, tf.SparseTensor):
            if perm is not None:
                inputs = tf.sparse.transpose(inputs, perm)
            return tf.sparse.reshape(inputs, [-1, _static_size(inputs.shape[1:], default=-1)])
        flat = tf.stack([tf.shape(inputs)[0], -1]) if rank > 1 else tf.constant([-1, 1])
        return (_plain_reshape if perm is None else _reshape_op(perm))(inputs, flat)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], _static_size(input_shape[1:]))

    def compute_output_spec(self, inputs):
        return _spec_like(inputs, self.compute_output_shape(inputs.shape))

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
        accepted = "a tuple of non-negative integers with at most one -1"
        # Keras's words lead (see keras_bp._validation).
        if any(not isinstance(d, int) or isinstance(d, bool) or d < -1 for d in target_shape):
            lead = (
                "Each dimension in `target_shape` must be a non-negative integer, or `-1` for a single "
                f"unknown dimension. Received: target_shape={target_shape}."
            )
            raise invalid("target_shape", target_shape, accepted, lead)
        if target_shape.count(-1) > 1:
            lead = f"There must be at most one unknown dimension (-1) in `target_shape`. Received: {target_shape}."
            raise invalid("target_shape", target_shape, accepted, lead)
        self.target_shape = target_shape
        build_at_init(self)

    def call(self, inputs):
        check_input_rank("Reshape", "inputs", inputs.shape, min_rank=1)
        # The -1 resolved from the static shape where it can be, so the output's static shape is known.
        target = tuple(-1 if d is None else d for d in self.compute_output_shape(inputs.shape)[1:])
        if isinstance(inputs, tf.SparseTensor):
            return tf.sparse.reshape(inputs, (-1, *target))
        new_shape = tf.concat([tf.shape(inputs)[:1], tf.constant(target, tf.int32)], 0)
        return _plain_reshape(inputs, new_shape)

    def compute_output_shape(self, input_shape):
        """Keras's shape: the -1 inferred where the other axes are known, None where they are not."""
        target = list(self.target_shape)
        rest = tuple(input_shape[1:])
        if None in rest:
            return (input_shape[0], *(None if d == -1 else d for d in target))
        size, known = math.prod(rest), math.prod(d for d in target if d != -1)
        if -1 in target and known and size % known == 0:
            target[target.index(-1)] = size // known
        elif -1 in target or size != known:
            raise ValueError(
                "The total size of the tensor must be unchanged. Received: "
                f"input_shape={rest}, target_shape={self.target_shape}"
            )
        return (input_shape[0], *target)

    def compute_output_spec(self, inputs):
        return _spec_like(inputs, self.compute_output_shape(inputs.shape))

    def get_config(self):
        return {**super().get_config(), "target_shape": self.target_shape}


@keras.saving.register_keras_serializable(package="keras_bp")
class Permute(keras.layers.Layer):
    """Permutes the axes of the input, keeping the batch axis (drop-in for `keras.layers.Permute`).

    Args:
        dims: Tuple of integers, the permutation of the axes 1 .. rank - 1:
            `dims=(2, 1)` swaps the two axes of a rank-3 input.

    Input shape:
        `(batch_size, d_1, ..., d_k)`, k = len(dims).

    Output shape:
        `(batch_size, d_dims[0], ..., d_dims[k-1])`.
    """

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        self.dims = tuple(dims)
        if sorted(dims) != list(range(1, len(dims) + 1)):
            lead = (
                "Invalid permutation argument `dims` for Permute Layer. The set of indices in `dims` must be "
                f"consecutive and start from 1. Received dims={dims}"
            )
            raise invalid("dims", dims, "a permutation of 1 .. len(dims)", lead)
        self.input_spec = keras.layers.InputSpec(ndim=len(self.dims) + 1)
        build_at_init(self)

    def call(self, inputs):
        if isinstance(inputs, tf.SparseTensor):
            # Only the indices move: TensorFlow's gradient of the values is dy itself.
            return tf.sparse.transpose(inputs, (0,) + self.dims)
        return _transpose_op((0,) + self.dims)(inputs)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *(input_shape[d] for d in self.dims))

    def compute_output_spec(self, inputs):
        return _spec_like(inputs, self.compute_output_shape(inputs.shape))

    def get_config(self):
        return {**super().get_config(), "dims": self.dims}
