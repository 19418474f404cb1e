"""Harness cases for the Foundation layers: Dense, activations, Dropout, reshaping, normalization options.

The normalization options are BatchNormalization's `renorm` and
LayerNormalization's deprecated `rms_scaling` (the plain normalization cases
are in tests/cases_conv.py).
"""

import keras

from keras_bp import activations, layers
from tests.harness import LayerCase


def _pair(ours, theirs, **kwargs):
    return (lambda: ours(**kwargs)), (lambda: theirs(**kwargs))


CASES = []

for activation in [None, "relu", "sigmoid", "tanh", "softmax", "gelu"]:
    make, keras_make = _pair(layers.Dense, keras.layers.Dense, units=3, activation=activation)
    CASES.append(LayerCase(f"dense-{activation}", make, keras_make, (4, 5), fit=activation in (None, "tanh")))

for kwargs, shape, name in [
    (dict(units=3, use_bias=False), (4, 5), "dense-no-bias"),
    (dict(units=3, activation="relu"), (2, 3, 5), "dense-rank3"),
    (dict(units=2, activation="elu", kernel_regularizer="l2", bias_initializer="ones"), (3, 4), "dense-regularized"),
]:
    make, keras_make = _pair(layers.Dense, keras.layers.Dense, **kwargs)
    CASES.append(LayerCase(name, make, keras_make, shape, fit=name != "dense-regularized"))

for name in activations.SUPPORTED:
    make, keras_make = _pair(layers.Activation, keras.layers.Activation, activation=name)
    CASES.append(LayerCase(f"activation-{name}", make, keras_make, (3, 4), fit=name in ("sigmoid", "softmax")))

for kwargs, name in [
    ({}, "relu"),
    (dict(max_value=1.0), "relu-max"),
    (dict(max_value=6.0), "relu6"),
    (dict(negative_slope=0.1), "relu-leaky"),
    (dict(negative_slope=0.1, threshold=0.5, max_value=1.5), "relu-all-options"),
]:
    make, keras_make = _pair(layers.ReLU, keras.layers.ReLU, **kwargs)
    CASES.append(LayerCase(name, make, keras_make, (3, 4), fit=name == "relu-all-options"))

CASES += [
    LayerCase("leaky-relu", *_pair(layers.LeakyReLU, keras.layers.LeakyReLU, negative_slope=0.2), (3, 4), fit=False),
    LayerCase("elu-alpha", *_pair(layers.ELU, keras.layers.ELU, alpha=0.7), (3, 4), fit=False),
    LayerCase("softmax-axis1", *_pair(layers.Softmax, keras.layers.Softmax, axis=1), (2, 3, 4), fit=False),
    LayerCase("softmax-two-axes", *_pair(layers.Softmax, keras.layers.Softmax, axis=(1, 2)), (2, 3, 4), fit=False),
    LayerCase(
        "softmax-mask",
        *_pair(layers.Softmax, keras.layers.Softmax),
        (2, 3, 4),
        make_inputs=lambda rng: [rng.standard_normal((2, 3, 4)).astype("float32"), rng.uniform(size=(2, 3, 4)) > 0.3],
        fit=False,
    ),
    LayerCase("dropout-training", *_pair(layers.Dropout, keras.layers.Dropout, rate=0.4, seed=1), (4, 6),
              call_kwargs={"training": True}),
    LayerCase("dropout-noise-shape", *_pair(layers.Dropout, keras.layers.Dropout, rate=0.5, noise_shape=(None, 1, 4), seed=2),
              (2, 3, 4), call_kwargs={"training": True}, fit=False),
    LayerCase("dropout-inference", *_pair(layers.Dropout, keras.layers.Dropout, rate=0.5), (4, 6), fit=False),
    LayerCase("flatten", *_pair(layers.Flatten, keras.layers.Flatten), (2, 3, 4)),
    LayerCase("flatten-channels-first", *_pair(layers.Flatten, keras.layers.Flatten, data_format="channels_first"),
              (2, 3, 2, 4), fit=False),
    LayerCase("reshape", *_pair(layers.Reshape, keras.layers.Reshape, target_shape=(-1, 2)), (2, 3, 4)),
]

# Batch renormalization's r and d are constants of the backward (stop_gradient,
# as in Keras), so float64 finite differences, which see r and d move with x,
# agree only where clipping pins them: the layer starts from renorm_mean = 3
# and renorm_stddev = sqrt(0.01) = 0.1, so r = sigma / 0.1 ~ 10 is clipped to
# rmax and d = (mu - 3) / 0.1 ~ -30 to -dmax. The parity test draws random
# statistics (renorm_stddev in [0.5, 1.5]), where r and d mostly stay inside
# the clipping; tests/test_normalization_options.py checks unclipped r and d.
_PINNED_RENORM = dict(
    renorm=True, renorm_clipping={"rmax": 2.0, "rmin": 0.5, "dmax": 1.0}, renorm_momentum=0.8, momentum=0.9,
    moving_mean_initializer=keras.initializers.Constant(3.0),
    moving_variance_initializer=keras.initializers.Constant(0.01),
)

CASES += [
    LayerCase("batchnorm-renorm-train", *_pair(layers.BatchNormalization, keras.layers.BatchNormalization,
                                               gamma_initializer="random_normal", beta_initializer="random_normal",
                                               **_PINNED_RENORM),
              (4, 5, 3), call_kwargs={"training": True}),
    LayerCase("batchnorm-renorm-train-axis1-no-scale",
              *_pair(layers.BatchNormalization, keras.layers.BatchNormalization, axis=1, scale=False, **_PINNED_RENORM),
              (4, 3, 5), call_kwargs={"training": True}, fit=False),
    # Unclipped renorm: in inference as without renorm; its fit trains unclipped.
    LayerCase("batchnorm-renorm-infer", *_pair(layers.BatchNormalization, keras.layers.BatchNormalization, renorm=True),
              (6, 4), call_kwargs={"training": False}),
    LayerCase("layernorm-rms-scaling",
              *_pair(layers.LayerNormalization, keras.layers.LayerNormalization, rms_scaling=True,
                     gamma_initializer="random_normal"),
              (3, 4, 5)),
    # rms_scaling keeps gamma without scale and drops beta despite center, as Keras.
    LayerCase("layernorm-rms-scaling-axes12-no-scale",
              *_pair(layers.LayerNormalization, keras.layers.LayerNormalization, rms_scaling=True, axis=[2, 1],
                     scale=False, center=True, epsilon=1e-5),
              (3, 4, 5, 2), fit=False),
]
