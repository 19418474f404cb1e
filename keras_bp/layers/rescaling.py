"""Rescaling: y = x * scale + offset, and its backward dL/dx = dy * scale.

    y = x * scale + offset                       (x's shape, scale and offset broadcast)
    dL/dx = sum_to(dy * scale, x)                (x's shape)

`scale` and `offset` are constants (numbers or arrays, per channel say), so
only x gets a gradient; an integer input is cast to the compute dtype first,
as Keras does, and gets none.
"""

import keras
import tensorflow as tf
from keras.src.saving import serialization_lib

from keras_bp.core import manual_gradient
from keras_bp.layers._broadcast import sum_to_shape
from keras_bp.layers._stateless import build_at_init


def _rescale_forward(x, scale, offset):
    return x * scale + offset, (scale, tf.shape(x))


def _rescale_backward(saved, dy):
    scale, x_shape = saved
    return sum_to_shape(dy * scale, x_shape), None, None


_rescale = manual_gradient(_rescale_forward, _rescale_backward, name="rescaling")


@keras.saving.register_keras_serializable(package="keras_bp")
class Rescaling(keras.layers.Layer):
    """Multiplies the input by `scale` and adds `offset` (drop-in for `keras.layers.Rescaling`).

    Args:
        scale: Float, or an array broadcast against the input (per channel:
            with `keras.config.image_data_format()` "channels_first" a
            vector scale is laid along axis -3, as Keras does).
        offset: Float, or an array broadcast against the input.

    Input shape:
        Any; integer inputs give outputs in the layer's compute dtype.

    Output shape:
        The input's shape.
    """

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale
        self.offset = offset
        self.supports_masking = True
        build_at_init(self)

    def call(self, inputs):
        dtype = self.compute_dtype
        scale = tf.cast(self.scale, dtype)
        offset = tf.cast(self.offset, dtype)
        if len(scale.shape) > 0 and keras.config.image_data_format() == "channels_first":
            # Keras's rule: a per-channel scale of an image in channels_first order.
            scale = tf.reshape(scale, tuple(scale.shape) + (1,) * (3 - len(scale.shape)))
        return _rescale(tf.cast(inputs, dtype), scale, offset)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        # scale and offset may be NumPy arrays: serialized the Keras way.
        return {
            **super().get_config(),
            "scale": serialization_lib.serialize_keras_object(self.scale),
            "offset": serialization_lib.serialize_keras_object(self.offset),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for name in ("scale", "offset"):
            config[name] = serialization_lib.deserialize_keras_object(config[name], custom_objects=custom_objects)
        return cls(**config)
