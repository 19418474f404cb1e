"""Drop-in details that Keras's own unit tests check: built state, error types and words, shapes, dtypes.

Each test here failed before keras_bp matched Keras on it; `tools/keras_tests.py`
runs Keras's own tests against keras_bp's classes.
"""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_bp import layers, losses, optimizers

STATELESS = [
    lambda: layers.Activation("relu"),
    lambda: layers.ReLU(),
    lambda: layers.LeakyReLU(),
    lambda: layers.ELU(),
    lambda: layers.Softmax(),
    lambda: layers.Dropout(0.5),
    lambda: layers.Flatten(),
    lambda: layers.Reshape((4,)),
    lambda: layers.MaxPooling1D(),
    lambda: layers.MaxPooling2D(),
    lambda: layers.AveragePooling1D(2),
    lambda: layers.AveragePooling2D(2),
    lambda: layers.GlobalAveragePooling1D(),
    lambda: layers.GlobalAveragePooling2D(),
    lambda: layers.GlobalMaxPooling1D(),
    lambda: layers.GlobalMaxPooling2D(),
]


@pytest.mark.parametrize("make", STATELESS, ids=lambda make: type(make()).__name__)
def test_stateless_layers_are_built_at_construction_as_keras(make):
    layer = make()
    assert layer.built

    class WithBuild(type(layer)):
        def build(self, input_shape):
            self.extra = self.add_weight(shape=(1,), name="extra")

    subclass_layer = WithBuild(**layer.get_config())
    assert not subclass_layer.built  # Keras's rule: a subclass's own build still runs


def test_dropout_subclass_build_creates_its_weights():
    class NoisyDropout(layers.Dropout):
        def build(self, input_shape):
            self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="scale")

        def call(self, inputs, training=False):
            return super().call(inputs * self.scale, training=training)

    layer = NoisyDropout(0.5)
    layer(np.ones((2, 3), "float32"))
    assert [w.name for w in layer.weights] == ["scale"]


@pytest.mark.parametrize(
    "make, error, keras_words, our_words",
    [
        (lambda: layers.ReLU(max_value=-10), ValueError, "max_value of a ReLU layer cannot be a negative value",
         "max_value=-10"),
        (lambda: layers.ReLU(negative_slope=None), ValueError,
         "negative_slope of a ReLU layer cannot be None or a negative value", "negative_slope=None"),
        (lambda: layers.ReLU(threshold=None), ValueError, "threshold of a ReLU layer cannot be None or a negative value",
         "threshold=None"),
        (lambda: layers.LeakyReLU(negative_slope=None), ValueError,
         "The negative_slope value of a Leaky ReLU layer cannot be None", "negative_slope=None"),
        (lambda: layers.Dropout(1.5), ValueError,
         "Invalid value received for argument `rate`. Expected a float value between 0 and 1.", "rate=1.5"),
        (lambda: layers.Dropout(0.5, noise_shape="ab"), ValueError,
         "Invalid value received for argument `noise_shape`. Expected a tuple or list of integers.",
         "noise_shape='ab'"),
        (lambda: layers.Dropout(0.5, noise_shape=5), ValueError,
         "Invalid value received for argument `noise_shape`. Expected an iterable", "noise_shape=5"),
        (lambda: layers.Dropout(0.5, noise_shape=(2, 1.5)), ValueError,
         "Expected all elements to be integers or None", "noise_shape=(2, 1.5)"),
        (lambda: layers.Dropout(0.5, noise_shape=(2, 0)), ValueError,
         "Expected all dimensions to be positive integers or None", "noise_shape=(2, 0)"),
        (lambda: layers.Reshape((-2, 5)), ValueError, "non-negative integer.*-1.*target_shape=(-2, 5)",
         "target_shape=(-2, 5)"),
        (lambda: layers.Reshape((-1, -1)), ValueError, "There must be at most one unknown dimension (-1)",
         "target_shape=(-1, -1)"),
        (lambda: optimizers.SGD(momentum=-1.0), ValueError, "`momentum` must be a float between [0, 1].",
         "momentum=-1.0"),
        (lambda: optimizers.AdamW(weight_decay=None), ValueError,
         "Argument `weight_decay` must be a float. Received: weight_decay=None", "weight_decay=None"),
    ],
)
def test_errors_carry_keras_words_and_ours(make, error, keras_words, our_words):
    with pytest.raises(error) as info:
        make()
    message = str(info.value)
    pattern = keras_words if ".*" in keras_words else re.escape(keras_words)
    assert re.search(pattern.replace("(-2, 5)", r"\(-2, 5\)"), message), message
    assert our_words in message


def test_leaky_relu_takes_keras2_alpha_with_a_warning():
    with pytest.warns(UserWarning, match="alpha"):
        layer = layers.LeakyReLU(alpha=0.1)
    assert layer.negative_slope == pytest.approx(0.1)


def test_reshape_accepts_zero_sized_axes_as_keras():
    assert layers.Reshape((2, 0)).target_shape == (2, 0)
    assert keras.layers.Reshape((2, 0)).target_shape == (2, 0)


@pytest.mark.parametrize(
    "mask_shape, words",
    [((2, 2), "Each mask dimension must be 1 or match"), ((1, 1, 3), "must not have more dimensions")],
)
def test_softmax_mask_that_does_not_broadcast_is_a_value_error(mask_shape, words):
    with pytest.raises(ValueError, match=words):
        layers.Softmax()(np.ones((2, 3), "float32"), mask=np.ones(mask_shape, bool))


@pytest.mark.parametrize(
    "input_shape, target, expected", [((None, 6, 4), (-1, 8), (None, 3, 8)), ((4, 6, None, 3), (-1, 3), (4, None, 3))]
)
def test_reshape_infers_minus_one_in_the_traced_shape(input_shape, target, expected):
    layer = layers.Reshape(target)
    traced = tf.function(layer.__call__).get_concrete_function(tf.TensorSpec(input_shape, tf.float32))
    assert tuple(traced.structured_outputs.shape) == expected


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda: layers.Flatten(), lambda: keras.layers.Flatten()),
        (lambda: layers.Flatten(data_format="channels_first"), lambda: keras.layers.Flatten(data_format="channels_first")),
        (lambda: layers.Reshape((6, 5)), lambda: keras.layers.Reshape((6, 5))),
    ],
)
def test_sparse_inputs_stay_sparse_through_reshaping(ours, theirs):
    x = np.random.default_rng(0).random((4, 3, 5, 2)).astype("float32")
    x = tf.sparse.from_dense(x * (x > 0.7))
    y, y_ref = ours()(x), theirs()(x)
    assert isinstance(y, tf.SparseTensor)
    np.testing.assert_array_equal(tf.sparse.to_dense(y), tf.sparse.to_dense(y_ref))


@pytest.mark.parametrize("name", ["BinaryCrossentropy", "CategoricalCrossentropy"])
def test_cross_entropy_with_mismatched_shapes_is_a_value_error(name):
    y_true = np.array([[0], [1], [2]])
    y_pred = np.array([[0.9, 0.05, 0.05], [0.5, 0.89, 0.6], [0.05, 0.01, 0.94]])
    with pytest.raises(ValueError, match="must have the same shape"):
        getattr(losses, name)()(y_true, y_pred)


@pytest.mark.parametrize("name", ["BinaryCrossentropy", "MeanSquaredError", "HalfSquaredError"])
@pytest.mark.parametrize("flip", [False, True], ids=["target_rank1", "prediction_rank1"])
def test_targets_one_rank_apart_are_matched_not_broadcast(name, flip):
    y_true, y_pred = np.array([0.0, 1.0, 1.0]), np.array([[0.2], [0.7], [0.9]])
    if flip:
        y_true, y_pred = y_pred, y_true
    got = float(getattr(losses, name)()(y_true, y_pred))
    reference = keras.losses.MeanSquaredError() if name == "HalfSquaredError" else getattr(keras.losses, name)()
    expected = float(reference(y_true, y_pred)) * (0.5 if name == "HalfSquaredError" else 1.0)
    assert got == pytest.approx(expected, rel=1e-6)


def test_sparse_categorical_axis_is_checked_when_called_as_keras():
    loss = losses.SparseCategoricalCrossentropy(axis=0)
    with pytest.raises(ValueError, match=re.escape("Only axis=-1 is currently supported. Received: axis=0")):
        loss(np.zeros((4,)), np.ones((4, 2)) / 2)


@pytest.mark.parametrize("name", ["SimpleRNN", "LSTM", "GRU"])
def test_recurrent_layers_take_integer_sequences_as_keras(name):
    x = np.arange(24, dtype="int64").reshape(2, 3, 4) % 3
    ours, theirs = getattr(layers, name)(2), getattr(keras.layers, name)(2)
    ours.build(x.shape)
    theirs.build(x.shape)
    theirs.set_weights(ours.get_weights())
    y = ours(x)
    assert y.dtype == theirs(x).dtype == tf.float32
    np.testing.assert_allclose(y, theirs(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("make", [lambda: layers.Flatten(), lambda: layers.Reshape((15,))], ids=["Flatten", "Reshape"])
def test_symbolic_sparse_input_gives_a_sparse_symbolic_output(make):
    inputs = keras.Input((3, 5), sparse=True)
    assert make()(inputs).sparse
    assert not make()(keras.Input((3, 5))).sparse


# Where our constructor's parameters differ from Keras's, and why.
_SIGNATURE_DIFFERENCES = {
    # Keras's Conv layers take LoRA's arguments through **kwargs (BaseConv's); ours name them.
    "Conv1D": ({"lora_rank", "lora_alpha"}, set()),
    "Conv2D": ({"lora_rank", "lora_alpha"}, set()),
    "Conv3D": ({"lora_rank", "lora_alpha"}, set()),
    # Quantization's arguments are refused through **kwargs with Keras's error (keras_bp/layers/_quantization.py).
    "Dense": (set(), {"quantization_config"}),
    "Embedding": (set(), {"quantization_config"}),
    "EinsumDense": (set(), {"quantization_config", "gptq_unpacked_column_size"}),
}


@pytest.mark.parametrize("name", layers.__all__)
def test_constructor_parameters_are_kerass_in_keras_order(name):
    import inspect

    ours = inspect.signature(getattr(layers, name).__init__).parameters
    theirs = inspect.signature(getattr(keras.layers, name).__init__).parameters
    extra, missing = _SIGNATURE_DIFFERENCES.get(name, (set(), set()))
    assert set(ours) - set(theirs) == extra and set(theirs) - set(ours) == missing
    shared = [p for p in theirs if p in ours]
    assert [p for p in ours if p in theirs] == shared
    for p in shared:
        a, b = ours[p].default, theirs[p].default
        # An int default for a per-axis tuple (Conv2D's strides=1 for Keras's (1, 1)) is the same argument.
        same_per_axis = isinstance(a, int) and isinstance(b, tuple) and b == (a,) * len(b)
        assert a == b or same_per_axis, (p, ours[p], theirs[p])
