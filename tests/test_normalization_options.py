"""Edge cases of BatchNormalization's renorm and LayerNormalization's rms_scaling, and their errors.

The shared harness (tests/cases_core.py) runs both options through parity,
autodiff, finite differences, fit and save/load; this module covers what a
registry entry cannot say: r and d unclipped and clipped, the moving
statistics after training steps, weights at build, configs, and the errors
Keras raises.
"""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_bp
from keras_bp import layers
from keras_bp._state import restore, snapshot


def _output_and_grads(layer, x, upstream, **call_kwargs):
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, **call_kwargs)
        loss = tf.reduce_sum(y * upstream)
    return y.numpy(), [g.numpy() for g in tape.gradient(loss, [x] + layer.trainable_weights)]


def _pair(shape, **kwargs):
    """Our layer and Keras's, built for `shape`, with the same random weights (stddevs positive)."""
    ours, theirs = layers.BatchNormalization(**kwargs), keras.layers.BatchNormalization(**kwargs)
    ours.build(shape)
    theirs.build(shape)
    rng = np.random.RandomState(0)
    values = [
        rng.uniform(0.5, 1.5, w.shape) if ("stddev" in w.name or "variance" in w.name) else rng.uniform(-1, 1, w.shape)
        for w in theirs.weights
    ]
    theirs.set_weights(values)
    ours.set_weights(values)
    return ours, theirs


# --- batch renormalization ------------------------------------------------------


@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
def test_renorm_unclipped_matches_keras_and_autodiff(masked):
    # No clipping: r and d move with the batch, and the backward treats them as constants.
    shape = (6, 4, 3)
    ours, theirs = _pair(shape, renorm=True, axis=-1)
    rng = np.random.RandomState(1)
    x = (rng.standard_normal(shape) * 2 + 0.5).astype("float32")
    upstream = rng.standard_normal(shape).astype("float32")
    kwargs = {"training": True}
    if masked:
        kwargs["mask"] = tf.constant(rng.uniform(size=shape[:-1]) > 0.3)
    state = snapshot(ours.non_trainable_variables)
    y, grads = _output_and_grads(ours, x, upstream, **kwargs)
    after = [v.numpy() for v in ours.non_trainable_variables]
    restore(state)
    with keras_bp.autodiff():
        y_ad, grads_ad = _output_and_grads(ours, x, upstream, **kwargs)
    y_k, grads_k = _output_and_grads(theirs, x, upstream, **kwargs)
    np.testing.assert_allclose(y, y_k, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y, y_ad, rtol=0, atol=0)
    for g, g_ad, g_k in zip(grads, grads_ad, grads_k):
        np.testing.assert_allclose(g, g_k, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(g, g_ad, rtol=1e-5, atol=1e-5)
    for a, b in zip(after, theirs.non_trainable_variables):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-6, atol=1e-7)


def test_renorm_clipping_active_gives_the_clipped_r_and_d():
    clipping = {"rmin": 0.8, "rmax": 1.25, "dmax": 0.5}
    shape = (8, 3)
    ours, theirs = _pair(shape, renorm=True, renorm_clipping=clipping, epsilon=1e-3)
    x = np.random.RandomState(2).standard_normal(shape).astype("float32")
    mean, std = x.mean(0), np.sqrt(x.var(0) + 1e-3)
    # Renorm statistics that put the unclipped r at 2, 1.1, 0.5 (clipped above, free,
    # clipped below) and d at -3, 0.2, 3 (clipped, free, clipped).
    renorm_stddev = (std / np.array([2.0, 1.1, 0.5])).astype("float32")
    renorm_mean = (mean - np.array([-3.0, 0.2, 3.0]) * renorm_stddev).astype("float32")
    for layer in (ours, theirs):
        layer.renorm_stddev.assign(renorm_stddev)
        layer.renorm_mean.assign(renorm_mean)
    gamma, beta = ours.gamma.numpy(), ours.beta.numpy()
    r_free, d_free = std / renorm_stddev, (mean - renorm_mean) / renorm_stddev
    assert r_free[0] > 1.25 and 0.8 < r_free[1] < 1.25 and r_free[2] < 0.8, r_free
    assert d_free[0] < -0.5 and abs(d_free[1]) < 0.5 and d_free[2] > 0.5, d_free
    r, d = np.clip(r_free, 0.8, 1.25), np.clip(d_free, -0.5, 0.5)
    z = (x - mean) / std * r + d
    upstream = np.random.RandomState(3).standard_normal(shape).astype("float32")
    y, (dx, dgamma, dbeta) = _output_and_grads(ours, x, upstream, training=True)
    y_k, (dx_k, dgamma_k, dbeta_k) = _output_and_grads(theirs, x, upstream, training=True)
    np.testing.assert_allclose(y, gamma * z + beta, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, y_k, rtol=1e-6, atol=1e-6)
    # dgamma = sum dy (xhat r + d), dbeta = sum dy, dx through the batch statistics with gamma r.
    np.testing.assert_allclose(dgamma, (upstream * z).sum(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dbeta, upstream.sum(0), rtol=1e-5, atol=1e-5)
    g = upstream * gamma * r
    xhat = (x - mean) / std
    expected_dx = (g - g.mean(0) - xhat * (g * xhat).mean(0)) / std
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-4, atol=1e-5)
    for a, b in zip((dx, dgamma, dbeta), (dx_k, dgamma_k, dbeta_k)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_renorm_moving_statistics_equal_keras_after_training_steps(jit_compile):
    shape = (4, 3)
    x = (np.random.RandomState(4).standard_normal((16, 3)) * 3 + 2).astype("float32")
    targets = np.random.RandomState(5).standard_normal((16, 3)).astype("float32")
    models = []
    for module in (layers, keras.layers):
        layer = module.BatchNormalization(renorm=True, renorm_clipping={"rmax": 1.5, "dmax": 0.5},
                                          momentum=0.7, renorm_momentum=0.6)
        model = keras.Sequential([keras.Input(shape[1:]), layer])
        model.compile(keras.optimizers.SGD(0.1), "mse", jit_compile=jit_compile)
        models.append(model)
    models[1].set_weights(models[0].get_weights())
    before = models[0].get_weights()
    for model in models:
        model.fit(x, targets, batch_size=4, epochs=2, shuffle=False, verbose=0)
    ours, theirs = (m.layers[0] for m in models)
    assert [w.name for w in ours.weights] == [
        "gamma", "beta", "moving_mean", "moving_variance", "moving_stddev", "renorm_mean", "renorm_stddev"
    ]
    for a, b, old in zip(ours.weights, theirs.weights, before):
        assert not np.allclose(a.numpy(), old), f"{a.name} did not move"
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.name)


def test_renorm_inference_is_plain_batch_normalization():
    shape = (5, 4)
    renormed, _ = _pair(shape, renorm=True)
    plain = layers.BatchNormalization()
    plain.build(shape)
    plain.set_weights(renormed.get_weights()[:4])
    x = np.random.RandomState(6).standard_normal(shape).astype("float32")
    np.testing.assert_array_equal(renormed(x, training=False), plain(x, training=False))


def test_renorm_weights_at_build_equal_keras():
    kwargs = dict(renorm=True, moving_mean_initializer=keras.initializers.Constant(0.5),
                  moving_variance_initializer=keras.initializers.Constant(2.25))
    ours, theirs = layers.BatchNormalization(**kwargs), keras.layers.BatchNormalization(**kwargs)
    ours.build((None, 3))
    theirs.build((None, 3))
    assert [(w.name, w.trainable) for w in ours.weights] == [(w.name, w.trainable) for w in theirs.weights]
    for a, b in zip(ours.weights, theirs.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)
    np.testing.assert_array_equal(ours.moving_stddev.numpy(), [1.5, 1.5, 1.5])


@pytest.mark.parametrize(
    "kwargs",
    [dict(renorm=True), dict(renorm=True, renorm_clipping={"rmax": 3.0, "dmax": 0.0}, renorm_momentum=0.9),
     # As Keras: without renorm the clipping is kept as given, unchecked (a guard; passed before renorm).
     dict(renorm=False, renorm_clipping={"random_key": 1.0})],
    ids=["renorm", "renorm-clipping", "no-renorm"],
)
def test_renorm_config_equals_keras_and_round_trips(kwargs):
    ours = layers.BatchNormalization(name="bn", **kwargs)
    theirs = keras.layers.BatchNormalization(name="bn", **kwargs)
    assert ours.get_config() == theirs.get_config()
    assert layers.BatchNormalization.from_config(ours.get_config()).get_config() == ours.get_config()


# --- rms_scaling ------------------------------------------------------------------


def test_rms_scaling_divides_the_uncentered_input_by_the_stddev():
    with pytest.warns(UserWarning, match="rms_scaling=True"):
        layer = layers.LayerNormalization(rms_scaling=True, center=True, scale=False, epsilon=1e-2,
                                          gamma_initializer="random_normal")
    x = (np.random.RandomState(7).standard_normal((3, 6)) + 2).astype("float32")
    y = layer(x)
    # gamma even with scale=False, no beta despite center=True (as Keras).
    assert [w.name for w in layer.weights] == ["gamma"]
    gamma = layer.gamma.numpy()
    expected = x / np.sqrt(x.var(-1, keepdims=True) + 1e-2) * gamma
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = keras.layers.LayerNormalization(rms_scaling=True, center=True, scale=False, epsilon=1e-2)
    theirs.build(x.shape)
    theirs.set_weights(layer.get_weights())
    np.testing.assert_array_equal(y, theirs(x))
    assert layer.get_config()["rms_scaling"] is True


# --- errors ---------------------------------------------------------------------


@pytest.mark.parametrize("axis", [{"axis": -1}, "last", [-1, 1.5], None])
def test_layer_norm_axis_of_wrong_type_raises_keras_type_error(axis):
    with pytest.raises(TypeError, match="Expected an int or a list/tuple of ints for the argument 'axis'") as info:
        layers.LayerNormalization(axis=axis)
    # Also a ValueError, as keras_bp's other argument errors, naming what was received.
    assert isinstance(info.value, ValueError)
    assert f"axis={axis!r}" in str(info.value)


@pytest.mark.parametrize(
    "clipping, words",
    [
        ({"random_key": 1.0}, "Received invalid keys"),
        ({"rmax": 0.0, "rmin": 1.0}, "rmax should be"),
        ({"rmax": 1.0, "dmax": -1.0}, "dmax should be non-negative"),
        ({"rmax": "big"}, "must be a number"),
        ([("rmax", 1.0)], "must be None or a dict"),
    ],
    ids=["invalid-key", "rmax-below-rmin", "negative-dmax", "not-a-number", "not-a-dict"],
)
def test_renorm_clipping_errors_name_the_value(clipping, words):
    with pytest.raises(ValueError, match=words) as info:
        layers.BatchNormalization(renorm=True, renorm_clipping=clipping)
    assert f"renorm_clipping={clipping!r}" in str(info.value)
