"""The pooling layers: a max or an average, over windows or over all positions.

The windowed layers share one pair per mode, run on NHWC tensors like the
convolutions (`keras_bp.layers._spatial.Layout`: a 1-D input is an image of
height 1, channels_first is transposed inside the op). The global layers
reduce over the spatial axes in the layer's own layout.
"""

import keras
import tensorflow as tf

from keras_bp.core import manual_gradient
from keras_bp.layers._spatial import (
    Layout,
    standardize_data_format,
    standardize_padding,
    standardize_tuple,
    windowed_output_shape,
)
from keras_bp.layers._stateless import build_at_init

# --- windowed pooling -------------------------------------------------------


def _pool_args(pool_size, strides, padding):
    return dict(ksize=[1, *pool_size, 1], strides=[1, *strides, 1], padding=padding)


def max_pool_op(layout, pool_size, strides, padding):
    """Max pooling as a manual-gradient op: x -> y.

    Forward, on NHWC tensors (x: (N, H, W, C), y: (N, H', W', C)):
        y[n, i, j, c] = max over the window w(i, j) of x[n, p, q, c]
        (w(i, j) = rows s_h i .. s_h i + k_h - 1, columns likewise, shifted
        by the 'same' padding, which never wins: it is -inf)

    Backward: the max is locally the identity on its arg-max, so each
    window's upstream gradient goes to that one element, and an element that
    is the arg-max of several (overlapping) windows collects all of them:
        dx[n, p, q, c] = sum over windows w with argmax(w) = (p, q) of dy[n, w, c]

    Ties: where several elements of a window share the max, the gradient
    goes to the first of them in row-major order (top row first, then left to
    right), as TensorFlow's own gradient does (MaxPoolGrad, on CPU and under
    XLA; tests/test_conv.py checks it). MaxPoolGrad computes exactly the sum
    above from x, y and dy.

    Saves x and y.
    """
    args = _pool_args(pool_size, strides, padding)

    def forward(x):
        x = layout.to_nhwc(x)
        y = tf.nn.max_pool2d(x, args["ksize"], args["strides"], padding)
        return layout.from_nhwc(y), (x, y)

    def backward(saved, dy):
        x, y = saved
        dx = tf.raw_ops.MaxPoolGrad(orig_input=x, orig_output=y, grad=layout.to_nhwc(dy), **args)
        return layout.from_nhwc(dx)

    return manual_gradient(forward, backward, name=f"max_pool{layout.rank}d")


def average_pool_op(layout, pool_size, strides, padding):
    """Average pooling as a manual-gradient op: x -> y.

    Forward, on NHWC tensors (x: (N, H, W, C), y: (N, H', W', C)):
        y[n, i, j, c] = (1 / |w(i, j)|) sum over the window w(i, j) of x[n, p, q, c]
        where |w| counts the window's elements inside the input (with 'same'
        padding, edge windows are smaller: padding is not averaged in).

    Backward: each element receives, from every window that contains it,
    that window's upstream gradient divided by the window's size:
        dx[n, p, q, c] = sum over windows w containing (p, q) of dy[n, w, c] / |w|

    AvgPoolGrad computes exactly this sum (it needs only x's shape). Saves
    nothing but that shape.
    """
    args = _pool_args(pool_size, strides, padding)

    def forward(x):
        x = layout.to_nhwc(x)
        y = tf.nn.avg_pool2d(x, args["ksize"], args["strides"], padding)
        return layout.from_nhwc(y), tf.shape(x)

    def backward(x_shape, dy):
        dx = tf.raw_ops.AvgPoolGrad(orig_input_shape=x_shape, grad=layout.to_nhwc(dy), **args)
        return layout.from_nhwc(dx)

    return manual_gradient(forward, backward, name=f"average_pool{layout.rank}d")


class _Pooling(keras.layers.Layer):
    """Shared body of the windowed pooling layers."""

    rank = None
    make_op = None

    def __init__(self, pool_size, strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.pool_size = standardize_tuple("pool_size", pool_size, self.rank)
        self.strides = standardize_tuple("strides", pool_size if strides is None else strides, self.rank)
        self.padding = standardize_padding(padding, ("valid", "same"))
        self.data_format = standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=self.rank + 2)
        layout = Layout(self.rank, self.data_format == "channels_first")
        self._op = type(self).make_op(
            layout, layout.spatial_2d(self.pool_size), layout.spatial_2d(self.strides), self.padding.upper()
        )
        build_at_init(self)

    def call(self, inputs):
        # The rank is checked by input_spec; a window that does not fit, here (no build: built at init).
        self.compute_output_shape(inputs.shape)
        return self._op(inputs)

    def compute_output_shape(self, input_shape):
        channels = input_shape[-1] if self.data_format == "channels_last" else input_shape[1]
        return windowed_output_shape(self, input_shape, "pool_size", self.pool_size, (1,) * self.rank, channels)

    def get_config(self):
        base_config = super().get_config()
        config = {
            "pool_size": self.pool_size,
            "padding": self.padding,
            "strides": self.strides,
            "data_format": self.data_format,
        }
        return {**base_config, **config}


_POOL_DOC = """{mode} pooling over {rank}-D windows, with a hand-derived backward pass.

    Drop-in for `keras.layers.{name}` (no weights). Forward and backward:
    `{op}` (derivation in its docstring).

    Args:
        pool_size: int or tuple of {rank} ints, the window size.
        strides: int or tuple of {rank} ints; `None` means `pool_size`.
        padding: `"valid"` or `"same"` (case-insensitive).
        data_format: `"channels_last"` (default from `keras.config`) or
            `"channels_first"`.

    Input shape:
        `(batch, {spatial}, channels)` or `(batch, channels, {spatial})`.

    Output shape:
        `(batch, {pooled}, channels)` or `(batch, channels, {pooled})`.
    """


def _pool_doc(mode, rank, name, op):
    spatial, pooled = ("steps", "pooled_steps") if rank == 1 else ("height, width", "pooled_height, pooled_width")
    return _POOL_DOC.format(mode=mode, rank=rank, name=name, op=op, spatial=spatial, pooled=pooled)


# The default pool size is the one Keras's classes differ in; AveragePooling has none.


@keras.saving.register_keras_serializable(package="keras_bp")
class MaxPooling1D(_Pooling):
    __doc__ = _pool_doc("Max", 1, "MaxPooling1D", "max_pool_op")
    rank, make_op = 1, staticmethod(max_pool_op)

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, name=name, **kwargs)


@keras.saving.register_keras_serializable(package="keras_bp")
class MaxPooling2D(_Pooling):
    __doc__ = _pool_doc("Max", 2, "MaxPooling2D", "max_pool_op")
    rank, make_op = 2, staticmethod(max_pool_op)

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, name=name, **kwargs)


@keras.saving.register_keras_serializable(package="keras_bp")
class AveragePooling1D(_Pooling):
    __doc__ = _pool_doc("Average", 1, "AveragePooling1D", "average_pool_op")
    rank, make_op = 1, staticmethod(average_pool_op)


@keras.saving.register_keras_serializable(package="keras_bp")
class AveragePooling2D(_Pooling):
    __doc__ = _pool_doc("Average", 2, "AveragePooling2D", "average_pool_op")
    rank, make_op = 2, staticmethod(average_pool_op)


# --- global pooling ---------------------------------------------------------


def global_average_pool_op(axes, keepdims):
    """Global average pooling as a manual-gradient op: (x, mask or None) -> y.

    Forward, over the spatial axes S (|S| = number of spatial positions):
        y[n, c] = (1 / |S|) sum over s in S of x[n, s, c]
    With a mask m (Keras's GlobalAveragePooling1D; 1 = keep, 0 = skip):
        y[n, c] = sum_s m[n, s] x[n, s, c] / sum_s m[n, s]

    Backward: every position receives the same share of the upstream gradient:
        dx[n, s, c] = dy[n, c] / |S|           (masked: dy[n, c] m[n, s] / sum_s m[n, s])
    The mask gets no gradient.
    """

    def forward(x, mask):
        if mask is not None:
            # Keras's formula, term for term: zero the masked steps, divide by the count.
            count = tf.reduce_sum(mask, axis=axes, keepdims=True)
            y = tf.reduce_sum(tf.where(mask > 0, x, tf.zeros_like(x)), axis=axes, keepdims=True) / count
            weights = mask / count
        else:
            y = tf.reduce_mean(x, axis=axes, keepdims=True)
            weights = 1 / tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), axes)), x.dtype)
        return (y if keepdims else tf.squeeze(y, axes)), (tf.shape(x), tf.shape(y), weights)

    def backward(saved, dy):
        x_shape, kept_shape, weights = saved
        dx = tf.broadcast_to(tf.reshape(dy, kept_shape) * weights, x_shape)
        return dx, None

    return manual_gradient(forward, backward, name="global_average_pool")


def global_max_pool_op(axes, keepdims):
    """Global max pooling as a manual-gradient op: x -> y.

    Forward: y[n, c] = max over spatial positions s of x[n, s, c].

    Backward: the gradient goes to the arg-max. Where several positions share
    the max, TensorFlow's gradient of reduce_max (the op Keras uses) splits it
    equally among them, and so do we:
        dx[n, s, c] = dy[n, c] [x[n, s, c] = y[n, c]] / #{s' : x[n, s', c] = y[n, c]}

    Saves x and y.
    """

    def forward(x):
        y = tf.reduce_max(x, axis=axes, keepdims=True)
        return (y if keepdims else tf.squeeze(y, axes)), (x, y)

    def backward(saved, dy):
        x, y = saved
        if not keepdims:
            dy = tf.reshape(dy, tf.shape(y))
        is_max = tf.cast(tf.equal(x, y), dy.dtype)
        return dy * is_max / tf.reduce_sum(is_max, axis=axes, keepdims=True)

    return manual_gradient(forward, backward, name="global_max_pool")


class _GlobalPooling(keras.layers.Layer):
    """Shared body of the global pooling layers; `mode` is `"average"` or `"max"`."""

    rank = None
    mode = None

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = standardize_data_format(data_format)
        self.keepdims = keepdims
        self.input_spec = keras.layers.InputSpec(ndim=self.rank + 2)
        first = 1 if self.data_format == "channels_last" else 2
        self._axes = list(range(first, first + self.rank))
        make_op = global_average_pool_op if self.mode == "average" else global_max_pool_op
        self._op = make_op(self._axes, bool(keepdims))
        build_at_init(self)

    def call(self, inputs):
        return self._op(inputs)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        channels = input_shape[-1] if self.data_format == "channels_last" else input_shape[1]
        if not self.keepdims:
            return (input_shape[0], channels)
        if self.data_format == "channels_last":
            return (input_shape[0],) + (1,) * self.rank + (channels,)
        return (input_shape[0], channels) + (1,) * self.rank

    def get_config(self):
        base_config = super().get_config()
        return {**base_config, "data_format": self.data_format, "keepdims": self.keepdims}


_GLOBAL_DOC = """Global {mode} pooling over the {what}, with a hand-derived backward pass.

    Drop-in for `keras.layers.{name}` (no weights). Forward and backward:
    `{op}` (derivation in its docstring).{extra}

    Args:
        data_format: `"channels_last"` (default from `keras.config`) or
            `"channels_first"`.
        keepdims: Keep the pooled spatial axes with length 1.

    Input shape:
        `(batch, {spatial}, channels)` or `(batch, channels, {spatial})`.

    Output shape:
        `(batch, channels)`, or with keepdims the input's rank with each
        spatial axis of length 1.
    """


_MASK_DOC = """

    Call arguments:
        inputs: 3-D tensor.
        mask: `(batch, steps)` booleans; masked steps are left out of the average."""


def _global_doc(mode, rank, name, op, extra=""):
    what, spatial = ("steps", "steps") if rank == 1 else ("height and width", "height, width")
    return _GLOBAL_DOC.format(mode=mode, what=what, name=name, op=op, spatial=spatial, extra=extra)


@keras.saving.register_keras_serializable(package="keras_bp")
class GlobalAveragePooling1D(_GlobalPooling):
    __doc__ = _global_doc("average", 1, "GlobalAveragePooling1D", "global_average_pool_op", extra=_MASK_DOC)
    rank, mode = 1, "average"

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(data_format=data_format, keepdims=keepdims, **kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is not None:
            channel_axis = 2 if self.data_format == "channels_last" else 1
            mask = tf.expand_dims(tf.cast(mask, inputs.dtype), channel_axis)
        return self._op(inputs, mask)

    def compute_mask(self, inputs, mask=None):
        return None


@keras.saving.register_keras_serializable(package="keras_bp")
class GlobalAveragePooling2D(_GlobalPooling):
    __doc__ = _global_doc("average", 2, "GlobalAveragePooling2D", "global_average_pool_op")
    rank, mode = 2, "average"

    def call(self, inputs):
        return self._op(inputs, None)


@keras.saving.register_keras_serializable(package="keras_bp")
class GlobalMaxPooling1D(_GlobalPooling):
    __doc__ = _global_doc("max", 1, "GlobalMaxPooling1D", "global_max_pool_op")
    rank, mode = 1, "max"


@keras.saving.register_keras_serializable(package="keras_bp")
class GlobalMaxPooling2D(_GlobalPooling):
    __doc__ = _global_doc("max", 2, "GlobalMaxPooling2D", "global_max_pool_op")
    rank, mode = 2, "max"
