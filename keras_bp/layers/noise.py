"""Gaussian noise layers: additive (GaussianNoise) and multiplicative (GaussianDropout), in training only."""

import math

import keras
import tensorflow as tf

from keras_bp._validation import check_unit_interval
from keras_bp.core import manual_gradient
from keras_bp.layers._stateless import build_at_init
from keras_bp.layers.dropout import dropout_backward, dropout_forward


def gaussian_noise_forward(x, noise):
    """y = x + n, n ~ N(0, stddev^2) drawn outside (not differentiable)."""
    return x + noise, None


def gaussian_noise_backward(saved, dy):
    """dx = dy: the noise is a constant of the step."""
    return dy, None


_gaussian_noise = manual_gradient(gaussian_noise_forward, gaussian_noise_backward, name="gaussian_noise")

# Multiplicative noise is dropout's op with a Gaussian mask: y = x * n, dx = dy * n.
_gaussian_dropout = manual_gradient(dropout_forward, dropout_backward, name="gaussian_dropout")


def _checked(name, value):
    # Keras's words lead (see keras_bp._validation); the value is kept as
    # given, as Keras keeps it (its config shows an int as an int).
    return check_unit_interval(
        name, value, lead=f"Invalid value received for argument `{name}`. Expected a float value between 0 and 1."
    )


class _NoiseLayer(keras.layers.Layer):
    """What both noise layers share: their one scale argument (checked as Keras does), the seed, the generator."""

    def __init__(self, name_of_scale, scale, seed=None, **kwargs):
        _checked(name_of_scale, scale)
        super().__init__(**kwargs)
        setattr(self, name_of_scale, scale)
        self.seed = seed
        self.supports_masking = True
        if scale > 0:
            self.seed_generator = keras.random.SeedGenerator(seed)
        build_at_init(self)

    def _normal(self, inputs, mean, stddev):
        # Drawn as Keras draws it: same generator, same op, the compute dtype.
        return keras.random.normal(
            shape=tf.shape(inputs), mean=mean, stddev=stddev, dtype=self.compute_dtype, seed=self.seed_generator
        )

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="keras_bp")
class GaussianNoise(_NoiseLayer):
    """Adds zero-centered Gaussian noise in training (drop-in for `keras.layers.GaussianNoise`).

        y = x + n,  n ~ N(0, stddev^2)      dx = dy

    Args:
        stddev: Float in [0, 1], the standard deviation of the noise.
        seed: Integer seed for the random generator.

    Call arguments:
        inputs: Input tensor (of any rank).
        training: Whether to add noise (training) or pass the input through.
    """

    def __init__(self, stddev, seed=None, **kwargs):
        super().__init__("stddev", stddev, seed=seed, **kwargs)

    def call(self, inputs, training=False):
        if not training or self.stddev == 0:
            return inputs
        return _gaussian_noise(inputs, self._normal(inputs, 0.0, self.stddev))

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev, "seed": self.seed}


@keras.saving.register_keras_serializable(package="keras_bp")
class GaussianDropout(_NoiseLayer):
    """Multiplies by 1-centered Gaussian noise in training (drop-in for `keras.layers.GaussianDropout`).

        y = x * n,  n ~ N(1, rate / (1 - rate))      dx = dy * n

    Args:
        rate: Float in [0, 1], the drop probability; the noise's standard
            deviation is sqrt(rate / (1 - rate)).
        seed: Integer seed for the random generator.

    Call arguments:
        inputs: Input tensor (of any rank).
        training: Whether to apply the noise (training) or pass the input through.
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__("rate", rate, seed=seed, **kwargs)

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        stddev = math.sqrt(self.rate / (1.0 - self.rate))
        return _gaussian_dropout(inputs, self._normal(inputs, 1.0, stddev))

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
