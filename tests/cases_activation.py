"""Harness cases for PReLU, spatial dropout, Gaussian noise and dropout, group and unit normalization.

Each new activation function runs through the harness as an `Activation`
case in tests/cases_core.py (which takes every name in
`keras_bp.activations.SUPPORTED`); tests/test_activations_extra.py checks
the functions themselves, options and kinks included.
"""

import keras

from keras_bp import layers
from tests.harness import LayerCase


def _pair(ours, theirs, **kwargs):
    return (lambda: ours(**kwargs)), (lambda: theirs(**kwargs))


TRAINING = {"training": True}

CASES = [
    LayerCase("prelu", *_pair(layers.PReLU, keras.layers.PReLU, alpha_initializer="random_uniform"), (3, 4)),
    LayerCase("prelu-shared-axes", *_pair(layers.PReLU, keras.layers.PReLU, shared_axes=[1, 2],
                                          alpha_initializer="random_uniform", alpha_regularizer="l2"), (2, 3, 2, 4)),
    LayerCase("prelu-shared-int", *_pair(layers.PReLU, keras.layers.PReLU, shared_axes=1), (2, 3, 4), fit=False),
    LayerCase("spatial-dropout-1d", *_pair(layers.SpatialDropout1D, keras.layers.SpatialDropout1D, rate=0.5, seed=1),
              (3, 4, 5), call_kwargs=TRAINING),
    LayerCase("spatial-dropout-2d", *_pair(layers.SpatialDropout2D, keras.layers.SpatialDropout2D, rate=0.2, seed=2),
              (2, 3, 3, 6), call_kwargs=TRAINING),
    LayerCase("spatial-dropout-2d-channels-first",
              *_pair(layers.SpatialDropout2D, keras.layers.SpatialDropout2D, rate=0.4, seed=3,
                     data_format="channels_first"), (2, 4, 3, 3), call_kwargs=TRAINING, fit=False),
    LayerCase("spatial-dropout-3d", *_pair(layers.SpatialDropout3D, keras.layers.SpatialDropout3D, rate=0.3, seed=4),
              (2, 2, 2, 2, 3), call_kwargs=TRAINING, fit=False),
    LayerCase("spatial-dropout-inference", *_pair(layers.SpatialDropout1D, keras.layers.SpatialDropout1D, rate=0.5),
              (2, 3, 4), fit=False),
    LayerCase("gaussian-noise", *_pair(layers.GaussianNoise, keras.layers.GaussianNoise, stddev=0.3, seed=5),
              (4, 6), call_kwargs=TRAINING),
    LayerCase("gaussian-noise-inference", *_pair(layers.GaussianNoise, keras.layers.GaussianNoise, stddev=0.3),
              (4, 6), fit=False),
    LayerCase("gaussian-dropout", *_pair(layers.GaussianDropout, keras.layers.GaussianDropout, rate=0.3, seed=6),
              (4, 6), call_kwargs=TRAINING),
    LayerCase("gaussian-dropout-inference", *_pair(layers.GaussianDropout, keras.layers.GaussianDropout, rate=0.3),
              (4, 6), fit=False),
    LayerCase("group-norm", *_pair(layers.GroupNormalization, keras.layers.GroupNormalization, groups=2,
                                   gamma_initializer="random_normal", beta_initializer="random_normal"), (3, 5, 4)),
    LayerCase("group-norm-axis1", *_pair(layers.GroupNormalization, keras.layers.GroupNormalization, groups=3, axis=1),
              (2, 6, 2, 3)),
    LayerCase("group-norm-instance", *_pair(layers.GroupNormalization, keras.layers.GroupNormalization, groups=-1),
              (2, 4, 3), fit=False),
    LayerCase("group-norm-layer", *_pair(layers.GroupNormalization, keras.layers.GroupNormalization, groups=1,
                                         epsilon=1e-5), (2, 3, 4), fit=False),
    LayerCase("group-norm-no-scale", *_pair(layers.GroupNormalization, keras.layers.GroupNormalization, groups=2,
                                            scale=False), (2, 3, 4), fit=False),
    LayerCase("group-norm-no-center", *_pair(layers.GroupNormalization, keras.layers.GroupNormalization, groups=2,
                                             center=False, gamma_regularizer="l2"), (2, 3, 4)),
    LayerCase("group-norm-neither", *_pair(layers.GroupNormalization, keras.layers.GroupNormalization, groups=2,
                                           center=False, scale=False), (2, 3, 4), fit=False),
    LayerCase("unit-norm", *_pair(layers.UnitNormalization, keras.layers.UnitNormalization), (3, 4)),
    LayerCase("unit-norm-axes", *_pair(layers.UnitNormalization, keras.layers.UnitNormalization, axis=[1, 2]),
              (2, 3, 4), fit=False),
]
