"""Normalization (the preprocessing layer): y = (x - mean) / d, d = max(sqrt(var), eps), and its backward.

    y     = (x - mean) / d        d = max(sqrt(variance), epsilon)   (x's shape)
    dL/dx = dy / d                                                   (x's shape)

and with `invert=True` the inverse map and its backward:

    y     = mean + x d
    dL/dx = dy d

mean and variance are statistics (set by `adapt` or given), not trained: they
get no gradient. They broadcast against x along the kept `axis`, so x has the
output's shape and dL/dx needs no sum.
"""

import keras
import tensorflow as tf

from keras_bp.core import manual_gradient


def _spread(variance, epsilon):
    """d = max(sqrt(var), eps): NOTE: Keras's guard against a zero variance (a constant feature)."""
    return tf.maximum(tf.sqrt(variance), epsilon)


def _normalize_forward(x, mean, variance):
    d = _spread(variance, keras.backend.epsilon())
    return (x - mean) / d, d


def _normalize_backward(d, dy):
    return dy / d, None, None


def _denormalize_forward(x, mean, variance):
    d = _spread(variance, keras.backend.epsilon())
    return mean + x * d, d


def _denormalize_backward(d, dy):
    return dy * d, None, None


_normalize = manual_gradient(_normalize_forward, _normalize_backward, name="normalization")
_denormalize = manual_gradient(_denormalize_forward, _denormalize_backward, name="denormalization")


@keras.saving.register_keras_serializable(package="keras_bp")
class Normalization(keras.layers.Normalization):
    """Shifts and scales features by their mean and variance (drop-in for `keras.layers.Normalization`).

    Everything but the call is Keras's own layer (arguments `axis`, `mean`,
    `variance`, `invert`; `adapt`; the non-trainable `mean` and `variance`
    weights and their config), so statistics adapt and save exactly as
    Keras's do; the call is the manual-gradient pair in this module's
    docstring, run on the TensorFlow backend.

    Args:
        axis: Integer, tuple of integers, or None: the axes with separate
            statistics (the others are reduced over by `adapt`).
        mean, variance: Optional statistics to use instead of `adapt`'s.
        invert: If True, map normalized values back: y = mean + x d.
    """

    def call(self, inputs):
        if self.mean is None:
            return super().call(inputs)  # Keras's error: not built
        x = tf.convert_to_tensor(inputs, dtype=self.compute_dtype)
        mean = tf.cast(self.convert_weight(self.mean), x.dtype)
        variance = tf.cast(self.convert_weight(self.variance), x.dtype)
        op = _denormalize if self.invert else _normalize
        return op(x, mean, variance)
