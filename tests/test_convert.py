"""convert(model): swaps layers that have counterparts, keeps the rest, same numbers."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_bp
from keras_bp import layers


def _functional_mlp():
    inputs = keras.Input((8,))
    h = keras.layers.Dense(6, activation="relu", name="hidden")(inputs)
    h = keras.layers.Dropout(0.2, name="dropout")(h)
    skip = keras.layers.Dense(6, activation=keras.activations.tanh)(inputs)
    h = keras.layers.Add(name="add")([h, skip])
    h = keras.layers.Identity(name="identity")(h)  # no counterpart: kept
    outputs = keras.layers.Dense(3, activation="softmax")(h)
    return keras.Model(inputs, outputs)


def _assert_same_predictions_and_gradients(model, converted, x, y):
    np.testing.assert_allclose(converted(x), model(x), rtol=1e-6, atol=1e-7)
    grads = []
    for m in (model, converted):
        with tf.GradientTape() as tape:
            loss = keras.losses.categorical_crossentropy(y, m(x, training=False))
        grads.append(tape.gradient(loss, m.trainable_variables))
    for a, b in zip(*grads):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_functional_model_is_converted_with_weights():
    model = _functional_mlp()
    converted, report = keras_bp.convert(model, return_report=True)
    swapped = {name for name, _ in report.swapped}
    assert {"hidden", "dropout", "add"} <= swapped and len(report.swapped) == 5
    assert [name for name, *_ in report.kept] == ["identity"]
    assert isinstance(converted.get_layer("hidden"), layers.Dense)
    assert isinstance(converted.get_layer("add"), layers.Add)
    assert type(converted.get_layer("identity")) is keras.layers.Identity
    x = np.random.RandomState(0).standard_normal((5, 8)).astype("float32")
    y = np.eye(3, dtype="float32")[[0, 1, 2, 0, 1]]
    _assert_same_predictions_and_gradients(model, converted, x, y)
    assert type(converted.get_layer("hidden")).__module__.startswith("keras_bp.")


@keras.saving.register_keras_serializable(package="tests")
def _cube(x):
    return x * x * x


def test_sequential_model_and_report_text(capsys):
    model = keras.Sequential([
        keras.Input((4, 4, 1)),
        keras.layers.Flatten(),
        keras.layers.Dense(5, activation=_cube),  # a user's activation: kept, with the reason
        keras.layers.Dense(3, activation="softmax"),
    ])
    converted = keras_bp.convert(model, verbose=True)
    out = capsys.readouterr().out
    assert "swapped 2 layer(s), kept 1" in out and "Unknown activation" in out and "_cube" in out
    assert type(converted.layers[1]) is keras.layers.Dense and type(converted.layers[2]) is layers.Dense
    x = np.random.RandomState(1).standard_normal((2, 4, 4, 1)).astype("float32")
    np.testing.assert_allclose(converted(x), model(x), rtol=1e-6)


def test_converted_model_trains_and_saves(tmp_path):
    converted = keras_bp.convert(_functional_mlp())
    converted.compile(optimizer="sgd", loss="categorical_crossentropy")
    x = np.random.RandomState(2).standard_normal((16, 8)).astype("float32")
    y = np.eye(3, dtype="float32")[np.arange(16) % 3]
    converted.fit(x, y, epochs=1, verbose=0)
    converted.save(tmp_path / "converted.keras")
    loaded = keras.models.load_model(tmp_path / "converted.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), converted.predict(x, verbose=0))


def test_bad_input():
    with pytest.raises(TypeError, match="keras.Model"):
        keras_bp.convert(keras.layers.Dense(3))


def test_cnn_and_lstm_models_are_converted():
    image = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, activation="relu")(image)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Flatten()(h)
    sequence = keras.Input((5, 3))
    s = keras.layers.LSTM(4)(sequence)
    h = keras.layers.Concatenate()([h, s])
    h = keras.layers.Dropout(0.3)(h)
    outputs = keras.layers.Dense(3, activation="softmax")(h)
    model = keras.Model([image, sequence], outputs)
    converted, report = keras_bp.convert(model, return_report=True)
    swapped = {cls for _, cls in report.swapped}
    assert swapped == {"Conv2D", "MaxPooling2D", "Flatten", "LSTM", "Dropout", "Dense", "Concatenate"}
    assert report.kept == []
    for layer in converted.layers:
        if type(layer).__name__ in swapped:
            assert type(layer).__module__.startswith("keras_bp."), layer.name
    rng = np.random.RandomState(3)
    x = [rng.standard_normal((2, 8, 8, 1)).astype("float32"), rng.standard_normal((2, 5, 3)).astype("float32")]
    y = np.eye(3, dtype="float32")[[0, 2]]
    _assert_same_predictions_and_gradients(model, converted, x, y)
