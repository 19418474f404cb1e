"""Edge cases of PReLU, spatial dropout, Gaussian noise and dropout, group and unit normalization.

The harness (tests/cases_activation.py) checks numbers and gradients; here:
errors with Keras's types and words, configs equal to Keras's, built state,
training behaviour and the degenerate inputs.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_bp import layers

PAIRS = [
    (layers.PReLU, keras.layers.PReLU, dict(shared_axes=[1], alpha_regularizer="l2")),
    (layers.SpatialDropout1D, keras.layers.SpatialDropout1D, dict(rate=0.3, seed=1)),
    (layers.SpatialDropout2D, keras.layers.SpatialDropout2D, dict(rate=0.3, data_format="channels_first")),
    (layers.SpatialDropout3D, keras.layers.SpatialDropout3D, dict(rate=0.3)),
    (layers.GaussianNoise, keras.layers.GaussianNoise, dict(stddev=1, seed=3)),
    (layers.GaussianDropout, keras.layers.GaussianDropout, dict(rate=0.2)),
    (layers.GroupNormalization, keras.layers.GroupNormalization, dict(groups=4, beta_constraint="non_neg")),
    (layers.UnitNormalization, keras.layers.UnitNormalization, dict(axis=(1, 2))),
]


@pytest.mark.parametrize("ours,theirs,kwargs", PAIRS, ids=[p[0].__name__ for p in PAIRS])
def test_config_and_built_state_as_keras(ours, theirs, kwargs):
    a, b = ours(**kwargs), theirs(**kwargs)
    config_a, config_b = a.get_config(), b.get_config()
    for config in (config_a, config_b):
        config.pop("name")
    assert config_a == config_b
    assert a.built == b.built
    assert type(ours.from_config(a.get_config())) is ours


@pytest.mark.parametrize(
    "make,keras_make,error,words",
    [
        (lambda: layers.GaussianNoise(1.5), lambda: keras.layers.GaussianNoise(1.5), ValueError,
         "Expected a float value between 0 and 1"),
        (lambda: layers.GaussianDropout(-0.1), lambda: keras.layers.GaussianDropout(-0.1), ValueError,
         "Expected a float value between 0 and 1"),
        (lambda: layers.SpatialDropout1D(2.0), lambda: keras.layers.SpatialDropout1D(2.0), ValueError,
         "Expected a float value between 0 and 1"),
        (lambda: layers.GroupNormalization(groups=0), lambda: keras.layers.GroupNormalization(groups=0), ValueError,
         "Received an invalid value for argument `groups`"),
        (lambda: layers.GroupNormalization(groups=2.0), lambda: keras.layers.GroupNormalization(groups=2.0),
         ValueError, "Received an invalid value for argument `groups`"),
        (lambda: layers.UnitNormalization(axis="x"), lambda: keras.layers.UnitNormalization(axis="x"), TypeError,
         "Invalid value for `axis` argument"),
        (lambda: layers.SpatialDropout2D(0.5, data_format="nhwc"),
         lambda: keras.layers.SpatialDropout2D(0.5, data_format="nhwc"), ValueError, "data_format"),
    ],
)
def test_constructor_errors_as_keras(make, keras_make, error, words):
    with pytest.raises(error, match=words):
        keras_make()
    with pytest.raises(error, match=words) as raised:
        make()
    # Ours names the value received, after Keras's words.
    assert "received" in str(raised.value).lower()


@pytest.mark.parametrize(
    "groups,shape,words",
    [(8, (2, 4), "cannot be more than the number of channels"), (3, (2, 4), "must be a multiple")],
)
def test_group_norm_build_errors_as_keras(groups, shape, words):
    for cls in (keras.layers.GroupNormalization, layers.GroupNormalization):
        with pytest.raises(ValueError, match=words):
            cls(groups=groups).build(shape)


def test_group_norm_minus_one_is_instance_norm_and_config_shows_channels():
    layer = layers.GroupNormalization(groups=-1)
    layer.build((2, 3, 5))
    assert layer.get_config()["groups"] == 5
    assert [w.name for w in layer.weights] == ["gamma", "beta"]


def test_prelu_alpha_weight_as_keras():
    ours, theirs = layers.PReLU(shared_axes=[1, 2]), keras.layers.PReLU(shared_axes=[1, 2])
    ours.build((None, 4, 5, 3)), theirs.build((None, 4, 5, 3))
    assert [(w.name, w.shape) for w in ours.weights] == [(w.name, w.shape) for w in theirs.weights] == [
        ("alpha", (1, 1, 3))
    ]
    # The input spec pins the non-shared axes, as Keras's.
    with pytest.raises(ValueError):
        ours(tf.ones((2, 4, 5, 2)))


@pytest.mark.parametrize(
    "ours,theirs,kwargs,shape",
    [
        (layers.SpatialDropout1D, keras.layers.SpatialDropout1D, dict(rate=0.5, seed=7), (3, 5, 4)),
        (layers.SpatialDropout2D, keras.layers.SpatialDropout2D, dict(rate=0.5, seed=7), (2, 3, 3, 4)),
        (layers.SpatialDropout3D, keras.layers.SpatialDropout3D, dict(rate=0.5, seed=7, data_format="channels_first"),
         (2, 4, 2, 2, 2)),
        (layers.GaussianNoise, keras.layers.GaussianNoise, dict(stddev=0.5, seed=7), (3, 4)),
        (layers.GaussianDropout, keras.layers.GaussianDropout, dict(rate=0.5, seed=7), (3, 4)),
    ],
)
def test_training_draws_keras_noise_and_inference_is_identity(ours, theirs, kwargs, shape):
    x = np.random.RandomState(0).standard_normal(shape).astype("float32")
    a, b = ours(**kwargs), theirs(**kwargs)
    for _ in range(2):  # the seed generators advance alike
        np.testing.assert_array_equal(a(x, training=True), b(x, training=True))
    np.testing.assert_array_equal(a(x), x)
    np.testing.assert_array_equal(a(x, training=False), x)


def test_spatial_dropout_drops_whole_channels():
    x = np.ones((4, 6, 5), "float32")
    y = layers.SpatialDropout1D(0.5, seed=1)(x, training=True).numpy()
    assert np.all(y == y[:, :1, :])  # one value per example and channel
    assert {0.0, 2.0} == set(np.unique(y))


def test_unit_norm_of_a_zero_vector_is_zero_with_a_finite_gradient():
    x = tf.constant([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0]])
    for layer in (layers.UnitNormalization(), keras.layers.UnitNormalization()):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * [[1.0, 2.0, 3.0]])
        g = tape.gradient(loss, x)
        np.testing.assert_allclose(y[1], [0.6, 0.8, 0.0], rtol=1e-6)
        assert np.all(np.isfinite(g))
        if isinstance(layer, layers.UnitNormalization):
            ours = g
        else:
            np.testing.assert_allclose(ours, g, rtol=1e-6)
