"""Dropout: y = x * m / (1 - rate) in training, with m ~ Bernoulli(1 - rate) per element or per channel.

Dropout draws m per element (or per `noise_shape` slice); SpatialDropout1D/2D/3D
draw one m per example and channel, shared over the spatial axes. All share
one op: y = x * s, dx = dy * s, s = m / (1 - rate).
"""

import numbers

import keras
import tensorflow as tf

from keras_bp._validation import check_unit_interval, invalid
from keras_bp.core import manual_gradient
from keras_bp.layers._spatial import standardize_data_format
from keras_bp.layers._stateless import build_at_init


def _validated_noise_shape(noise_shape):
    """`noise_shape` as a tuple (or None); raises unless each entry is a positive integer or None."""
    if noise_shape is None:
        return None

    def error(expected):
        # Keras's words lead (see keras_bp._validation).
        lead = f"Invalid value received for argument `noise_shape`. Expected {expected}."
        return invalid("noise_shape", noise_shape, "a tuple of positive integers or None", lead)

    if isinstance(noise_shape, str):
        raise error("a tuple or list of integers")
    try:
        noise_shape = tuple(noise_shape)
    except TypeError:
        raise error("an iterable of integers (e.g., a tuple or list)") from None
    for d in noise_shape:
        if d is not None and (not isinstance(d, numbers.Integral) or isinstance(d, bool)):
            raise error("all elements to be integers or None")
        if d is not None and d <= 0:
            raise error("all dimensions to be positive integers or None")
    return noise_shape


def dropout_forward(x, scaled_mask):
    """y = x * s, where s = m / (1 - rate) is the scaled keep-mask (0 or 1/(1-rate))."""
    return x * scaled_mask, scaled_mask


def dropout_backward(scaled_mask, dy):
    """dx = dy * s: the same mask, scaled. The mask is not differentiable."""
    return dy * scaled_mask, None


_dropout = manual_gradient(dropout_forward, dropout_backward, name="dropout")


@keras.saving.register_keras_serializable(package="keras_bp")
class Dropout(keras.layers.Layer):
    """Applies dropout to the input (drop-in for `keras.layers.Dropout`).

    In training, each element (or each slice, with `noise_shape`) is kept with
    probability `1 - rate` and scaled by `1 / (1 - rate)`, so the expected
    output equals the input; in inference the layer is the identity. The mask
    is drawn exactly as Keras draws it (same seed generator, same op), so with
    the same seed both layers drop the same units.

    Args:
        rate: Float in [0, 1], the fraction of the input units to drop.
        noise_shape: 1D tuple of integers, the shape of the binary dropout
            mask that is broadcast over the input (`None` entries take the
            input's dimension).
        seed: Integer seed for the random generator.

    Call arguments:
        inputs: Input tensor (of any rank).
        training: Whether the layer should behave in training mode.
    """

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = check_unit_interval(
            "rate", rate, lead="Invalid value received for argument `rate`. Expected a float value between 0 and 1."
        )
        self.seed = seed
        self.noise_shape = _validated_noise_shape(noise_shape)
        if self.rate > 0:
            self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True
        build_at_init(self)

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        scaled_mask = keras.random.dropout(
            tf.ones_like(inputs), self.rate, noise_shape=self.noise_shape, seed=self.seed_generator
        )
        return _dropout(inputs, scaled_mask)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed, "noise_shape": self.noise_shape}


class _SpatialDropout(Dropout):
    """Dropout of whole channels: the mask is drawn per example and channel (Keras's BaseSpatialDropout)."""

    rank = None  # the input's rank, batch and channels included

    def __init__(self, rate, seed=None, name=None, dtype=None):
        super().__init__(rate, seed=seed, name=name, dtype=dtype)
        self.input_spec = keras.layers.InputSpec(ndim=self.rank)

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        scaled_mask = keras.random.dropout(
            tf.ones_like(inputs), self.rate, noise_shape=self._noise_shape(inputs), seed=self.seed_generator
        )
        return _dropout(inputs, scaled_mask)

    def _noise_shape(self, inputs):
        """(batch, 1, ..., 1, channels), or (batch, channels, 1, ..., 1) for channels_first."""
        shape = tf.shape(inputs)
        spatial = [1] * (self.rank - 2)
        if getattr(self, "data_format", "channels_last") == "channels_first":
            return (shape[0], shape[1], *spatial)
        return (shape[0], *spatial, shape[-1])

    def get_config(self):
        # As Keras: only these (no trainable, no noise_shape).
        return {"rate": self.rate, "seed": self.seed, "name": self.name, "dtype": self.dtype}


# Per rank: what is dropped whole, the input layout(s).
_SPATIAL = {
    1: ("whole channels of (batch, steps, channels)", None),
    2: ("whole feature maps", ("(batch, rows, cols, channels)", "(batch, channels, rows, cols)")),
    3: ("whole 3D feature maps", ("(batch, dim1, dim2, dim3, channels)", "(batch, channels, dim1, dim2, dim3)")),
}


def _spatial_doc(rank):
    """The docstring of SpatialDropout{rank}D (SpatialDropout1D has no data_format, as Keras's)."""
    what, layouts = _SPATIAL[rank]
    data_format = "" if layouts is None else f"""
        data_format: "channels_last" {layouts[0]} or
            "channels_first" {layouts[1]}; defaults to
            `keras.config.image_data_format()`."""
    return f"""Spatial {rank}D dropout: drops {what} (drop-in for `keras.layers.SpatialDropout{rank}D`).

    Args:
        rate: Float in [0, 1], the fraction of the channels to drop.{data_format}
        seed: Integer seed for the random generator.

    Call arguments:
        inputs: A {rank + 2}D tensor.
        training: Whether the layer should behave in training mode.
    """


@keras.saving.register_keras_serializable(package="keras_bp")
class SpatialDropout1D(_SpatialDropout):
    __doc__ = _spatial_doc(1)

    rank = 3


class _SpatialDropoutWithFormat(_SpatialDropout):
    def __init__(self, rate, data_format=None, seed=None, name=None, dtype=None):
        super().__init__(rate, seed=seed, name=name, dtype=dtype)
        self.data_format = standardize_data_format(data_format)

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


@keras.saving.register_keras_serializable(package="keras_bp")
class SpatialDropout2D(_SpatialDropoutWithFormat):
    __doc__ = _spatial_doc(2)

    rank = 4


@keras.saving.register_keras_serializable(package="keras_bp")
class SpatialDropout3D(_SpatialDropoutWithFormat):
    __doc__ = _spatial_doc(3)

    rank = 5
