"""Harness cases for the preprocessing layers with a backward: Normalization.

Statistics given at construction, inverted, over two axes, and built without them
(the mean and variance weights Keras's `adapt` would fill; the harness
copies them from Keras's layer). A zero variance (Keras's epsilon guard, a
1e7 scale that finite differences cannot resolve) and `adapt` are
tests/test_preprocessing_normalization.py's.
"""

import keras
import numpy as np

from keras_bp import layers
from tests.harness import LayerCase

_MEAN = np.array([0.5, -1.0, 2.0, 0.0], "float32")
_VARIANCE = np.array([4.0, 1.0, 2.25, 1.5], "float32")


def _pair(**kwargs):
    return (lambda: layers.Normalization(**kwargs)), (lambda: keras.layers.Normalization(**kwargs))


CASES = [
    LayerCase("normalization-given", *_pair(mean=_MEAN, variance=_VARIANCE), (2, 3, 4)),
    LayerCase("normalization-invert", *_pair(mean=_MEAN, variance=_VARIANCE, invert=True), (2, 3, 4), fit=False),
    LayerCase("normalization-two-axes", *_pair(axis=(1, 2), mean=np.ones((3, 4), "float32"),
                                               variance=np.full((3, 4), 9.0, "float32")), (2, 3, 4), fit=False),
    LayerCase("normalization-weights", *_pair(axis=-1), (2, 3, 4)),
]
