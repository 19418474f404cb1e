"""Edge cases of SimpleRNN, LSTM, GRU and Embedding that the shared harness does not reach.

Masks from Embedding(mask_zero=True) and Masking, stateful layers across
batches, the Bidirectional and TimeDistributed wrappers, stacking, dropout,
Keras configs, bad arguments, and Embedding's sparse gradient.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_bp
from keras_bp import layers

RNNS = ["SimpleRNN", "LSTM", "GRU"]


def _grads(model, inputs, seed=0):
    """Outputs and gradients of sum <u, y> wrt every trainable weight."""
    with tf.GradientTape() as tape:
        outputs = tf.nest.flatten(model(inputs, training=True))
        rng = np.random.RandomState(seed)
        loss = tf.add_n([tf.reduce_sum(y * rng.standard_normal(tuple(y.shape)).astype("float32")) for y in outputs])
    grads = tape.gradient(loss, model.trainable_weights)
    return [np.asarray(y) for y in outputs], [np.asarray(tf.convert_to_tensor(g)) for g in grads]


def _assert_same_model(ours, theirs, inputs, rtol=1e-5):
    theirs.set_weights(ours.get_weights())
    our_out, our_grads = _grads(ours, inputs)
    their_out, their_grads = _grads(theirs, inputs)
    assert len(our_grads) == len(their_grads)
    for a, b in zip(our_out + our_grads, their_out + their_grads):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(1.0, np.abs(b).max()))


def _token_ids():
    # Right-padded, left-padded and unpadded rows.
    return np.array([[3, 1, 4, 0, 0], [0, 0, 2, 7, 1], [5, 9, 2, 6, 5]], "int32")


# --- masks ---------------------------------------------------------------------


@pytest.mark.parametrize("name", RNNS)
def test_mask_from_embedding_matches_keras(name):
    def build(lib):
        return keras.Sequential(
            [
                keras.Input((5,), dtype="int32"),
                lib.Embedding(10, 3, mask_zero=True),
                getattr(lib, name)(4, return_sequences=True),
                getattr(lib, name)(2),
            ]
        )

    _assert_same_model(build(layers), build(keras.layers), tf.constant(_token_ids()))


@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_mask_from_masking_layer_is_passed_on(name):
    x = np.random.RandomState(0).standard_normal((3, 5, 2)).astype("float32")
    x[0, 3:] = 0.0
    x[1, :2] = 0.0

    def build(lib):
        inputs = keras.Input((5, 2))
        masked = keras.layers.Masking()(inputs)
        return keras.Model(inputs, getattr(lib, name)(3, return_sequences=True)(masked))

    ours, theirs = build(layers), build(keras.layers)
    _assert_same_model(ours, theirs, tf.constant(x))
    # return_sequences passes the mask on; without it there is none.
    rnn = getattr(layers, name)(3, return_sequences=True)
    mask = tf.constant(np.any(x != 0, axis=-1))
    np.testing.assert_array_equal(rnn.compute_mask(x, mask), mask)
    assert getattr(layers, name)(3).compute_mask(x, mask) is None
    states = getattr(layers, name)(3, return_state=True).compute_mask(x, mask)
    assert states == [None] * (3 if name == "LSTM" else 2)


@pytest.mark.parametrize("name", RNNS)
def test_masked_steps_carry_state_and_gradient(name):
    """A fully masked sample keeps its initial state and passes the state's gradient straight back."""
    rng = np.random.RandomState(1)
    rnn = getattr(layers, name)(2, return_state=True)
    x = tf.constant(rng.standard_normal((2, 3, 2)).astype("float32"))
    states = [tf.constant(rng.standard_normal((2, 2)).astype("float32")) for _ in range(2 if name == "LSTM" else 1)]
    mask = tf.constant([[False, False, False], [True, True, True]])
    with tf.GradientTape() as tape:
        tape.watch(states)
        output, *final = rnn(x, initial_state=states, mask=mask)
        loss = tf.add_n([tf.reduce_sum(f[0]) for f in final])
    for s, f in zip(states, final):
        np.testing.assert_array_equal(f[0], s[0])
    np.testing.assert_array_equal(output[0], np.zeros(2))  # Keras: zeros before the first kept step
    for g in tape.gradient(loss, states):
        np.testing.assert_array_equal(g[0], np.ones(2))


class _MaskedRNN(keras.layers.Layer):
    """An RNN called with a fixed mask and initial states given positionally, for check_gradients."""

    def __init__(self, rnn_name, mask, **kwargs):
        super().__init__(**kwargs)
        self.rnn_name, self.mask = rnn_name, mask
        self.rnn = getattr(layers, rnn_name)(2, return_sequences=True, return_state=True, dtype=kwargs.get("dtype"))

    def build(self, x_shape, *state_shapes):
        self.rnn.build(x_shape)

    def call(self, x, *states):
        return self.rnn(x, initial_state=list(states), mask=tf.constant(self.mask))

    def get_config(self):
        return {**super().get_config(), "rnn_name": self.rnn_name, "mask": self.mask}


@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_float64_check_gradients_with_mask_and_states(name):
    rng = np.random.RandomState(2)
    layer = _MaskedRNN(name, [[True, False, True], [False, True, True]])
    x = rng.standard_normal((2, 3, 2)).astype("float32")
    states = [rng.standard_normal((2, 2)).astype("float32") for _ in range(2 if name == "LSTM" else 1)]
    result = keras_bp.check_gradients(layer, x, *states)
    assert len(result.rows) >= 2 * (1 + len(states) + 3), str(result)  # inputs, states and all three weights
    assert result.passed, str(result)


def test_mask_of_wrong_shape_is_rejected():
    with pytest.raises(ValueError, match="mask"):
        layers.LSTM(2)(np.zeros((2, 3, 4), "float32"), mask=np.ones((2, 4), bool))


# --- states -------------------------------------------------------------------


@pytest.mark.parametrize("name", RNNS)
def test_stateful_across_two_batches_matches_keras(name):
    rng = np.random.RandomState(3)
    ours = getattr(layers, name)(3, stateful=True, return_sequences=True)
    theirs = getattr(keras.layers, name)(3, stateful=True, return_sequences=True)
    first, second = (rng.standard_normal((2, 4, 2)).astype("float32") for _ in range(2))
    ours.build((2, 4, 2))
    theirs.build((2, 4, 2))
    ours.set_weights(theirs.get_weights())
    assert len(ours.get_weights()) == 3, "state variables stay out of the weights, as in Keras"
    outputs = []
    for batch in (first, second):
        outputs.append(ours(batch))
        np.testing.assert_allclose(outputs[-1], theirs(batch), rtol=1e-5, atol=1e-6)
    for a, b in zip(ours.states, theirs.states):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    # The second batch started from the first one's final state, not from zeros.
    fresh = getattr(layers, name)(3, return_sequences=True)
    fresh.build((2, 4, 2))
    fresh.set_weights(ours.get_weights())
    assert not np.allclose(fresh(second), outputs[1], atol=1e-4)
    ours.reset_state()
    for s in ours.states:
        np.testing.assert_array_equal(s.numpy(), 0)
    np.testing.assert_allclose(ours(second), fresh(second), rtol=1e-6)


def test_stateful_needs_a_static_batch_size():
    with pytest.raises(ValueError, match="batch size"):
        keras.Sequential([keras.Input((3, 2)), layers.GRU(2, stateful=True)])


def test_stateful_fit_carries_state_between_batches():
    model = keras.Sequential([keras.Input((4, 2), batch_size=2), layers.LSTM(3, stateful=True), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", jit_compile=False)
    x = np.random.RandomState(4).standard_normal((4, 4, 2)).astype("float32")
    model.fit(x, np.ones((4, 1), "float32"), batch_size=2, shuffle=False, epochs=1, verbose=0)
    assert np.abs(model.layers[0].states[0].numpy()).sum() > 0


@pytest.mark.parametrize("name", RNNS)
def test_return_state_structure_and_shapes(name):
    rnn = getattr(layers, name)(3, return_sequences=True, return_state=True)
    outputs = rnn(np.zeros((2, 5, 4), "float32"))
    expected = rnn.compute_output_shape((2, 5, 4))
    assert len(outputs) == (3 if name == "LSTM" else 2)
    assert [tuple(o.shape) for o in outputs] == [tuple(s) for s in expected]
    symbolic = rnn(keras.Input((5, 4)))
    assert [tuple(s.shape)[1:] for s in symbolic] == [tuple(s)[1:] for s in expected]


def test_wrong_number_of_initial_states_is_rejected():
    with pytest.raises(ValueError, match="initial_state"):
        layers.LSTM(2)(np.zeros((2, 3, 4), "float32"), initial_state=[np.zeros((2, 2), "float32")])


# --- GRU layouts, dropout -------------------------------------------------------


@pytest.mark.parametrize("reset_after, bias_shape", [(True, (2, 9)), (False, (9,))])
def test_gru_bias_layout(reset_after, bias_shape):
    ours, theirs = layers.GRU(3, reset_after=reset_after), keras.layers.GRU(3, reset_after=reset_after)
    x = np.random.RandomState(5).standard_normal((2, 4, 2)).astype("float32")
    ours(x), theirs(x)
    assert [tuple(w.shape) for w in ours.weights] == [(2, 9), (3, 9), bias_shape]
    assert [tuple(w.shape) for w in theirs.weights] == [(2, 9), (3, 9), bias_shape]


@pytest.mark.parametrize("name", RNNS)
def test_dropout_only_in_training_and_masks_shared_by_steps(name):
    x = np.repeat(np.random.RandomState(6).standard_normal((2, 1, 3)).astype("float32"), 4, axis=1)
    kwargs = dict(return_sequences=True, seed=7, kernel_initializer="ones", recurrent_initializer="zeros")
    dropped = getattr(layers, name)(2, dropout=0.5, **kwargs)
    plain = getattr(layers, name)(2, **kwargs)
    np.testing.assert_array_equal(dropped(x, training=False), plain(x, training=False))
    assert not np.allclose(dropped(x, training=True), plain(x, training=True))
    # With a zero recurrent kernel each step sees only its (repeated) input: a
    # mask drawn once per call gives every step the same pre-activation, but
    # the state still enters through LSTM's cell and GRU's gate, so compare
    # SimpleRNN's steps only.
    if name == "SimpleRNN":
        y = dropped(x, training=True).numpy()
        np.testing.assert_allclose(y[:, 0], y[:, 3], rtol=1e-6)


def test_keras_configs_load_into_ours():
    for theirs in (keras.layers.LSTM(3, dropout=0.1, go_backwards=True), keras.layers.GRU(2, reset_after=False),
                   keras.layers.SimpleRNN(4, activation="relu"), keras.layers.Embedding(7, 2, mask_zero=True)):
        ours = getattr(layers, type(theirs).__name__).from_config(theirs.get_config())
        for key, value in theirs.get_config().items():
            if key not in ("name", "dtype", "quantization_config"):
                assert ours.get_config()[key] == value, (type(theirs).__name__, key)


# --- wrappers and stacking ---------------------------------------------------


@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_bidirectional_with_mask_matches_keras(name):
    def build(lib):
        return keras.Sequential(
            [
                keras.Input((5,), dtype="int32"),
                lib.Embedding(10, 3, mask_zero=True),
                keras.layers.Bidirectional(getattr(lib, name)(2, return_sequences=True)),
                keras.layers.Bidirectional(getattr(lib, name)(2), merge_mode="sum"),
            ]
        )

    _assert_same_model(build(layers), build(keras.layers), tf.constant(_token_ids()))


def test_time_distributed_rnn_matches_keras():
    def build(lib):
        return keras.Sequential([keras.Input((3, 4, 2)), keras.layers.TimeDistributed(lib.GRU(2))])

    x = np.random.RandomState(8).standard_normal((2, 3, 4, 2)).astype("float32")
    _assert_same_model(build(layers), build(keras.layers), tf.constant(x))


def test_stacked_rnns_fit_like_keras():
    def build(lib):
        return keras.Sequential(
            [keras.Input((4, 2)), lib.LSTM(3, return_sequences=True), lib.SimpleRNN(3, return_sequences=True),
             lib.GRU(2)]
        )

    x = np.random.RandomState(9).standard_normal((4, 4, 2)).astype("float32")
    y = np.random.RandomState(10).standard_normal((4, 2)).astype("float32")
    ours, theirs = build(layers), build(keras.layers)
    theirs.set_weights(ours.get_weights())
    for model in (ours, theirs):
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", jit_compile=False)
        model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


# --- bad arguments ---------------------------------------------------------------


@pytest.mark.parametrize("name", RNNS)
@pytest.mark.parametrize("units", [0, -2, 2.5, True])
def test_units_must_be_positive_integer(name, units):
    with pytest.raises(ValueError, match=f"units={units!r}"):
        getattr(layers, name)(units)


@pytest.mark.parametrize("argument", ["dropout", "recurrent_dropout"])
def test_rates_must_be_in_unit_interval(argument):
    with pytest.raises(ValueError, match=f"{argument}=1.5"):
        layers.LSTM(2, **{argument: 1.5})


def test_input_of_wrong_rank_is_rejected():
    with pytest.raises(ValueError, match=r"sequences with shape \(2, 3\)"):
        layers.GRU(2)(np.zeros((2, 3), "float32"))


def test_bad_use_cudnn_and_activation_are_rejected():
    with pytest.raises(ValueError, match="use_cudnn='yes'"):
        layers.LSTM(2, use_cudnn="yes")
    with pytest.raises(ValueError, match="Unknown activation"):
        layers.GRU(2, recurrent_activation="no-such-activation")


@pytest.mark.parametrize("argument", ["input_dim", "output_dim"])
def test_embedding_dims_must_be_positive(argument):
    kwargs = {"input_dim": 4, "output_dim": 2, argument: 0}
    with pytest.raises(ValueError, match=f"{argument}=0"):
        layers.Embedding(**kwargs)


# --- Embedding's sparse gradient -----------------------------------------------


def test_embedding_gradient_is_indexed_slices_and_sgd_applies_it():
    embedding = layers.Embedding(6, 2)
    ids = tf.constant([[1, 4, 1], [5, 4, -1]])
    with tf.GradientTape() as tape:
        y = embedding(ids)
        loss = tf.reduce_sum(y * tf.reshape(tf.range(12, dtype=tf.float32), (2, 3, 2)))
    (g,) = tape.gradient(loss, embedding.trainable_weights)
    assert isinstance(g, tf.IndexedSlices)
    assert tuple(g.values.shape) == (6, 2)
    np.testing.assert_array_equal(g.indices, [1, 4, 1, 5, 4, 5])  # -1 counts from the end
    np.testing.assert_array_equal(g.dense_shape, [6, 2])
    expected = np.zeros((6, 2), "float32")
    np.add.at(expected, [1, 4, 1, 5, 4, 5], np.arange(12, dtype="float32").reshape(6, 2))
    np.testing.assert_array_equal(tf.convert_to_tensor(g), expected)

    before = embedding.embeddings.numpy()
    keras.optimizers.SGD(0.5).apply_gradients([(g, embedding.embeddings)])
    np.testing.assert_allclose(embedding.embeddings.numpy(), before - 0.5 * expected, rtol=1e-6)


def test_embedding_sparse_gradient_trains_with_adam_under_xla():
    model = keras.Sequential([keras.Input((3,), dtype="int32"), layers.Embedding(8, 2), layers.Flatten(),
                              layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse", jit_compile=True)
    ids = np.array([[1, 2, 3], [1, 2, 2]], "int32")
    before = model.layers[0].embeddings.numpy()
    history = model.fit(ids, np.array([[1.0], [-1.0]], "float32"), epochs=5, verbose=0)
    after = model.layers[0].embeddings.numpy()
    assert history.history["loss"][-1] < history.history["loss"][0]
    changed = np.any(after != before, axis=1)
    assert changed[[1, 2, 3]].all() and not changed[[0, 4, 5, 6, 7]].any(), changed
