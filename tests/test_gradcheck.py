"""check_gradients: passes correct pairs, catches planted bugs, reports readably."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_bp

X = np.random.RandomState(0).standard_normal((3, 4)).astype("float32")


def _matmul_forward(x, w):
    return x @ w, (x, w)


def _correct_backward(saved, dy):
    x, w = saved
    return dy @ tf.transpose(w), tf.transpose(x) @ dy


class UserDense(keras.layers.Layer):
    """A user's layer written the keras_bp way, with a pluggable backward."""

    def __init__(self, units, backward=None, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self._op = keras_bp.manual_gradient(_matmul_forward, backward or _correct_backward)

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(input_shape[-1], self.units))

    def call(self, x):
        return self._op(x, tf.convert_to_tensor(self.kernel))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_correct_user_layer_passes():
    result = keras_bp.check_gradients(UserDense(3), X)
    assert result.passed and bool(result), str(result)
    assert result.max_rel_error < 1e-6
    names = {row.tensor for row in result.rows}
    assert "input_0" in names and any(name.endswith("/kernel") for name in names)
    assert {row.reference for row in result.rows} == {"autodiff", "finite differences"}


def test_kernel_gradient_one_percent_off_fails_and_is_named():
    def backward(saved, dy):
        dx, dw = _correct_backward(saved, dy)
        return dx, dw * 1.01

    result = keras_bp.check_gradients(UserDense(3, backward), X)
    assert not result.passed
    failed = {row.tensor for row in result.failures()}
    assert len(failed) == 1 and failed.pop().endswith("/kernel")
    assert 0.009 < result.max_rel_error < 0.011
    with pytest.raises(keras_bp.GradientCheckError, match="kernel .*FAIL"):
        keras_bp.check_gradients(UserDense(3, backward), X, raise_on_failure=True)


def test_report_table_names_tensor_index_and_values():
    def backward(saved, dy):
        dx, dw = _correct_backward(saved, dy)
        return dx + tf.scatter_nd([[1, 2]], [0.5], tf.shape(dx)), dw  # one element wrong

    result = keras_bp.check_gradients(UserDense(3, backward), X)
    text = str(result)
    assert "FAILED" in text and "input_0" in text and "(1, 2)" in text
    assert "max abs err" in text and "worst index" in text and "manual" in text and "expected" in text


def test_constant_added_to_gradient_fails_zero_upstream_check():
    def backward(saved, dy):
        dx, dw = _correct_backward(saved, dy)
        return dx, dw + 1e-3

    result = keras_bp.check_gradients(UserDense(3, backward), X)
    assert any(row.reference == "zero upstream" for row in result.failures())


def test_nondeterministic_backward_is_reported():
    def backward(saved, dy):
        dx, dw = _correct_backward(saved, dy)
        return dx * (1 + 1e-3 * tf.random.uniform(tf.shape(dx))), dw

    result = keras_bp.check_gradients(UserDense(3, backward), X)
    assert any(row.reference == "second backward run" for row in result.failures())


def test_missing_weight_gradient_is_reported():
    def backward(saved, dy):
        return _correct_backward(saved, dy)[0], None

    result = keras_bp.check_gradients(UserDense(3, backward), X)
    assert any("no gradient" in row.note for row in result.failures())


def test_function_target_and_large_tensors_use_directions():
    x = np.random.RandomState(1).standard_normal((20, 20))
    result = keras_bp.check_gradients(lambda t: keras_bp.activations.tanh(t) * 2.0, x, max_jacobian_size=50)
    assert result.passed, str(result)
    assert any("directions" in row.reference for row in result.rows)

    wrong = keras_bp.manual_gradient(lambda t: (tf.tanh(t), t), lambda t, dy: dy * (1 - tf.tanh(t) ** 2) * 0.99)
    result = keras_bp.check_gradients(wrong, x, max_jacobian_size=50)
    assert not result.passed


def test_keras_layers_and_state_are_left_alone():
    layer = keras.layers.Dropout(0.5, seed=1)
    layer.build((3, 4))
    state = [v.numpy().copy() for v in layer.non_trainable_variables]
    result = keras_bp.check_gradients(layer, X, training=True)
    assert result.passed, str(result)
    assert all(np.array_equal(v.numpy(), s) for v, s in zip(layer.non_trainable_variables, state))


def test_options_tighten_tolerances():
    loose = keras_bp.check_gradients(UserDense(3), X, rtol=1.0, atol=1.0)
    assert loose.passed
    tight = keras_bp.check_gradients(UserDense(3), X, rtol=1e-30, atol=1e-30, eps=1e-2)
    assert not tight.passed
