"""Spatial helpers of the windowed layers (convolutions, pooling): argument forms, output sizes, NHWC layout.

Every convolution and pooling layer, of any rank and data format, reads its
window arguments through the `standardize_*` checks, sizes its output with
`windowed_output_shape`, and runs its math on 4-D NHWC tensors through a
`Layout`.
"""

import numbers
from typing import NamedTuple

import keras
import tensorflow as tf

from keras_bp._validation import invalid

# --- argument forms -----------------------------------------------------------


def standardize_tuple(name, value, n):
    """An int or n ints, each a positive integer, as a tuple of n ints."""
    values = (value,) * n if isinstance(value, numbers.Integral) else value
    try:
        values = tuple(values)
    except TypeError:
        values = None
    if (
        values is None
        or len(values) != n
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in values)
    ):
        # Keras's words lead (see keras_bp._validation).
        lead = f"The `{name}` argument must be a tuple of {n} integers. Received {name}={value}"
        non_positive = {v for v in values or () if isinstance(v, numbers.Real) and v <= 0}
        if non_positive:
            lead += f", including values {non_positive} that do not satisfy `value > 0`"
        raise invalid(name, value, f"a positive integer or a tuple of {n} positive integers", lead + ".")
    return tuple(int(v) for v in values)


def standardize_padding(padding, allowed):
    """'valid', 'same' (any case), or 'causal' where allowed."""
    if isinstance(padding, str) and padding.lower() in allowed:
        return padding.lower()
    raise ValueError(
        f"padding must be one of {', '.join(repr(a) for a in allowed)}, "
        f"received: padding={padding!r}"
    )


def standardize_data_format(data_format):
    """None means keras.config.image_data_format(), as in Keras."""
    if data_format is None:
        data_format = keras.config.image_data_format()
    if isinstance(data_format, str) and data_format.lower() in ("channels_last", "channels_first"):
        return data_format.lower()
    raise ValueError(
        "data_format must be 'channels_last' or 'channels_first', "
        f"received: data_format={data_format!r}"
    )


# --- output sizes -------------------------------------------------------------


def spatial_shape(input_shape, data_format):
    """The spatial sizes of an input shape (batch and channels dropped)."""
    return tuple(input_shape[1:-1] if data_format == "channels_last" else input_shape[2:])


def output_size(n, window, stride, dilation, padding):
    """Length of one output axis; None for an unknown input length.

        valid:        floor((n - d (k - 1) - 1) / s) + 1
        same, causal: ceil(n / s)
    """
    if n is None:
        return None
    if padding == "valid":
        return (n - dilation * (window - 1) - 1) // stride + 1
    return -(-n // stride)


def check_output_not_empty(layer_name, input_shape, out_spatial, window_name, window, lead=None):
    """A 'valid' window larger than the input gives an empty output: say so (after `lead`, Keras's words)."""
    if any(n is not None and n <= 0 for n in out_spatial):
        raise ValueError(
            ("" if lead is None else f"{lead} ")
            + f"{layer_name}: {window_name}={window} does not fit in the input "
            f"with padding='valid' (the output would have spatial shape "
            f"{tuple(out_spatial)}), received: input_shape={tuple(input_shape)}. "
            "Use a smaller window, padding='same', or a larger input."
        )


def windowed_output_shape(layer, input_shape, window_name, window, dilations, channels, lead=None):
    """The output shape of a convolution or pooling `layer`, in its data format.

    Reads the layer's `data_format`, `strides` and `padding`; `window`
    (kernel_size or pool_size, named `window_name` in the error), `dilations`
    and the output `channels` are the caller's. Raises for a window that does
    not fit (see `check_output_not_empty`; `lead` puts Keras's words first).
    """
    input_shape = tuple(input_shape)
    out_spatial = tuple(
        output_size(n, k, s, d, layer.padding)
        for n, k, s, d in zip(spatial_shape(input_shape, layer.data_format), window, layer.strides, dilations)
    )
    check_output_not_empty(type(layer).__name__, input_shape, out_spatial, window_name, window, lead)
    if layer.data_format == "channels_last":
        return (input_shape[0],) + out_spatial + (channels,)
    return (input_shape[0], channels) + out_spatial


# --- layout: every op computes on (batch, height, width, channels) -----------


class Layout(NamedTuple):
    """How a layer's tensors map to the 4-D NHWC tensors the math runs on."""

    rank: int  # 1 or 2 spatial axes
    channels_first: bool

    def to_nhwc(self, x):
        """(N, C, *spatial) or (N, *spatial, C) -> (N, H, W, C); H = 1 for rank 1."""
        if self.channels_first:
            x = tf.transpose(x, (0,) + tuple(range(2, self.rank + 2)) + (1,))
        if self.rank == 1:
            x = tf.expand_dims(x, 1)
        return x

    def from_nhwc(self, x):
        """Inverse of to_nhwc."""
        if self.rank == 1:
            x = tf.squeeze(x, 1)
        if self.channels_first:
            x = tf.transpose(x, (0, self.rank + 1) + tuple(range(1, self.rank + 1)))
        return x

    def spatial_2d(self, values):
        """Per-axis window sizes or strides lifted to 2 axes: (k,) -> (1, k)."""
        return (1,) + tuple(values) if self.rank == 1 else tuple(values)
