"""manual_gradient and autodiff(): eager, tf.function, XLA, mixed precision, errors."""

import numpy as np
import pytest
import tensorflow as tf

import keras_bp


def _scale_forward(x, w):
    y = x * w
    return y, (x, w)


def _scale_backward(saved, dy):
    x, w = saved
    return dy * w, tf.reduce_sum(dy * x, axis=0)


scale = keras_bp.manual_gradient(_scale_forward, _scale_backward)


def _wrong_backward(saved, dy):
    x, w = saved
    return dy * w * 2.0, tf.reduce_sum(dy * x, axis=0)


wrong_scale = keras_bp.manual_gradient(_scale_forward, _wrong_backward)
X = tf.constant(np.arange(6, dtype="float32").reshape(3, 2) - 2.5)
W = tf.constant([1.5, -2.0])


def _grads(op, x=X, w=W):
    with tf.GradientTape() as tape:
        tape.watch([x, w])
        y = op(x, w)
        loss = tf.reduce_sum(y * y)
    return tape.gradient(loss, [x, w])


def test_manual_backward_is_used_and_autodiff_switches_it_off():
    manual = _grads(wrong_scale)
    with keras_bp.autodiff():
        assert keras_bp.autodiff_enabled()
        reference = _grads(wrong_scale)
    assert not keras_bp.autodiff_enabled()
    # The planted factor 2 shows up only in the manual input gradient.
    np.testing.assert_allclose(manual[0], 2 * reference[0])
    np.testing.assert_allclose(manual[1], reference[1])
    np.testing.assert_allclose(_grads(scale)[0], reference[0])


@pytest.mark.parametrize("jit_compile", [False, True])
def test_inside_tf_function_and_xla(jit_compile):
    manual_fn = tf.function(lambda: _grads(wrong_scale), jit_compile=jit_compile)
    with keras_bp.autodiff():
        reference_fn = tf.function(lambda: _grads(wrong_scale), jit_compile=jit_compile)
        reference = reference_fn()
    manual = manual_fn()
    np.testing.assert_allclose(manual[0], 2 * reference[0])
    np.testing.assert_allclose(tf.function(lambda: _grads(scale), jit_compile=jit_compile)()[0], reference[0])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_gradients_come_back_in_input_dtype(dtype):
    def forward(x, w):
        return x * tf.cast(w, x.dtype), (x, w)

    def backward(saved, dy):
        x, w = saved
        # Deliberately returns float32: the op casts each gradient to its input's dtype.
        return tf.cast(dy, tf.float32) * w, tf.reduce_sum(tf.cast(dy * x, tf.float32), axis=0)

    op = keras_bp.manual_gradient(forward, backward)
    x = tf.cast(X, dtype)
    gx, gw = _grads(op, x, W)
    assert gx.dtype == x.dtype and gw.dtype == tf.float32


def test_wrong_number_of_gradients_names_op_and_inputs():
    op = keras_bp.manual_gradient(_scale_forward, lambda saved, dy: dy, name="my_scale")
    with pytest.raises(ValueError, match=r"'my_scale' returned 1 gradient\(s\) for 2 input\(s\)"):
        _grads(op)


def test_wrong_gradient_shape_names_op_and_input():
    op = keras_bp.manual_gradient(_scale_forward, lambda saved, dy: (dy, dy), name="my_scale")
    with pytest.raises(ValueError, match=r"'my_scale' returned a gradient of shape \(3, 2\) for input 1"):
        _grads(op)
    with pytest.raises(ValueError, match="for input 1"):
        tf.function(lambda: _grads(op))()


def test_keyword_arguments_are_refused():
    with pytest.raises(TypeError, match="positional tensors only"):
        scale(X, w=W)


def test_integer_inputs_get_no_gradient():
    def forward(table, ids):
        return tf.gather(table, ids), (tf.shape(table), ids)

    def backward(saved, dy):
        shape, ids = saved
        return tf.scatter_nd(ids[:, None], dy, shape), None

    gather = keras_bp.manual_gradient(forward, backward)
    table = tf.constant(np.arange(8.0).reshape(4, 2), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(table)
        y = gather(table, tf.constant([1, 1, 3]))
    np.testing.assert_allclose(tape.gradient(y, table), [[0, 0], [2, 2], [0, 0], [1, 1]])


def test_unused_output_gets_zero_upstream():
    def forward(x):
        return (2 * x, 3 * x), None

    def backward(saved, dy1, dy2):
        return 2 * dy1 + 3 * dy2

    two = keras_bp.manual_gradient(forward, backward)
    with tf.GradientTape() as tape:
        tape.watch(X)
        first, _ = two(X)
        loss = tf.reduce_sum(first)
    np.testing.assert_allclose(tape.gradient(loss, X), 2 * np.ones((3, 2)))


def test_other_backend_import_error_says_how_to_switch():
    import subprocess
    import sys

    code = "import keras_bp"
    env = {"KERAS_BACKEND": "numpy", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "KERAS_BACKEND=tensorflow" in result.stderr


def _affine_forward(x, w, b):
    # b is optional: None means no bias, and forward and backward see None.
    y = x * w if b is None else x * w + b
    return y, (x, w, b is None)


def _affine_backward(saved, dy):
    x, w, no_bias = saved
    db = None if no_bias else tf.reduce_sum(dy, axis=0)
    return dy * w, tf.reduce_sum(dy * x, axis=0), db


affine = keras_bp.manual_gradient(_affine_forward, _affine_backward, name="affine")
B = tf.constant([0.25, -0.5])


def _affine_grads(b, x=X, w=W):
    with tf.GradientTape() as tape:
        tape.watch([x, w] + ([] if b is None else [b]))
        y = affine(x, w, b)
        loss = tf.reduce_sum(y * y)
    return y, tape.gradient(loss, [x, w] + ([] if b is None else [b]))


@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
def test_optional_input_none_is_passed_through_and_gets_no_gradient(mode):
    def run(b):
        return _affine_grads(b)

    if mode != "eager":
        run = tf.function(run, jit_compile=mode == "xla")
    for b in (None, B):
        y, grads = run(b)
        with keras_bp.autodiff():
            y_ref, grads_ref = _affine_grads(b)
        np.testing.assert_allclose(y, y_ref, rtol=1e-6)
        assert len(grads) == (2 if b is None else 3)
        for g, g_ref in zip(grads, grads_ref):
            np.testing.assert_allclose(g, g_ref, rtol=1e-6)
    np.testing.assert_allclose(run(None)[0], X * W)


def test_optional_input_in_the_middle_and_mixed_precision():
    seen = []

    def forward(x, mask, w):
        seen.append(mask is None)
        y = x * tf.cast(w, x.dtype)
        return (y if mask is None else y * mask), (x, w, mask)

    def backward(saved, dy):
        x, w, mask = saved
        if mask is not None:
            dy = dy * mask
        return dy * tf.cast(w, dy.dtype), None, tf.cast(tf.reduce_sum(dy * x, axis=0), tf.float32)

    op = keras_bp.manual_gradient(forward, backward)
    x = tf.cast(X, "float16")
    with tf.GradientTape() as tape:
        tape.watch([x, W])
        loss = tf.reduce_sum(op(x, None, W))
    gx, gw = tape.gradient(loss, [x, W])
    assert seen == [True]
    assert gx.dtype == tf.float16 and gw.dtype == tf.float32
    np.testing.assert_allclose(gx, np.broadcast_to(W, (3, 2)), rtol=1e-3)
    np.testing.assert_allclose(gw, np.sum(X, axis=0), rtol=1e-3)


def test_backward_must_return_an_entry_for_an_absent_input():
    op = keras_bp.manual_gradient(
        _affine_forward, lambda saved, dy: (dy, tf.reduce_sum(dy, axis=0)), name="affine"
    )
    with tf.GradientTape() as tape:
        tape.watch(X)
        y = op(X, W, None)
    with pytest.raises(ValueError, match=r"returned 2 gradient\(s\) for 3 input\(s\)"):
        tape.gradient(y, X)
