"""Harness cases for the merge layers and the shape layers (padding, cropping, upsampling, Permute, RepeatVector, Rescaling).

A merge layer takes its inputs as one list (`list_input=True`), drawn by
`make_inputs`: several shapes, broadcasting and different ranks. Maximum
and Minimum draw continuous values (no ties, where finite differences do not
apply); tests/test_merging.py checks ties against Keras's gradient.
"""

import keras
import numpy as np

from keras_bp import layers
from tests.harness import LayerCase


def _pair(name, **kwargs):
    return (lambda: getattr(layers, name)(**kwargs)), (lambda: getattr(keras.layers, name)(**kwargs))


def _normal(*shapes):
    return lambda rng: [rng.standard_normal(s).astype("float32") for s in shapes]


def _merge(id, name, shapes, fit=False, **kwargs):
    return LayerCase(id, *_pair(name, **kwargs), shapes[0], make_inputs=_normal(*shapes), list_input=True, fit=fit)


CASES = [
    _merge("add", "Add", [(2, 3, 4)] * 3, fit=True),
    _merge("add-broadcast", "Add", [(2, 3, 4), (2, 1, 4)]),
    _merge("add-ranks", "Add", [(2, 3, 4), (2, 4)]),
    _merge("subtract", "Subtract", [(2, 3, 4), (2, 1, 4)], fit=True),
    _merge("average", "Average", [(2, 3, 4)] * 3, fit=True),
    _merge("multiply", "Multiply", [(2, 3, 4)] * 3, fit=True),
    _merge("multiply-broadcast", "Multiply", [(2, 3, 4), (2, 3, 1), (2, 4)]),
    _merge("maximum", "Maximum", [(2, 3, 4)] * 3, fit=True),
    _merge("maximum-broadcast", "Maximum", [(2, 3, 4), (2, 1, 4)]),
    _merge("minimum", "Minimum", [(2, 3, 4)] * 3, fit=True),
    _merge("concatenate", "Concatenate", [(2, 3, 4), (2, 3, 2)], fit=True),
    _merge("concatenate-axis1", "Concatenate", [(2, 3, 4), (2, 1, 4), (2, 2, 4)], axis=1),
    _merge("dot-rank2", "Dot", [(3, 4), (3, 4)], axes=1, fit=True),
    _merge("dot-axes-1-2", "Dot", [(2, 3, 5), (2, 4, 3)], axes=(1, 2)),
    _merge("dot-normalize", "Dot", [(2, 3, 4), (2, 5, 4)], axes=-1, normalize=True, fit=True),
    _merge("dot-rank4-normalize", "Dot", [(2, 3, 4, 2), (2, 4, 3)], axes=(2, 1), normalize=True),
    LayerCase("zero-padding-1d", *_pair("ZeroPadding1D", padding=(1, 2)), (2, 3, 2)),
    LayerCase("zero-padding-2d", *_pair("ZeroPadding2D", padding=((1, 0), (2, 1))), (2, 3, 2, 2)),
    LayerCase("zero-padding-2d-channels-first", *_pair("ZeroPadding2D", padding=1, data_format="channels_first"),
              (2, 2, 3, 2), fit=False),
    LayerCase("zero-padding-3d", *_pair("ZeroPadding3D", padding=(1, 0, 2)), (1, 2, 2, 3, 2)),
    LayerCase("cropping-1d", *_pair("Cropping1D", cropping=(1, 2)), (2, 5, 2)),
    LayerCase("cropping-2d", *_pair("Cropping2D", cropping=((1, 0), (2, 1))), (2, 3, 5, 2)),
    LayerCase("cropping-2d-channels-first", *_pair("Cropping2D", cropping=1, data_format="channels_first"),
              (2, 2, 4, 3), fit=False),
    LayerCase("cropping-3d", *_pair("Cropping3D", cropping=((1, 0), (0, 1), (1, 1))), (1, 3, 3, 4, 2)),
    LayerCase("upsampling-1d", *_pair("UpSampling1D", size=3), (2, 3, 2)),
    # The fit cases are small: each upsampled copy adds to the Dense head's step (SGD 0.05 diverges on many).
    LayerCase("upsampling-2d", *_pair("UpSampling2D", size=(2, 3)), (2, 2, 3, 2), fit=False),
    LayerCase("upsampling-2d-fit", *_pair("UpSampling2D", size=(2, 1)), (2, 1, 2, 1)),
    LayerCase("upsampling-2d-channels-first", *_pair("UpSampling2D", size=2, data_format="channels_first"),
              (2, 2, 3, 2), fit=False),
    LayerCase("upsampling-2d-bilinear", *_pair("UpSampling2D", size=(2, 3), interpolation="bilinear"), (2, 3, 2, 2),
              fit=False),
    LayerCase("upsampling-2d-bilinear-fit", *_pair("UpSampling2D", size=(2, 1), interpolation="bilinear"), (2, 2, 1, 1)),
    LayerCase("upsampling-2d-bilinear-channels-first",
              *_pair("UpSampling2D", size=(3, 2), interpolation="bilinear", data_format="channels_first"),
              (2, 2, 3, 2), fit=False),
    LayerCase("upsampling-3d", *_pair("UpSampling3D", size=(2, 1, 2)), (1, 2, 2, 2, 2), fit=False),
    LayerCase("upsampling-3d-fit", *_pair("UpSampling3D", size=(2, 1, 1)), (2, 1, 1, 2, 1)),
    LayerCase("permute", *_pair("Permute", dims=(2, 3, 1)), (2, 3, 4, 2)),
    LayerCase("repeat-vector", *_pair("RepeatVector", n=3), (2, 4)),
    LayerCase("rescaling", *_pair("Rescaling", scale=1 / 127.5, offset=-1.0), (2, 3, 4)),
    LayerCase("rescaling-per-channel", *_pair("Rescaling", scale=np.array([0.5, 2.0, -1.0], "float32"),
                                              offset=np.array([1.0, 0.0, 2.0], "float32")), (2, 4, 3), fit=False),
]
