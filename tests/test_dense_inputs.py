"""Dense and Embedding as Keras's tests use them: integer, sparse, ragged inputs; quantization; error words."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_bp
from keras_bp import layers
from tests.harness import assert_close, dense


def _twins(ours, theirs, shape):
    """Ours and Keras's layer, built on `shape`, with the same random weights."""
    ours.build(shape)
    theirs.build(shape)
    rng = np.random.RandomState(0)
    theirs.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(w.dtype) for w in theirs.get_weights()])
    ours.set_weights(theirs.get_weights())
    return ours, theirs


def _grads(layer, x, watch=()):
    """The output, and the gradients of sum(y^2) wrt `watch` and the trainable weights."""
    with tf.GradientTape() as tape:
        for t in watch:
            tape.watch(t)
        y = layer(x)
        values = y.flat_values if isinstance(y, tf.RaggedTensor) else y
        loss = tf.reduce_sum(values ** 2)
    return y, tape.gradient(loss, list(watch) + layer.trainable_weights)


# --- integer inputs -------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8", "bool"])
def test_dense_computes_integer_inputs_in_the_compute_dtype(dtype):
    ours, theirs = _twins(layers.Dense(3, activation="relu"), keras.layers.Dense(3, activation="relu"), (None, 4))
    x = np.random.RandomState(1).randint(0, 3, (5, 4)).astype(dtype)
    y = ours(x)
    assert y.dtype == tf.float32
    assert_close(y, theirs(x), 1e-6)
    _, grads = _grads(ours, tf.constant(x))
    _, expected = _grads(theirs, tf.constant(x))
    for a, b in zip(grads, expected):
        assert_close(a, b, 1e-6)


def test_dense_trains_on_integer_inputs():
    x = np.random.RandomState(2).randint(0, 4, (16, 3)).astype("int64")
    y = (x.sum(axis=1, keepdims=True) > 4).astype("float32")
    model = keras.Sequential([keras.Input((3,), dtype="int64"), layers.Dense(4, activation="tanh"), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    losses = model.fit(x, y, epochs=3, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


# --- sparse inputs into Dense ---------------------------------------------------


def _sparse(shape, seed):
    rng = np.random.RandomState(seed)
    x = (rng.standard_normal(shape) * (rng.uniform(size=shape) < 0.4)).astype("float32")
    return x, tf.sparse.from_dense(x)


def test_dense_keeps_a_sparse_input_sparse_with_keras_numbers():
    ours, theirs = _twins(layers.Dense(3, activation="tanh"), keras.layers.Dense(3, activation="tanh"), (None, 5))
    x, sparse = _sparse((6, 5), 3)
    y, grads = _grads(ours, sparse)
    expected_y, expected = _grads(theirs, sparse)
    assert_close(y, expected_y, 1e-6)
    assert_close(y, ours(x), 1e-6)
    # The kernel's gradient stays sparse (the rows the input uses), as Keras's.
    assert isinstance(grads[0], tf.IndexedSlices)
    for a, b in zip(grads, expected):
        assert_close(dense(a), dense(b), 1e-5)


def test_dense_takes_a_rank3_sparse_input():
    # Keras 3.15's Dense fails on this one (its 3-D sparse matmul); ours is
    # checked against its own dense path and autodiff.
    layer, _ = _twins(layers.Dense(3), keras.layers.Dense(3), (None, 5))
    x, sparse = _sparse((2, 3, 5), 3)
    y, grads = _grads(layer, sparse)
    expected_y, expected = _grads(layer, tf.constant(x))
    assert y.shape == (2, 3, 3)
    assert_close(y, expected_y, 1e-6)
    for a, b in zip(grads, expected):
        assert_close(dense(a), dense(b), 1e-5)


def test_dense_sparse_input_gradients_match_autodiff_values_included():
    layer, _ = _twins(layers.Dense(4, activation="sigmoid"), keras.layers.Dense(4), (None, 5))
    x, sparse = _sparse((6, 5), 4)
    values = tf.constant(sparse.values)

    def run():
        return _grads(layer, tf.SparseTensor(sparse.indices, values, sparse.dense_shape), watch=[values])[1]

    manual = run()
    with keras_bp.autodiff():
        reference = run()
    for a, b in zip(manual, reference):
        assert_close(dense(a), dense(b), 1e-5)
    # dL/dv for each nonzero v equals the dense input's gradient at its place.
    xt = tf.constant(x)
    _, (dx, *_) = _grads(layer, xt, watch=[xt])
    assert_close(manual[0], tf.gather_nd(dx, sparse.indices), 1e-5)


def test_dense_fits_on_sparse_inputs():
    x, sparse = _sparse((16, 5), 5)
    y = np.random.RandomState(5).standard_normal((16, 1)).astype("float32")
    model = keras.Sequential([keras.Input((5,), sparse=True), layers.Dense(3, activation="tanh"), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", jit_compile=False)
    before = model.layers[0]._kernel.numpy().copy()
    losses = model.fit(sparse, y, epochs=3, batch_size=16, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert not np.array_equal(model.layers[0]._kernel.numpy(), before)


# --- sparse and ragged ids into Embedding ---------------------------------------


def test_embedding_looks_up_sparse_ids_as_keras_does():
    ours, theirs = _twins(layers.Embedding(5, 3), keras.layers.Embedding(5, 3), None)
    # Missing entries read row 0, as Keras's safe_embedding_lookup_sparse with default_id=0.
    ids = tf.SparseTensor([[0, 0], [1, 2], [1, 3]], tf.constant([4, 1, -1], tf.int32), (2, 4))
    y, grads = _grads(ours, ids)
    expected_y, expected = _grads(theirs, ids)
    assert y.shape == (2, 4, 3)
    assert_close(y, expected_y, 1e-6)
    assert isinstance(grads[0], tf.IndexedSlices)
    assert_close(dense(grads[0]), dense(expected[0]), 1e-6)


def test_embedding_gives_ragged_outputs_for_ragged_ids():
    ours, theirs = _twins(layers.Embedding(6, 2, mask_zero=True), keras.layers.Embedding(6, 2, mask_zero=True), None)
    ids = tf.ragged.constant([[1, 2, 5], [], [3]], dtype=tf.int64)
    y, grads = _grads(ours, ids)
    expected_y, expected = _grads(theirs, ids)
    assert isinstance(y, tf.RaggedTensor)
    np.testing.assert_array_equal(y.row_lengths(), [3, 0, 1])
    assert_close(y.flat_values, expected_y.flat_values, 1e-6)
    assert_close(dense(grads[0]), dense(expected[0]), 1e-6)
    symbolic = ours(keras.Input((None,), dtype="int64", ragged=True))
    assert symbolic.ragged and symbolic.shape == (None, None, 2)


def test_embedding_lora_on_sparse_ids_matches_autodiff():
    layer = layers.Embedding(5, 3, lora_rank=2)
    layer.build()
    layer.lora_embeddings_b.assign(np.full((2, 3), 0.3, "float32"))
    ids = tf.SparseTensor([[0, 1], [1, 0]], tf.constant([3, 2], tf.int64), (2, 2))
    manual = _grads(layer, ids)[1]
    with keras_bp.autodiff():
        reference = _grads(layer, ids)[1]
    for a, b in zip(manual, reference):
        assert_close(dense(a), dense(b), 1e-6)


# --- quantization: refused, pointing at Keras's layers --------------------------


QUANTIZABLE = [
    ("Dense", lambda **kw: layers.Dense(2, **kw), (None, 3)),
    ("Conv2D", lambda **kw: layers.Conv2D(2, 2, **kw), (None, 4, 4, 1)),
    ("Embedding", lambda **kw: layers.Embedding(4, 2, **kw), None),
]


@pytest.mark.parametrize("name, make, shape", QUANTIZABLE, ids=[q[0] for q in QUANTIZABLE])
@pytest.mark.parametrize("mode", ["int8", "int4", "float8"])
def test_quantize_is_refused_with_a_pointer_to_keras(name, make, shape, mode):
    message = rf"keras_bp.layers.{name} does not support quantization.*use keras.layers.{name} for quantized inference"
    layer = make()
    layer.build(shape)
    with pytest.raises(NotImplementedError, match=message + ".*") as info:
        layer.quantize(mode)
    assert f"quantize(mode='{mode}')" in str(info.value)
    assert layer.quantization_mode is None and len(layer.weights) == (1 if name == "Embedding" else 2)
    with pytest.raises(NotImplementedError, match=message):
        make(dtype=f"{mode}_from_float32")
    with pytest.raises(NotImplementedError, match=message):
        layer.dtype_policy = f"{mode}_from_float32"  # Keras's setter quantizes a built layer
    unbuilt = make()
    unbuilt.dtype_policy = f"{mode}_from_float32"
    with pytest.raises(NotImplementedError, match=message):
        unbuilt.build(shape)


def test_quantization_keeps_keras_errors_for_invalid_calls():
    layer = layers.Dense(2)
    with pytest.raises(ValueError, match="Cannot quantize a layer that isn't yet built"):
        layer.quantize("int8")
    layer.build((None, 2))
    with pytest.raises(ValueError, match="Invalid quantization mode"):
        layer.quantize("int7")
    with pytest.raises(NotImplementedError, match="Invalid quantization mode"):
        layer.quantized_build((None, 2), "int7")
    with pytest.raises(ValueError, match="does not support quantization_config"):
        layers.Embedding(4, 2, quantization_config={"mode": "int8"})


# --- errors: our form, and Keras's words -----------------------------------------


@pytest.mark.parametrize(
    "make, ours, keras_words",
    [
        (lambda: layers.Conv1D(filters=0, kernel_size=1), "filters must be a positive integer, received: filters=0",
         "Invalid value for argument `filters`. Expected a strictly positive value. Received filters=0."),
        (lambda: layers.Conv2D(filters=2, kernel_size=(1, 0)), r"received: kernel_size=\(1, 0\)",
         r"The `kernel_size` argument must be a tuple of 2 integers. Received kernel_size=\(1, 0\), "
         r"including values \{0\} that do not satisfy `value > 0`"),
        (lambda: layers.Conv2D(filters=2, kernel_size=2, strides=(1, 0)), r"received: strides=\(1, 0\)",
         r"The `strides` argument must be a tuple of 2 integers. Received strides=\(1, 0\)"),
        (lambda: layers.Conv2D(filters=2, kernel_size=2, strides=2, dilation_rate=(2, 1)),
         r"received: strides=\(2, 2\), dilation_rate=\(2, 1\)",
         r"`strides > 1` not supported in conjunction with `dilation_rate > 1`. "
         r"Received: strides=\(2, 2\) and dilation_rate=\(2, 1\)"),
        (lambda: layers.Conv2D(filters=5, kernel_size=2, groups=0), "groups must be a positive integer, received: groups=0",
         "The number of groups must be a positive integer. Received: groups=0."),
        (lambda: layers.Conv2D(filters=5, kernel_size=2, groups=2), "received: filters=5, groups=2",
         "The number of filters must be evenly divisible by the number of groups. Received: groups=2, filters=5."),
        (lambda: layers.Embedding(input_dim=3.7, output_dim=8), "input_dim must be a positive integer, received: input_dim=3.7",
         "`input_dim` must be a positive integer"),
        (lambda: layers.Embedding(input_dim=4, output_dim=True), "output_dim must be a positive integer, received: output_dim=True",
         "`output_dim` must be a positive integer"),
    ],
    ids=["filters", "kernel_size", "strides", "strides-and-dilation", "groups", "groups-divide", "input_dim",
         "output_dim"],
)
def test_errors_keep_our_form_and_carry_keras_words(make, ours, keras_words):
    with pytest.raises(ValueError) as info:
        make()
    message = str(info.value)
    assert re.search(ours, message), message
    assert re.search(keras_words, message), message


def test_from_config_wraps_the_error_as_keras_does():
    with pytest.raises(TypeError, match="`input_dim` must be a positive integer"):
        layers.Embedding.from_config({"input_dim": 3.7, "output_dim": 8})
