"""Spatial helpers of the windowed layers (convolutions, pooling): argument forms, output sizes, channels-last layout.

Every convolution and pooling layer, of any rank and data format, reads its
window arguments through the `standardize_*` checks, sizes its output with
`windowed_output_shape` (a transposed convolution with
`transposed_output_size`), and runs its math on channels-last tensors
through a `Layout`: 4-D NHWC for ranks 1 and 2, 5-D NDHWC for rank 3.
"""

import numbers
from typing import NamedTuple

import keras
import tensorflow as tf

from keras_bp._validation import check_positive_int, invalid

# --- argument forms -----------------------------------------------------------


def standardize_tuple(name, value, n, allow_zero=False):
    """An int or n ints, each a positive integer (or >= 0 with `allow_zero`), as a tuple of n ints."""
    low, requirement = (0, ">= 0") if allow_zero else (1, "> 0")
    values = (value,) * n if isinstance(value, numbers.Integral) else value
    try:
        values = tuple(values)
    except TypeError:
        values = None
    if (
        values is None
        or len(values) != n
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= low for v in values)
    ):
        # Keras's words lead (see keras_bp._validation).
        lead = f"The `{name}` argument must be a tuple of {n} integers. Received {name}={value}"
        out_of_range = {v for v in values or () if isinstance(v, numbers.Real) and v < low}
        if out_of_range:
            lead += f", including values {out_of_range} that do not satisfy `value {requirement}`"
        kind = "non-negative" if allow_zero else "positive"
        raise invalid(name, value, f"a {kind} integer or a tuple of {n} {kind} integers", lead + ".")
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


def check_filters(filters):
    """A convolution's `filters` (plain and transposed) as an int; raises unless it is an integer > 0."""
    # Keras's words lead (see keras_bp._validation).
    lead = f"Invalid value for argument `filters`. Expected a strictly positive value. Received filters={filters}."
    return check_positive_int("filters", filters, lead=lead)


def check_strides_with_dilation(strides, dilation_rate):
    """Convolutions (plain and transposed) refuse strides > 1 with dilation_rate > 1, as Keras's do."""
    if max(strides) > 1 and max(dilation_rate) > 1:
        # Keras raises the same: TensorFlow's convolution has no such mode.
        raise ValueError(
            "strides > 1 is not supported together with dilation_rate > 1, "
            f"received: strides={strides}, dilation_rate={dilation_rate}. "
            "`strides > 1` not supported in conjunction with `dilation_rate > 1`. "
            f"Received: strides={strides} and dilation_rate={dilation_rate}"
        )


# The spatial axes' names in the docstrings, per rank (Keras's names).
SPATIAL_AXES = {1: ("steps",), 2: ("height", "width"), 3: ("spatial_dim1", "spatial_dim2", "spatial_dim3")}


def spatial_names(rank, prefix=""):
    """The spatial axes of a shape in a docstring: `"height, width"` (prefix `"new_"`: `"new_height, new_width"`)."""
    return ", ".join(prefix + axis for axis in SPATIAL_AXES[rank])


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


def transposed_output_size(n, window, stride, dilation, padding, output_padding=None):
    """Length of one output axis of a transposed convolution (Keras's formula); None for an unknown length.

    With k_e = d (k - 1) + 1, the dilated window, and p = output_padding:
        valid: (n - 1) s + k_e + p        (p = None: p = max(k_e, s) - k_e)
        same:  (n - 1) s + k_e mod 2 + p  (p = None: n s)
    It is a length whose convolution (same window, stride, dilation and
    padding) has length n, so the transposed convolution maps a
    convolution's output back to its input's shape. `n` may be a tensor.
    """
    if n is None:
        return None
    effective = dilation * (window - 1) + 1
    if padding.lower() == "valid":
        extra = max(effective, stride) - effective if output_padding is None else output_padding
        return (n - 1) * stride + effective + extra
    if output_padding is None:
        return n * stride
    return (n - 1) * stride + effective % 2 + output_padding


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


# --- layout: every op computes on (batch, *spatial, channels) ----------------


class Layout(NamedTuple):
    """How a layer's tensors map to the channels-last tensors the math runs on.

    Ranks 1 and 2 run in NHWC (a 1-D input is an image of height 1), rank 3
    in NDHWC; `to_nhwc` names the 2-D case, the most common.
    """

    rank: int  # 1, 2 or 3 spatial axes
    channels_first: bool

    def to_nhwc(self, x):
        """(N, C, *spatial) or (N, *spatial, C) -> (N, H, W, C), H = 1 for rank 1; (N, D, H, W, C) for rank 3."""
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

    def spatial_2d(self, values, lift=1):
        """Per-axis window sizes or strides on the math's axes: rank 1 lifted to 2, (k,) -> (lift, k); else as given."""
        return (lift,) + tuple(values) if self.rank == 1 else tuple(values)
