"""Foundation layers: bad arguments, activations lookup, models built from keras_bp alone."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_bp
from keras_bp import activations, layers
from tests.harness import assert_close


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: layers.Dense(0), "units must be a positive integer, received: units=0"),
        (lambda: layers.Dense(2.5), "units=2.5"),
        (lambda: layers.Dense(3, activation="relu7"), "Unknown activation: 'relu7'.*sigmoid"),
        (lambda: layers.Dense(3, lora_rank=-2), "lora_rank"),
        (lambda: layers.Dropout(1.5), r"rate must be a float in \[0, 1\], received: rate=1.5"),
        (lambda: layers.Dropout(0.5, noise_shape=(2, 0)), "noise_shape"),
        (lambda: layers.Activation("nope"), "Unknown activation: 'nope'"),
        (lambda: layers.ReLU(max_value=-1.0), "max_value=-1.0"),
        (lambda: layers.ReLU(negative_slope=-0.1), "negative_slope=-0.1"),
        (lambda: layers.LeakyReLU(negative_slope=None), "negative_slope=None"),
        (lambda: layers.Reshape((2, -2)), r"target_shape=\(2, -2\)"),
        (lambda: layers.Reshape((-1, -1)), "at most one -1"),
        (lambda: layers.Flatten(data_format="NCHW"), "data_format='NCHW'"),
    ],
)
def test_bad_arguments_name_the_argument_and_value(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_wrong_input_rank_is_a_clear_error():
    with pytest.raises(ValueError, match="min_ndim=2"):
        layers.Dense(3)(np.ones((4,), "float32"))
    model = keras.Sequential([keras.Input((4,)), layers.Dense(3)])
    with pytest.raises(ValueError, match="expected axis -1 of input shape to have value 4"):
        model(np.ones((2, 5), "float32"))


def test_activation_lookup_accepts_names_functions_and_pairs():
    assert activations.get(None).name == "linear"
    assert activations.get(keras.activations.relu).name == "relu"
    assert activations.get(activations.get("tanh")).name == "tanh"
    with pytest.raises(ValueError, match="keras_bp supports these activations"):
        activations.get(lambda x: x)


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda x: activations.relu(x, negative_slope=0.1, max_value=2.0, threshold=0.3),
         lambda x: keras.activations.relu(x, negative_slope=0.1, max_value=2.0, threshold=0.3)),
        (lambda x: activations.leaky_relu(x, 0.1), lambda x: keras.activations.leaky_relu(x, 0.1)),
        (lambda x: activations.elu(x, 0.5), lambda x: keras.activations.elu(x, 0.5)),
        (lambda x: activations.gelu(x, approximate=True), lambda x: keras.activations.gelu(x, approximate=True)),
        (lambda x: activations.gelu(x), lambda x: keras.activations.gelu(x)),
        (lambda x: activations.softmax(x, axis=0), lambda x: keras.activations.softmax(x, axis=0)),
        (activations.swish, keras.activations.swish),
        (activations.relu6, keras.activations.relu6),
    ],
)
def test_activation_functions_match_keras(ours, theirs):
    x = tf.constant(np.random.RandomState(0).standard_normal((5, 6)) * 3, tf.float32)
    results = []
    for fn in (ours, theirs):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
            loss = tf.reduce_sum(y * tf.range(6, dtype=tf.float32))
        results.append((y, tape.gradient(loss, x)))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6, atol=1e-7)
    assert_close(results[0][1], results[1][1], 1e-5)
    assert keras_bp.check_gradients(ours, x.numpy().astype("float64")).passed


@pytest.mark.parametrize("jit_compile", [False, True])
def test_sequential_mlp_from_keras_bp_alone_trains_and_reloads(jit_compile, tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.RandomState(0)
    x = rng.standard_normal((64, 8)).astype("float32")
    y = (x[:, :3] > 0).astype("float32")
    model = keras.Sequential([
        keras.Input((8,)),
        layers.Dense(16, activation="relu"),
        layers.Dropout(0.1),
        layers.Reshape((4, 4)),
        layers.Flatten(),
        layers.Dense(3),
        layers.Activation("sigmoid"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=keras_bp.losses.BinaryCrossentropy(),
                  metrics=["binary_accuracy"], jit_compile=jit_compile)
    history = model.fit(x, y, epochs=15, batch_size=16, verbose=0)
    assert history.history["binary_accuracy"][-1] > 0.8
    model.save(tmp_path / "mlp.keras")
    loaded = keras.models.load_model(tmp_path / "mlp.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_weights_transfer_both_ways_in_whole_models():
    def build(lib):
        return keras.Sequential([keras.Input((5,)), lib.Dense(4, activation="tanh"), lib.Dense(2, activation="softmax")])

    ours, theirs = build(layers), build(keras.layers)
    x = np.random.RandomState(0).standard_normal((3, 5)).astype("float32")
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-6)
    ours.set_weights([w * 0.5 for w in ours.get_weights()])
    theirs.set_weights(ours.get_weights())
    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-6)


def test_configured_gives_the_cached_pair_with_options():
    assert activations.configured("softmax", axis=1) is activations.configured("softmax", axis=1)
    assert dict(activations.configured("relu", max_value=6.0).config)["max_value"] == 6.0
    assert activations.configured("elu", alpha=0.5).name == "elu"
    with pytest.raises(ValueError, match="takes no options"):
        activations.configured("tanh")
