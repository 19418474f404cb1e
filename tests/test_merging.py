"""Edge cases of the merge and shape layers: masks, ties, broadcasting, errors (Keras's types and words), convert."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src import backend

import keras_bp
from keras_bp import layers

MERGES = ["Add", "Subtract", "Average", "Multiply", "Maximum", "Minimum"]


def _grads(layer, values, masks=None, upstream_seed=1):
    """Output, input gradients and output mask of a merge on eager tensors with Keras masks set."""
    xs = [tf.constant(v) for v in values]
    with tf.GradientTape() as tape:
        tape.watch(xs)
        inputs = [tf.identity(x) for x in xs]
        for x, m in zip(inputs, masks or [None] * len(xs)):
            if m is not None:
                backend.set_keras_mask(x, tf.constant(m))
        y = layer(inputs)
        u = np.random.RandomState(upstream_seed).standard_normal(y.shape).astype("float32")
        loss = tf.reduce_sum(y * u)
    return y, tape.gradient(loss, xs), backend.get_keras_mask(y)


def _assert_same_as_keras(name, values, masks=None, **kwargs):
    ours = _grads(getattr(layers, name)(**kwargs), values, masks)
    theirs = _grads(getattr(keras.layers, name)(**kwargs), values, masks)
    np.testing.assert_allclose(ours[0], theirs[0], atol=1e-6)
    for a, b in zip(ours[1], theirs[1]):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert (ours[2] is None) == (theirs[2] is None)
    if ours[2] is not None:
        np.testing.assert_array_equal(ours[2], theirs[2])


@pytest.mark.parametrize("name", MERGES)
def test_masks_as_keras(name):
    rng = np.random.RandomState(0)
    n = 2 if name == "Subtract" else 3
    values = [rng.standard_normal((2, 4, 3)).astype("float32") for _ in range(n)]
    masks = [rng.uniform(size=(2, 4)) > 0.4 for _ in range(n)]
    _assert_same_as_keras(name, values, masks)  # every input masked
    _assert_same_as_keras(name, values, [masks[0], None] + masks[2:])  # one without a mask


@pytest.mark.parametrize("name", ["Maximum", "Minimum"])
def test_ties_go_to_the_first_input_as_keras(name):
    # Integer-valued inputs tie often; TensorFlow's gradient of Keras's maximum gives a tie to the first.
    rng = np.random.RandomState(1)
    a = rng.randint(-1, 2, (2, 3, 4)).astype("float32")
    values = [a, rng.randint(-1, 2, (2, 3, 4)).astype("float32"), a.copy()]
    _assert_same_as_keras(name, values)
    _, grads, _ = _grads(getattr(layers, name)(), values)
    assert np.all(np.asarray(grads[2]) == 0), "the third input ties with the first everywhere: no gradient"
    masks = [rng.uniform(size=(2, 3)) > 0.5 for _ in values]
    _assert_same_as_keras(name, values, masks)


@pytest.mark.parametrize("name", MERGES)
def test_broadcasting_and_ranks_as_keras(name):
    rng = np.random.RandomState(2)
    for shapes in [[(2, 3, 4), (2, 1, 4)], [(2, 3, 4), (2, 4)], [(2, 1, 4), (2, 3, 1)]]:
        _assert_same_as_keras(name, [rng.standard_normal(s).astype("float32") for s in shapes])


def test_concatenate_mask_as_keras():
    rng = np.random.RandomState(3)
    values = [rng.standard_normal((2, 3, 4)).astype("float32"), rng.standard_normal((2, 2, 4)).astype("float32")]
    _assert_same_as_keras("Concatenate", values, [rng.uniform(size=(2, 3)) > 0.5, None], axis=1)


def test_dot_normalize_zero_vector_as_keras():
    # A norm below epsilon: r is clipped to 1/eps, and the gradient is du / eps, as TensorFlow's.
    values = [np.zeros((2, 3), "float32"), np.random.RandomState(4).standard_normal((2, 3)).astype("float32")]
    _assert_same_as_keras("Dot", values, axes=1, normalize=True)


@pytest.mark.parametrize("name, kwargs, shapes, error, words", [
    ("Add", {}, [(2, 3), (2, 4)], ValueError, "Inputs have incompatible shapes"),
    ("Add", {}, [(2, 3), (3, 3)], ValueError, "Cannot merge tensors with different batch sizes"),
    ("Subtract", {}, [(2, 3)] * 3, ValueError, "should be called on exactly 2 inputs"),
    ("Concatenate", {"axis": 1}, [(2, 3, 4), (2, 3, 5)], ValueError, "requires inputs with matching shapes"),
    ("Dot", {"axes": 1}, [(2, 3), (2, 4)], ValueError, "Incompatible input shapes"),
])
def test_call_errors_as_keras(name, kwargs, shapes, error, words):
    inputs = [keras.Input(batch_shape=s) for s in shapes]
    for layer in (getattr(keras.layers, name)(**kwargs), getattr(layers, name)(**kwargs)):
        with pytest.raises(error, match=words):
            layer(inputs)
    with pytest.raises(ValueError, match="input_shape must be"):
        getattr(layers, name)(**kwargs)(inputs)


@pytest.mark.parametrize("make, error, words", [
    (lambda m: m.Dot(axes="1"), TypeError, "Invalid type for argument `axes`"),
    (lambda m: m.Dot(axes=(1, 2, 3)), ValueError, "it should contain two elements"),
    (lambda m: m.ZeroPadding2D(padding=(1, 2, 3)), ValueError, "`padding` should have two elements"),
    (lambda m: m.ZeroPadding1D(padding=-1), ValueError, "The `padding` argument must be a tuple of 2 integers"),
    (lambda m: m.Cropping2D(cropping=-1), ValueError, "`cropping` cannot be negative"),
    (lambda m: m.Cropping3D(cropping=1.5), ValueError, "`cropping` should be either an int"),
    (lambda m: m.UpSampling1D(size=1.5), TypeError, "Expected an integer value for `size`"),
    (lambda m: m.UpSampling2D(size=0), ValueError, "The `size` argument must be a tuple of 2 integers"),
    (lambda m: m.UpSampling2D(data_format="nhwc"), ValueError, "The `data_format` argument must be one of"),
    (lambda m: m.RepeatVector(n=0), ValueError, "Argument `n` should be a positive integer"),
    (lambda m: m.Permute(dims=(1, 3)), ValueError, "Invalid permutation argument `dims`"),
])
def test_argument_errors_as_keras(make, error, words):
    with pytest.raises(error, match=words):
        make(keras.layers)
    with pytest.raises(error, match=words) as raised:
        make(layers)
    assert "received:" in str(raised.value)


def test_cropping_too_much_as_keras():
    x = np.zeros((1, 3, 3, 1), "float32")
    for module in (keras.layers, layers):
        with pytest.raises(ValueError, match="Values in `cropping` argument should be smaller"):
            module.Cropping2D(cropping=((2, 1), (0, 0)))(x)


def test_padding_and_cropping_are_each_others_backward():
    x = tf.constant(np.random.RandomState(5).standard_normal((2, 3, 4, 2)).astype("float32"))
    pad, crop = layers.ZeroPadding2D(((1, 2), (0, 1))), layers.Cropping2D(((1, 2), (0, 1)))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = crop(pad(x))
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(tape.gradient(y, x), np.ones_like(x))


def test_upsampling_area_as_keras_with_a_gradient():
    # Keras's "area" has no gradient in TensorFlow (ResizeArea); ours is the transpose of its matrix.
    x = tf.constant(np.random.RandomState(6).standard_normal((1, 2, 3, 2)).astype("float32"))
    ours = layers.UpSampling2D(size=(2, 3), interpolation="area")
    np.testing.assert_allclose(ours(x), keras.layers.UpSampling2D(size=(2, 3), interpolation="area")(x), atol=1e-6)
    assert keras_bp.check_gradients(ours, x).passed


def test_upsampling_unknown_interpolation_raises_at_call_as_keras():
    x = np.zeros((1, 2, 2, 1), "float32")
    for module in (keras.layers, layers):
        with pytest.raises(ValueError, match="Invalid value for argument `interpolation`"):
            module.UpSampling2D(interpolation="cubic")(x)


def test_convert_swaps_merge_and_shape_layers():
    a, b = keras.Input((4, 3)), keras.Input((4, 3))
    x = keras.layers.Concatenate()([keras.layers.Add()([a, b]), keras.layers.Maximum()([a, b])])
    x = keras.layers.ZeroPadding1D(1)(x)
    x = keras.layers.Cropping1D((1, 0))(x)
    x = keras.layers.UpSampling1D(2)(x)
    x = keras.layers.Permute((2, 1))(x)
    x = keras.layers.Rescaling(0.5, offset=1.0)(x)
    y = keras.layers.Dot(axes=1)([keras.layers.Flatten()(x), keras.layers.Flatten()(x)])
    model = keras.Model([a, b], y)
    converted = keras_bp.convert(model)
    kinds = {type(layer).__name__: type(layer).__module__ for layer in converted.layers}
    for name in ["Add", "Maximum", "Concatenate", "ZeroPadding1D", "Cropping1D", "UpSampling1D", "Permute",
                 "Rescaling", "Dot"]:
        assert kinds[name].startswith("keras_bp."), (name, kinds[name])
    inputs = [np.random.RandomState(7).standard_normal((2, 4, 3)).astype("float32") for _ in range(2)]
    np.testing.assert_allclose(converted.predict(inputs, verbose=0), model.predict(inputs, verbose=0), rtol=1e-5)
