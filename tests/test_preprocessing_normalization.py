"""Normalization's own cases: a zero variance, adapt, invert after adapt, save and load, Keras's errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_bp
from keras_bp import layers


def _outputs_and_input_gradient(layer, x):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * y)
    return y.numpy(), tape.gradient(loss, x).numpy()


def _pair_results(ours, theirs, x):
    return _outputs_and_input_gradient(ours, x), _outputs_and_input_gradient(theirs, x)


def test_zero_variance_uses_keras_epsilon_guard():
    mean, variance = np.array([1.0, 0.0], "float32"), np.array([0.0, 4.0], "float32")
    x = np.random.RandomState(0).standard_normal((3, 2)).astype("float32") * 1e-6 + 1.0
    (y, dx), (y_k, dx_k) = _pair_results(layers.Normalization(mean=mean, variance=variance),
                                         keras.layers.Normalization(mean=mean, variance=variance), x)
    np.testing.assert_allclose(y, y_k, rtol=1e-6)
    np.testing.assert_allclose(dx, dx_k, rtol=1e-6)
    with keras_bp.autodiff():
        _, dx_auto = _outputs_and_input_gradient(layers.Normalization(mean=mean, variance=variance), x)
    np.testing.assert_allclose(dx, dx_auto, rtol=1e-6)


@pytest.mark.parametrize("invert", [False, True])
def test_adapt_then_call_matches_keras(invert):
    data = np.random.RandomState(1).standard_normal((50, 3)).astype("float32") * [1.0, 5.0, 0.1] + [0.0, 2.0, -3.0]
    ours, theirs = layers.Normalization(invert=invert), keras.layers.Normalization(invert=invert)
    ours.adapt(data)
    theirs.adapt(data)
    np.testing.assert_allclose(ours.mean.numpy(), theirs.mean.numpy())
    (y, dx), (y_k, dx_k) = _pair_results(ours, theirs, data[:4])
    np.testing.assert_allclose(y, y_k, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dx, dx_k, rtol=1e-6)


def test_adapted_model_saves_and_loads(tmp_path):
    data = np.random.RandomState(2).standard_normal((20, 3)).astype("float32") * 3 + 1
    norm = layers.Normalization()
    norm.adapt(data)
    model = keras.Sequential([keras.Input((3,)), norm, layers.Dense(2)])
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.layers[0]) is layers.Normalization
    np.testing.assert_allclose(loaded.predict(data, verbose=0), model.predict(data, verbose=0), rtol=1e-6)


def test_errors_are_keras_errors():
    with pytest.raises(ValueError, match="both `mean` and `variance` must be set") as ours:
        layers.Normalization(mean=1.0)
    with pytest.raises(ValueError, match="both `mean` and `variance` must be set") as theirs:
        keras.layers.Normalization(mean=1.0)
    assert str(ours.value) == str(theirs.value)


def test_convert_swaps_normalization():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Normalization(mean=[1.0, 2.0, 3.0], variance=[1.0, 4.0, 9.0]),
                              keras.layers.Dense(2)])
    converted, report = keras_bp.convert(model, return_report=True)
    assert type(converted.layers[0]) is layers.Normalization
    x = np.random.RandomState(3).standard_normal((4, 3)).astype("float32")
    np.testing.assert_allclose(converted(x).numpy(), model(x).numpy(), rtol=1e-6)
    assert not report.kept
