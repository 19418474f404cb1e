"""Upsampling (UpSampling1D/2D/3D): nearest repeats each entry s times, bilinear interpolates.

Nearest, along each upsampled axis with factor s:

    y[..., i s + a, ...] = x[..., i, ...]       for a = 0 .. s - 1
    dL/dx[..., i, ...] = sum_a dy[..., i s + a, ...]

each input entry is copied to s outputs, so its gradient is the sum of
their gradients: dy cut into blocks of s along the axis, each block summed.

Bilinear (UpSampling2D), as TensorFlow's `tf.image.resize` (half-pixel
centres), is linear in x and separable: with A (H s, H) and B (W s, W) the
interpolation matrices of the height and width axes,

    y[n, o, p, c] = sum_{h, w} A[o, h] x[n, h, w, c] B[p, w]
    dL/dx[n, h, w, c] = sum_{o, p} A[o, h] dy[n, o, p, c] B[p, w]

the backward is the transpose of the interpolation. Row o of A puts weight
1 - t on input row lo and t on row hi, where c = (o + 1/2) / s - 1/2 is the
source coordinate of output row o, lo = max(floor(c), 0),
hi = min(ceil(c), H - 1) and t = c - floor(c) (an output above the first
input row or below the last reads that row alone).

Keras's other methods ("bicubic", "lanczos3", "lanczos5", "area") are linear
and separable too, through `tf.image.resize` without antialiasing: their A
is `tf.image.resize` of the identity along one axis (column h of A is the
resize of the unit vector e_h), and y and dL/dx are the same two products.
"""

import functools

import keras
import tensorflow as tf
from keras.src.backend import standardize_data_format
from keras.src.utils.argument_validation import standardize_tuple

from keras_bp._validation import invalid
from keras_bp.core import manual_gradient
from keras_bp.layers._stateless import build_at_init


def _repeat(x, axes, sizes):
    """x with each entry repeated `size` times along each of `axes`."""
    for axis, size in zip(axes, sizes):
        x = tf.repeat(x, size, axis=axis)
    return x


def _sum_blocks(dy, axes, sizes):
    """dy with each run of `size` entries along each of `axes` summed: the backward of `_repeat`."""
    for axis, size in zip(axes, sizes):
        shape = tf.shape(dy)
        blocks = tf.concat([shape[:axis], [shape[axis] // size, size], shape[axis + 1:]], 0)
        dy = tf.reduce_sum(tf.reshape(dy, blocks), axis=axis + 1)
    return dy


@functools.lru_cache(maxsize=None)
def _nearest_op(axes, sizes):
    return manual_gradient(
        lambda x: (_repeat(x, axes, sizes), None), lambda _, dy: _sum_blocks(dy, axes, sizes), name="upsampling"
    )


def _interpolation_matrix(n, size, dtype):
    """A (n size, n): row o weighs input lo by 1 - t and input hi by t (see the module docstring)."""
    o = tf.cast(tf.range(n * size), tf.float32)
    c = (o + 0.5) / size - 0.5
    lo = tf.maximum(tf.floor(c), 0.0)
    hi = tf.minimum(tf.math.ceil(c), tf.cast(n - 1, tf.float32))
    t = tf.cast(c - tf.floor(c), dtype)[:, None]
    return (1 - t) * tf.one_hot(tf.cast(lo, tf.int32), n, dtype=dtype) + t * tf.one_hot(tf.cast(hi, tf.int32), n, dtype=dtype)


def _resized_identity(n, size, method, dtype):
    """A (n size, n) of a resize method: column h is tf.image.resize of e_h (the method is linear)."""
    identity = tf.eye(n, dtype=tf.float32)[None, :, :, None]  # one image, rows e_0 .. e_{n-1} as columns
    resized = tf.image.resize(identity, tf.stack([n * size, n]), method=method, antialias=False)
    return tf.cast(resized[0, :, :, 0], dtype)


def _resize_matrix(n, size, method, dtype):
    if method == "bilinear":
        return _interpolation_matrix(n, size, dtype)
    return _resized_identity(n, size, method, dtype)


@functools.lru_cache(maxsize=None)
def _interpolated_op(size, data_format, method):
    """y = A x B^T on the height and width axes; dL/dx = A^T dy B."""
    image = "nchw" if data_format == "channels_first" else "nhwc"
    resized = image.replace("h", "o").replace("w", "p")
    height, width = image.index("h"), image.index("w")

    def forward(x):
        shape = tf.shape(x)
        a = _resize_matrix(shape[height], size[0], method, x.dtype)
        b = _resize_matrix(shape[width], size[1], method, x.dtype)
        return tf.einsum(f"oh,{image},pw->{resized}", a, x, b), (a, b)

    def backward(matrices, dy):
        a, b = matrices
        return tf.einsum(f"oh,{resized},pw->{image}", a, dy, b)

    return manual_gradient(forward, backward, name=f"upsampling_{method}")


def _data_format(data_format):
    try:
        return standardize_data_format(data_format)
    except ValueError as error:
        raise invalid("data_format", data_format, "'channels_last' or 'channels_first'", lead=str(error)) from None


def _sizes(value, n):
    try:
        return standardize_tuple(value, n, "size")
    except ValueError as error:
        raise invalid("size", value, f"a positive integer or a tuple of {n} of them", lead=str(error)) from None


# keras/src/backend/tensorflow/image.py's RESIZE_INTERPOLATIONS.
_RESIZE_METHODS = ("bilinear", "nearest", "lanczos3", "lanczos5", "bicubic", "area")


class _UpSampling(keras.layers.Layer):
    """Nearest upsampling of the spatial axes by `_factors()`, in `self.data_format`."""

    def _factors(self):
        return self.size

    def _axes(self):
        rank = len(self._factors())
        return tuple(range(2, rank + 2)) if self.data_format == "channels_first" else tuple(range(1, rank + 1))

    def call(self, inputs):
        return _nearest_op(self._axes(), self._factors())(inputs)

    def compute_output_shape(self, input_shape):
        output = list(input_shape)
        for axis, size in zip(self._axes(), self._factors()):
            output[axis] = None if output[axis] is None else output[axis] * size
        return tuple(output)


@keras.saving.register_keras_serializable(package="keras_bp")
class UpSampling1D(_UpSampling):
    """Repeats each step `size` times (drop-in for `keras.layers.UpSampling1D`).

    Args:
        size: Integer, the upsampling factor.

    Input shape:
        `(batch_size, steps, features)`.

    Output shape:
        `(batch_size, upsampled_steps, features)`.
    """

    data_format = "channels_last"

    def __init__(self, size=2, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(size, int) or isinstance(size, bool):
            # Keras raises TypeError here.
            lead = f"Expected an integer value for `size`, got {type(size)}."
            raise TypeError(str(invalid("size", size, "a positive integer", lead)))
        if size <= 0:
            lead = f"Argument `size` should be a positive integer. Received: size={size}"
            raise invalid("size", size, "a positive integer", lead)
        self.size = size
        self.input_spec = keras.layers.InputSpec(ndim=3)
        build_at_init(self)

    def _factors(self):
        return (self.size,)

    def compute_output_shape(self, input_shape):
        # Keras returns a list here.
        return list(super().compute_output_shape(input_shape))

    def get_config(self):
        return {**super().get_config(), "size": self.size}


# The data_format argument of UpSampling2D and UpSampling3D, as their docstrings give it.
_DATA_FORMAT_ARG = """data_format: `"channels_last"` or `"channels_first"`; None means
            `keras.config.image_data_format()`."""


@keras.saving.register_keras_serializable(package="keras_bp")
class UpSampling2D(_UpSampling):
    __doc__ = """Upsamples height and width (drop-in for `keras.layers.UpSampling2D`).

    Args:
        size: Int, or tuple of 2 integers: the factors for rows and columns.
        {data_format}
        interpolation: `"nearest"` (repeat rows and columns), `"bilinear"`,
            `"bicubic"`, `"lanczos3"`, `"lanczos5"` or `"area"` (as
            `tf.image.resize`, which Keras calls).

    Input shape:
        `(batch_size, rows, cols, channels)` (channels_last).

    Output shape:
        `(batch_size, upsampled_rows, upsampled_cols, channels)`.
    """.format(data_format=_DATA_FORMAT_ARG)

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        self.data_format = _data_format(data_format)
        self.size = _sizes(size, 2)
        self.interpolation = interpolation.lower()
        self.input_spec = keras.layers.InputSpec(ndim=4)
        build_at_init(self)

    def call(self, inputs):
        if self.interpolation == "nearest":
            return super().call(inputs)
        if self.interpolation not in _RESIZE_METHODS:
            # Keras raises here, at the call, with these words.
            lead = (
                f"Invalid value for argument `interpolation`. Expected of one {_RESIZE_METHODS}. "
                f"Received: interpolation={self.interpolation}"
            )
            raise invalid("interpolation", self.interpolation, f"one of {_RESIZE_METHODS}", lead)
        return _interpolated_op(self.size, self.data_format, self.interpolation)(inputs)

    def get_config(self):
        return {
            **super().get_config(), "size": self.size, "data_format": self.data_format,
            "interpolation": self.interpolation,
        }


@keras.saving.register_keras_serializable(package="keras_bp")
class UpSampling3D(_UpSampling):
    __doc__ = """Repeats entries along three spatial axes (drop-in for `keras.layers.UpSampling3D`).

    Args:
        size: Int, or tuple of 3 integers: the factor of each spatial axis.
        {data_format}

    Input shape:
        `(batch_size, dim1, dim2, dim3, channels)` (channels_last).

    Output shape:
        `(batch_size, upsampled_dim1, upsampled_dim2, upsampled_dim3, channels)`.
    """.format(data_format=_DATA_FORMAT_ARG)

    def __init__(self, size=(2, 2, 2), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = _data_format(data_format)
        self.size = _sizes(size, 3)
        self.input_spec = keras.layers.InputSpec(ndim=5)
        build_at_init(self)

    def get_config(self):
        return {**super().get_config(), "size": self.size, "data_format": self.data_format}
