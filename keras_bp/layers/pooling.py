"""The pooling layers: a max or an average, over windows or over all positions.

The windowed layers share one pair per mode, run on channels-last tensors
like the convolutions (`keras_bp.layers._spatial.Layout`: a 1-D input is an
image of height 1, a 3-D one is NDHWC, channels_first is transposed inside
the op). The global layers reduce over the spatial axes in the layer's own
layout.
"""

from typing import NamedTuple

import keras
import tensorflow as tf

from keras_bp.core import manual_gradient
from keras_bp.layers._spatial import (
    Layout,
    spatial_names,
    standardize_data_format,
    standardize_padding,
    standardize_tuple,
    windowed_output_shape,
)
from keras_bp.layers._stateless import build_at_init

# --- windowed pooling -------------------------------------------------------


def _pool_args(pool_size, strides, padding):
    # NOTE: the data format is given, though it is the default: TensorFlow's
    # eager gradient of MaxPool3D reads it from the op and fails without it.
    data_format = "NDHWC" if len(pool_size) == 3 else "NHWC"
    return dict(ksize=[1, *pool_size, 1], strides=[1, *strides, 1], padding=padding, data_format=data_format)


def _max_pool_grad(x, y, dy, **args):
    """MaxPoolGrad or MaxPool3DGrad, by rank: dL/dx from x, y = maxpool(x) and dy."""
    grad = tf.raw_ops.MaxPool3DGrad if x.shape.rank == 5 else tf.raw_ops.MaxPoolGrad
    return grad(orig_input=x, orig_output=y, grad=dy, **args)


def _average_pool_grad(x_shape, dy, **args):
    """AvgPoolGrad or AvgPool3DGrad, by rank: dL/dx from x's shape and dy."""
    grad = tf.raw_ops.AvgPool3DGrad if dy.shape.rank == 5 else tf.raw_ops.AvgPoolGrad
    return grad(orig_input_shape=x_shape, grad=dy, **args)


# --- float64 and float16 3-D pooling, as two 2-D poolings -----------------
# NOTE: TensorFlow's 3-D pooling ops take no float64, and have no float16
# kernel on CPU (Keras's 3-D pooling layers fail in both there); ours pool
# such an input as two 2-D poolings, which
# compute the same numbers: a (kd, kh, kw) box is a depth range times a
# (kh, kw) window, so its max is the max over depth of each depth slice's
# window max, and its mean the mean over depth of the slices' window means
# (with 'same' padding the box's count of input elements is the product of
# the counts along depth and in the window, so the edge means factor too).


class _SlicesSaved(NamedTuple):
    """What the 3-D pooling by slices saves: both stages' inputs and outputs, as the 2-D ops see them."""

    slices: tf.Tensor  # x as depth slices, (N D, H, W, C)
    u: tf.Tensor  # each slice pooled over (h, w), (N D, H', W', C)
    u_by_depth: tf.Tensor  # u with depth as the pooled axis, (N, D, H' W', C)
    y_by_depth: tf.Tensor  # u_by_depth pooled over depth, (N, D', H' W', C)


def _pool_by_slices(pool, x, pool_size, strides, padding):
    """y = pool over depth of (pool over (h, w) of each depth slice of x); `pool` is the 2-D pool."""
    (kd, *window), (sd, *window_strides) = pool_size, strides
    n, depth, c = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[4]
    slices = tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], 0))
    u = pool(slices, [1, *window, 1], [1, *window_strides, 1], padding)
    u_by_depth = tf.reshape(u, [n, depth, -1, c])
    y_by_depth = pool(u_by_depth, [1, kd, 1, 1], [1, sd, 1, 1], padding)
    y = tf.reshape(y_by_depth, tf.concat([[n, -1], tf.shape(u)[1:]], 0))
    return y, _SlicesSaved(slices, u, u_by_depth, y_by_depth)


def _pool_grad_by_slices(grad, saved, dy, x_shape, pool_size, strides, padding):
    """dL/dx of `_pool_by_slices`: each stage's 2-D gradient, the depth stage's first (the chain rule).

    `grad(x, y, dy, **args)` is the 2-D pool's gradient; du is the depth
    stage's gradient, routed back through each slice's (h, w) windows.
    """
    (kd, *window), (sd, *window_strides) = pool_size, strides
    dy_by_depth = tf.reshape(dy, tf.shape(saved.y_by_depth))
    du_by_depth = grad(saved.u_by_depth, saved.y_by_depth, dy_by_depth, **_pool_args((kd, 1), (sd, 1), padding))
    du = tf.reshape(du_by_depth, tf.shape(saved.u))
    dslices = grad(saved.slices, saved.u, du, **_pool_args(window, window_strides, padding))
    return tf.reshape(dslices, x_shape)


def _by_slices(x):
    return x.shape.rank == 5 and x.dtype in (tf.float64, tf.float16)


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
    above from x, y and dy; in 3-D (x: (N, D, H, W, C), windows over depth
    too) MaxPool3DGrad does, with one difference TensorFlow has: on CPU it
    gives each tied max the window's whole gradient (under XLA, the first
    in (depth, height, width) order gets it). Ours calls the same op, so it
    ties as Keras's does wherever it runs; a float16 or float64 3-D input,
    pooled by slices (below), sends it to the first, as XLA does.

    Saves x and y (a float64 or float16 3-D input: both stages', see `_pool_by_slices`).
    """
    args = _pool_args(pool_size, strides, padding)

    def forward(x):
        x = layout.to_nhwc(x)
        if _by_slices(x):
            y, saved = _pool_by_slices(tf.nn.max_pool2d, x, pool_size, strides, padding)
            return layout.from_nhwc(y), (tf.shape(x), saved)
        y = tf.nn.max_pool(x, **args)
        return layout.from_nhwc(y), (x, y)

    def backward(saved, dy):
        dy = layout.to_nhwc(dy)
        if isinstance(saved[1], _SlicesSaved):
            dx = _pool_grad_by_slices(_max_pool_grad, saved[1], dy, saved[0], pool_size, strides, padding)
        else:
            dx = _max_pool_grad(*saved, dy, **args)
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

    AvgPoolGrad computes exactly this sum (it needs only x's shape), and
    AvgPool3DGrad in 3-D (x: (N, D, H, W, C), windows over depth too). Saves
    nothing but that shape (a float64 or float16 3-D input: both stages'
    tensors, see `_pool_by_slices`).
    """
    args = _pool_args(pool_size, strides, padding)

    def by_slices_grad(x, y, dy, **args):
        return _average_pool_grad(tf.shape(x), dy, **args)

    def forward(x):
        x = layout.to_nhwc(x)
        if _by_slices(x):
            y, saved = _pool_by_slices(tf.nn.avg_pool2d, x, pool_size, strides, padding)
            return layout.from_nhwc(y), (tf.shape(x), saved)
        y = tf.nn.avg_pool(x, **args)
        return layout.from_nhwc(y), (tf.shape(x), None)

    def backward(saved, dy):
        x_shape, slices_saved = saved
        dy = layout.to_nhwc(dy)
        if slices_saved is not None:
            dx = _pool_grad_by_slices(by_slices_grad, slices_saved, dy, x_shape, pool_size, strides, padding)
        else:
            dx = _average_pool_grad(x_shape, dy, **args)
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
        `(batch, {spatial}, channels)`
        or `(batch, channels, {spatial})`.

    Output shape:
        `(batch, {pooled}, channels)`
        or `(batch, channels, {pooled})`.
    """


def _pool_doc(mode, rank, name, op):
    spatial, pooled = spatial_names(rank), spatial_names(rank, "pooled_")
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
class MaxPooling3D(_Pooling):
    __doc__ = _pool_doc("Max", 3, "MaxPooling3D", "max_pool_op")
    rank, make_op = 3, staticmethod(max_pool_op)

    def __init__(self, pool_size=(2, 2, 2), strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, name=name, **kwargs)


@keras.saving.register_keras_serializable(package="keras_bp")
class AveragePooling1D(_Pooling):
    __doc__ = _pool_doc("Average", 1, "AveragePooling1D", "average_pool_op")
    rank, make_op = 1, staticmethod(average_pool_op)


@keras.saving.register_keras_serializable(package="keras_bp")
class AveragePooling2D(_Pooling):
    __doc__ = _pool_doc("Average", 2, "AveragePooling2D", "average_pool_op")
    rank, make_op = 2, staticmethod(average_pool_op)


@keras.saving.register_keras_serializable(package="keras_bp")
class AveragePooling3D(_Pooling):
    __doc__ = _pool_doc("Average", 3, "AveragePooling3D", "average_pool_op")
    rank, make_op = 3, staticmethod(average_pool_op)


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
        `(batch, {spatial}, channels)`
        or `(batch, channels, {spatial})`.

    Output shape:
        `(batch, channels)`, or with keepdims the input's rank with each
        spatial axis of length 1.
    """


_MASK_DOC = """

    Call arguments:
        inputs: 3-D tensor.
        mask: `(batch, steps)` booleans; masked steps are left out of the average."""


def _global_doc(mode, rank, name, op, extra=""):
    what = {1: "steps", 2: "height and width", 3: "three spatial axes"}[rank]
    spatial = spatial_names(rank)
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


@keras.saving.register_keras_serializable(package="keras_bp")
class GlobalAveragePooling3D(_GlobalPooling):
    __doc__ = _global_doc("average", 3, "GlobalAveragePooling3D", "global_average_pool_op")
    rank, mode = 3, "average"

    def call(self, inputs):
        return self._op(inputs, None)


@keras.saving.register_keras_serializable(package="keras_bp")
class GlobalMaxPooling3D(_GlobalPooling):
    __doc__ = _global_doc("max", 3, "GlobalMaxPooling3D", "global_max_pool_op")
    rank, mode = 3, "max"
