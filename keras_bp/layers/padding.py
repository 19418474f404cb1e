"""Padding and cropping (ZeroPadding1D/2D/3D, Cropping1D/2D/3D): each is the other's backward.

Along each spatial axis, with (before, after) the amounts added or removed:

    pad:   y = [0 (before) | x | 0 (after)]        dL/dx = crop(dy, before, after)
    crop:  y = x[before : n - after]               dL/dx = pad(dy, before, after)

Padding's zeros depend on nothing, so the gradient of x is the part of dy
that x fills: dy cropped. Cropping drops the edges, which get no gradient:
dy padded with zeros. The two plain functions `_pad` and `_crop` below are
both the forward of one op and the backward of the other.
"""

import functools

import keras
import tensorflow as tf
from keras.src.backend import standardize_data_format
from keras.src.utils.argument_validation import standardize_tuple

from keras_bp._validation import invalid
from keras_bp.core import manual_gradient
from keras_bp.layers._stateless import build_at_init


def _pad(x, amounts):
    """x with `amounts[a] = (before, after)` zeros added along each axis a."""
    return tf.pad(x, amounts)


def _crop(x, amounts):
    """x with `amounts[a] = (before, after)` entries removed along each axis a."""
    shape = tf.shape(x)
    begin = [before for before, _ in amounts]
    size = [shape[a] - before - after for a, (before, after) in enumerate(amounts)]
    return tf.slice(x, begin, size)


@functools.lru_cache(maxsize=None)
def _pad_op(amounts):
    return manual_gradient(lambda x: (_pad(x, amounts), None), lambda _, dy: _crop(dy, amounts), name="zero_padding")


@functools.lru_cache(maxsize=None)
def _crop_op(amounts):
    return manual_gradient(lambda x: (_crop(x, amounts), None), lambda _, dy: _pad(dy, amounts), name="cropping")


# --- arguments, with Keras's checks and words ---------------------------------------


def _data_format(data_format):
    try:
        return standardize_data_format(data_format)
    except ValueError as error:
        raise invalid("data_format", data_format, "'channels_last' or 'channels_first'", lead=str(error)) from None


def _pair(value, name):
    """(before, after), two integers >= 0 (Keras's standardize_tuple with allow_zero)."""
    try:
        return standardize_tuple(value, 2, name, allow_zero=True)
    except ValueError as error:
        raise invalid(name, value, "an integer >= 0 or a tuple of 2 of them", lead=str(error)) from None


_ORDINALS = ("1st", "2nd", "3rd")


def _pairs(value, rank, name, kind):
    """((before, after),) * rank from an int, a tuple of `rank` ints or a tuple of `rank` pairs (Keras's rules)."""
    accepted = f"an integer >= 0, a tuple of {rank} of them or a tuple of {rank} pairs of them"
    if isinstance(value, int):
        if name == "cropping" and value < 0:
            raise invalid(name, value, accepted, lead=f"`cropping` cannot be negative. Received: cropping={value}.")
        return ((value, value),) * rank
    if hasattr(value, "__len__"):
        if len(value) != rank:
            lead = (
                f"`{name}` should have two elements. Received: {name}={value}." if rank == 2
                else f"`{name}` should have 3 elements. Received: {value}."
            )
            raise invalid(name, value, accepted, lead)
        return tuple(_pair(v, f"{_ORDINALS[i]} entry of {name}") for i, v in enumerate(value))
    if rank == 2:
        lead = (
            f"`{name}` should be either an int, a tuple of 2 ints "
            f"(symmetric_height_{kind}, symmetric_width_{kind}), "
            f"or a tuple of 2 tuples of 2 ints ((top_{kind}, bottom_{kind}), (left_{kind}, right_{kind})). "
            f"Received: {name}={value}."
        )
    else:
        lead = (
            f"`{name}` should be either an int, a tuple of 3 ints "
            f"(symmetric_dim1_{kind}, symmetric_dim2_{kind}, symmetric_dim3_{kind}), "
            f"or a tuple of 3 tuples of 2 ints ((left_dim1_{kind}, right_dim1_{kind}), "
            f"(left_dim2_{kind}, right_dim2_{kind}), (left_dim3_{kind}, right_dim2_{kind})). "
            + (f"Received: {name}={value}." if name == "padding" else f"Received: {value}.")
        )
    raise invalid(name, value, accepted, lead)


def _all_axes(spatial, data_format):
    """The spatial (before, after) pairs with (0, 0) for the batch and channels axes."""
    if data_format == "channels_first":
        return ((0, 0), (0, 0), *spatial)
    return ((0, 0), *spatial, (0, 0))


def _spatial_axes(rank, data_format):
    return tuple(range(2, rank + 2)) if data_format == "channels_first" else tuple(range(1, rank + 1))


# --- layers -----------------------------------------------------------------------------


# --- the six layers ----------------------------------------------------------------

# Per rank: what is padded or cropped, the input shape, the output shape.
_AXES = {
    1: ("the steps axis", "`(batch_size, steps, features)`", "(batch_size, {what}_steps, features)"),
    2: ("height and width", "`(batch_size, height, width, channels)` (channels_last)",
        "(batch_size, {what}_height, {what}_width, channels)"),
    3: ("three spatial axes", "`(batch_size, dim1, dim2, dim3, channels)` (channels_last)",
        "(batch_size, {what}_dim1, {what}_dim2, {what}_dim3, channels)"),
}
_AMOUNTS = {
    1: "Int, or tuple of 2 ints: entries {how} at the start and the end of the steps axis.",
    2: "Int, tuple of 2 ints (symmetric height and width), or tuple of 2 tuples of 2 ints\n"
       "            `((top, bottom), (left, right))`.",
    3: "Int, tuple of 3 ints, or tuple of 3 tuples of 2 ints `((before, after),) * 3`.",
}
_DATA_FORMAT = """
        data_format: `"channels_last"` or `"channels_first"`; None means
            `keras.config.image_data_format()`."""


def _doc(kind, rank):
    """The docstring of ZeroPadding{rank}D or Cropping{rank}D (Cropping1D has no data_format, as Keras's)."""
    padding = kind == "ZeroPadding"
    axes, input_shape, output_shape = _AXES[rank]
    verb, argument, what = ("Pads", "padding", "padded") if padding else ("Crops", "cropping", "cropped")
    data_format = _DATA_FORMAT if padding or rank > 1 else ""
    amounts = _AMOUNTS[rank].format(how="added (zeros)" if padding else "removed")
    return f"""{verb} {axes}{" with zeros" if padding else ""} (drop-in for `keras.layers.{kind}{rank}D`).

    Forward and backward: `_{"pad" if padding else "crop"}_op`, whose backward is
    `_{"crop" if padding else "pad"}` (see the module docstring).

    Args:
        {argument}: {amounts}{data_format}

    Input shape:
        {input_shape}.

    Output shape:
        `{output_shape.format(what=what)}`.
    """


class _ZeroPadding(keras.layers.Layer):
    _rank = 2

    def __init__(self, padding, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = _data_format(data_format)
        self.padding = (
            _pair(padding, "padding") if self._rank == 1 else _pairs(padding, self._rank, "padding", "pad")
        )
        self.input_spec = keras.layers.InputSpec(ndim=self._rank + 2)
        build_at_init(self)

    def _spatial_padding(self):
        return (self.padding,) if self._rank == 1 else self.padding

    def call(self, inputs):
        return _pad_op(_all_axes(self._spatial_padding(), self.data_format))(inputs)

    def compute_output_shape(self, input_shape):
        output = list(input_shape)
        for axis, (before, after) in zip(_spatial_axes(self._rank, self.data_format), self._spatial_padding()):
            if output[axis] is not None:
                output[axis] += before + after
        return tuple(output)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "data_format": self.data_format}


@keras.saving.register_keras_serializable(package="keras_bp")
class ZeroPadding1D(_ZeroPadding):
    __doc__ = _doc("ZeroPadding", 1)

    _rank = 1

    def __init__(self, padding=1, data_format=None, **kwargs):
        super().__init__(padding, data_format, **kwargs)


@keras.saving.register_keras_serializable(package="keras_bp")
class ZeroPadding2D(_ZeroPadding):
    __doc__ = _doc("ZeroPadding", 2)

    _rank = 2

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(padding, data_format, **kwargs)


@keras.saving.register_keras_serializable(package="keras_bp")
class ZeroPadding3D(_ZeroPadding):
    __doc__ = _doc("ZeroPadding", 3)

    _rank = 3

    def __init__(self, padding=((1, 1), (1, 1), (1, 1)), data_format=None, **kwargs):
        super().__init__(padding, data_format, **kwargs)


class _Cropping(keras.layers.Layer):
    _rank = 2

    def __init__(self, cropping, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if self._rank == 1:
            # Cropping1D has no data_format: steps are axis 1.
            self.cropping = _pair(cropping, "cropping")
        else:
            self.data_format = _data_format(data_format)
            self.cropping = _pairs(cropping, self._rank, "cropping", "crop")
        self.input_spec = keras.layers.InputSpec(ndim=self._rank + 2)
        build_at_init(self)

    def _layout(self):
        if self._rank == 1:
            return (self.cropping,), "channels_last"
        return self.cropping, self.data_format

    def _cropped_shape(self, shape, what):
        """The output shape; raises, with Keras's words, where a crop removes a whole axis."""
        spatial, data_format = self._layout()
        output = list(shape)
        for axis, (before, after) in zip(_spatial_axes(self._rank, data_format), spatial):
            if output[axis] is not None:
                output[axis] -= before + after
                if output[axis] <= 0:
                    if self._rank == 1:
                        lead = (
                            "`cropping` parameter of `Cropping1D` layer must be smaller than the input length. "
                            f"Received: {what}={shape}, cropping={self.cropping}"
                        )
                    else:
                        lead = (
                            "Values in `cropping` argument should be smaller than the corresponding spatial "
                            f"dimension of the input. Received: {what}={shape}, cropping={self.cropping}"
                        )
                    raise invalid("cropping", self.cropping, "smaller than the input along each axis", lead)
        return tuple(output)

    def call(self, inputs):
        self._cropped_shape(inputs.shape, "inputs.shape")
        spatial, data_format = self._layout()
        return _crop_op(_all_axes(spatial, data_format))(inputs)

    def compute_output_shape(self, input_shape):
        return self._cropped_shape(input_shape, "input_shape")

    def get_config(self):
        config = {**super().get_config(), "cropping": self.cropping}
        if self._rank > 1:
            config["data_format"] = self.data_format
        return config


@keras.saving.register_keras_serializable(package="keras_bp")
class Cropping1D(_Cropping):
    __doc__ = _doc("Cropping", 1)

    _rank = 1

    def __init__(self, cropping=(1, 1), **kwargs):
        super().__init__(cropping, **kwargs)


@keras.saving.register_keras_serializable(package="keras_bp")
class Cropping2D(_Cropping):
    __doc__ = _doc("Cropping", 2)

    _rank = 2

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(cropping, data_format, **kwargs)


@keras.saving.register_keras_serializable(package="keras_bp")
class Cropping3D(_Cropping):
    __doc__ = _doc("Cropping", 3)

    _rank = 3

    def __init__(self, cropping=((1, 1), (1, 1), (1, 1)), data_format=None, **kwargs):
        super().__init__(cropping, data_format, **kwargs)
