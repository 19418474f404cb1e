"""Losses: parity with keras.losses (values and gradients), autodiff, float64 finite differences, fit, save/load."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_bp
from keras_bp import losses

RNG = np.random.RandomState(0)
LOGITS = RNG.standard_normal((6, 4)).astype("float32")
PROBS = tf.nn.softmax(LOGITS).numpy()
SIGMOID = tf.sigmoid(LOGITS).numpy()
ONE_HOT = np.eye(4, dtype="float32")[RNG.randint(0, 4, 6)]
BINARY = (RNG.uniform(size=(6, 4)) > 0.5).astype("float32")
CLASSES = np.array([0, 3, 2, 2, 1, 0])
WEIGHTS = RNG.uniform(0.2, 1.0, 6).astype("float32")

# (id, loss name, kwargs, y_true, y_pred)
CASES = [
    ("mse", "MeanSquaredError", {}, ONE_HOT, LOGITS),
    ("bce", "BinaryCrossentropy", {}, BINARY, SIGMOID),
    ("bce-smoothing", "BinaryCrossentropy", {"label_smoothing": 0.2}, BINARY, SIGMOID),
    ("bce-logits", "BinaryCrossentropy", {"from_logits": True}, BINARY, LOGITS),
    ("bce-clipped", "BinaryCrossentropy", {}, BINARY, np.clip(SIGMOID * 1.5 - 0.2, 0, 1).astype("float32")),
    ("cce", "CategoricalCrossentropy", {}, ONE_HOT, PROBS),
    ("cce-unnormalised", "CategoricalCrossentropy", {}, ONE_HOT, (PROBS * 1.7).astype("float32")),
    ("cce-smoothing-logits", "CategoricalCrossentropy", {"from_logits": True, "label_smoothing": 0.1}, ONE_HOT, LOGITS),
    ("cce-axis0-logits", "CategoricalCrossentropy", {"from_logits": True, "axis": 0}, ONE_HOT.T.copy(), LOGITS.T.copy()),
    ("scce", "SparseCategoricalCrossentropy", {}, CLASSES, PROBS),
    ("scce-column-labels", "SparseCategoricalCrossentropy", {}, CLASSES[:, None], PROBS),
    ("scce-logits", "SparseCategoricalCrossentropy", {"from_logits": True}, CLASSES, LOGITS),
    ("scce-ignore", "SparseCategoricalCrossentropy", {"from_logits": True, "ignore_class": 2}, CLASSES, LOGITS),
]
REDUCTIONS = ["sum_over_batch_size", "sum", "none", "mean_with_sample_weight"]


def _value_and_grad(loss, y_true, y_pred, sample_weight=None):
    y_pred = tf.constant(y_pred)
    with tf.GradientTape() as tape:
        tape.watch(y_pred)
        value = loss(y_true, y_pred, sample_weight=sample_weight)
    return value.numpy(), tape.gradient(value, y_pred).numpy()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_parity_with_keras(case, reduction):
    _, name, kwargs, y_true, y_pred = case
    for sample_weight in (None, WEIGHTS):
        ours = getattr(losses, name)(reduction=reduction, **kwargs)
        theirs = getattr(keras.losses, name)(reduction=reduction, **kwargs)
        value, grad = _value_and_grad(ours, y_true, y_pred, sample_weight)
        ref_value, ref_grad = _value_and_grad(theirs, y_true, y_pred, sample_weight)
        np.testing.assert_allclose(value, ref_value, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_manual_matches_autodiff(case):
    _, name, kwargs, y_true, y_pred = case
    loss = getattr(losses, name)(**kwargs)
    manual = _value_and_grad(loss, y_true, y_pred, WEIGHTS)[1]
    with keras_bp.autodiff():
        reference = _value_and_grad(loss, y_true, y_pred, WEIGHTS)[1]
    np.testing.assert_allclose(manual, reference, rtol=1e-5, atol=1e-7)


# Finite differences are undefined at the clipping kink, where bce-clipped puts
# its exact 0s and 1s: that case is checked against Keras and autodiff only.
SMOOTH_CASES = [c for c in CASES if c[0] != "bce-clipped"]


@pytest.mark.parametrize("case", SMOOTH_CASES, ids=[c[0] for c in SMOOTH_CASES])
def test_float64_check_gradients(case):
    _, name, kwargs, y_true, y_pred = case
    loss = getattr(losses, name)(reduction="none", dtype="float64", **kwargs)
    y_true = y_true.astype("float64") if y_true.dtype.kind == "f" else y_true
    result = keras_bp.check_gradients(lambda t, p: loss(t, p), y_true, y_pred.astype("float64"))
    assert result.passed, str(result)


def test_half_squared_error_is_the_textbook_error():
    y, o = np.array([[1.0, 0.0]], "float32"), np.array([[0.25, 0.5]], "float32")
    value, grad = _value_and_grad(losses.HalfSquaredError(reduction="sum"), y, o)
    np.testing.assert_allclose(value, 0.5 * (0.75**2 + 0.5**2))
    np.testing.assert_allclose(grad, o - y)
    result = keras_bp.check_gradients(lambda t, p: losses.HalfSquaredError(dtype="float64")(t, p), y.astype("float64"), o.astype("float64"))
    assert result.passed, str(result)


def test_softmax_with_cross_entropy_reduces_to_p_minus_y():
    z = tf.constant(LOGITS)
    with tf.GradientTape() as tape:
        tape.watch(z)
        p = keras_bp.activations.softmax(z)
        value = losses.CategoricalCrossentropy(reduction="sum")(ONE_HOT, p)
    np.testing.assert_allclose(tape.gradient(value, z), PROBS - ONE_HOT, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize(
    "loss, activation, y",
    [
        (losses.CategoricalCrossentropy(), "softmax", ONE_HOT),
        (losses.SparseCategoricalCrossentropy(from_logits=True), None, CLASSES),
        (losses.BinaryCrossentropy(), "sigmoid", BINARY),
        (losses.HalfSquaredError(), None, ONE_HOT),
    ],
    ids=["cce", "scce-logits", "bce", "half-squared"],
)
def test_fit_and_save(loss, activation, y, jit_compile, tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras_bp.layers.Dense(4, activation=activation)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss, jit_compile=jit_compile)
    history = model.fit(LOGITS, y, sample_weight=WEIGHTS, epochs=5, batch_size=6, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded.loss) is type(loss) and loaded.loss.get_config() == loss.get_config()
    np.testing.assert_allclose(loaded.evaluate(LOGITS, y, verbose=0), model.evaluate(LOGITS, y, verbose=0))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: losses.BinaryCrossentropy(label_smoothing=1.5), "label_smoothing=1.5"),
        (lambda: losses.CategoricalCrossentropy(axis="x"), "axis='x'"),
        (lambda: losses.SparseCategoricalCrossentropy(axis=0)(np.zeros(2), np.ones((2, 3))), "axis=0"),
        (lambda: losses.SparseCategoricalCrossentropy(ignore_class=1.5), "ignore_class=1.5"),
        (lambda: losses.MeanSquaredError(reduction="average"), "average"),
    ],
)
def test_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# --- probabilities that carry their logits ------------------------------------


def _saturated_case(loss_name, activation):
    rng = np.random.RandomState(0)
    x = tf.constant(30.0 * rng.standard_normal((4, 5)).astype("float32"))  # saturating logits
    units = 1 if activation == "sigmoid" else 3
    if loss_name == "SparseCategoricalCrossentropy":
        y = tf.constant([0, 1, 2, 0])
    elif loss_name == "CategoricalCrossentropy":
        y = tf.one_hot([0, 1, 2, 0], 3)
    else:
        y = tf.constant([[0.0], [1.0], [1.0], [0.0]])
    return x, y, units


@pytest.mark.parametrize("layer_name", ["Dense", "Conv1D"])
@pytest.mark.parametrize(
    "loss_name, activation",
    [("SparseCategoricalCrossentropy", "softmax"), ("CategoricalCrossentropy", "softmax"),
     ("BinaryCrossentropy", "sigmoid")],
)
def test_cross_entropy_after_softmax_or_sigmoid_uses_the_logits(loss_name, activation, layer_name):
    # As Keras: a Dense or Conv (softmax/sigmoid) output carries its logits,
    # and both libraries' cross-entropies compute from them. With saturated
    # probabilities the values prove it: from clipped probabilities each
    # sample's loss could not exceed -log(1e-7) = 16.1.
    x, y, units = _saturated_case(loss_name, activation)
    if layer_name == "Conv1D":  # sequences of one step, kernel size 1
        x, y = tf.expand_dims(x, 1), tf.expand_dims(y, 1)
    results = {}
    for library in (keras, keras_bp):
        for loss_library in (keras, keras_bp):
            keras.utils.set_random_seed(1)
            if layer_name == "Conv1D":
                dense = library.layers.Conv1D(units, 1, activation=activation)
            else:
                dense = library.layers.Dense(units, activation=activation)
            dense.build(x.shape)
            loss = getattr(loss_library.losses, loss_name)(reduction="none")
            with tf.GradientTape() as tape:
                outputs = dense(x)
                assert outputs._keras_logits is not None
                value = loss(y, outputs)
                total = tf.reduce_sum(value)
            grads = tape.gradient(total, dense.trainable_weights)
            results[library.__name__, loss_library.__name__] = (value.numpy(), [g.numpy() for g in grads])
    reference_value, reference_grads = results["keras", "keras"]
    assert np.max(reference_value) > 17.0
    for key, (value, grads) in results.items():
        np.testing.assert_allclose(value, reference_value, rtol=1e-5, err_msg=str(key))
        for g, r in zip(grads, reference_grads):
            np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6, err_msg=str(key))


def test_logits_are_not_used_when_from_logits_or_absent():
    x = tf.constant([[2.0, -1.0, 0.5]])
    probabilities = keras_bp.activations.softmax(x)
    assert probabilities._keras_logits is x
    loss = keras_bp.losses.CategoricalCrossentropy()
    y = tf.constant([[0.0, 1.0, 0.0]])
    plain = tf.constant(probabilities.numpy())  # no _keras_logits
    np.testing.assert_allclose(loss(y, probabilities), loss(y, plain), rtol=1e-6)
    # from_logits=True takes y_pred as logits whatever it carries.
    logits_loss = keras_bp.losses.CategoricalCrossentropy(from_logits=True)
    np.testing.assert_allclose(logits_loss(y, probabilities), logits_loss(y, plain), rtol=1e-6)
    assert not hasattr(keras_bp.activations.relu(x), "_keras_logits")
