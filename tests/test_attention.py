"""Attention and AdditiveAttention beyond the harness: Keras's errors, configs, scores, masks, dropout, convert."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_bp
from keras_bp import layers
from keras_bp.layers import attention as attention_module

CLASSES = ["Attention", "AdditiveAttention"]


def _inputs(seed=0, tq=3, tv=4, dim=4, batch=2):
    rng = np.random.RandomState(seed)
    return [tf.constant(rng.standard_normal(s).astype("float32")) for s in ((batch, tq, dim), (batch, tv, dim))]


def _loss_and_grads(layer, inputs, **call_kwargs):
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = tf.nest.flatten(layer(inputs, **call_kwargs))
        rng = np.random.RandomState(1)
        loss = tf.add_n([tf.reduce_sum(y * rng.standard_normal(y.shape).astype("float32")) for y in outputs])
    return outputs, tape.gradient(loss, list(inputs) + layer.trainable_weights)


def _keras_error(make, *args, **kwargs):
    with pytest.raises(Exception) as caught:
        make()(*args, **kwargs) if args or kwargs else make()
    return caught.value


@pytest.mark.parametrize("name", CLASSES)
@pytest.mark.parametrize(
    "args, kwargs",
    [
        ((np.ones((1, 2, 2)),), {}),  # not a list
        (([np.ones((1, 2, 2))] * 4,), {}),  # four inputs
        (([np.ones((1, 2, 2))],), {}),  # one input
        (([np.ones((1, 2, 2))] * 2,), {"mask": np.ones((1, 2), bool)}),  # mask not a list
        (([np.ones((1, 2, 2))] * 2,), {"mask": [np.ones((1, 2), bool)]}),  # one mask
    ],
    ids=["not-a-list", "four-inputs", "one-input", "mask-not-a-list", "one-mask"],
)
def test_call_errors_are_keras_errors(name, args, kwargs):
    theirs = _keras_error(lambda: getattr(keras.layers, name)(), *args, **kwargs)
    ours = _keras_error(lambda: getattr(layers, name)(), *args, **kwargs)
    assert type(ours) is type(theirs) is ValueError
    assert str(ours) == str(theirs)


def test_invalid_score_mode_and_dropout():
    with pytest.raises(ValueError) as theirs:
        keras.layers.Attention(score_mode="general")
    with pytest.raises(ValueError) as ours:
        layers.Attention(score_mode="general")
    assert str(ours.value).startswith(str(theirs.value))
    assert "score_mode=" in str(ours.value)
    for rate in (-0.1, 1.5, "0.5"):
        with pytest.raises(ValueError, match="dropout"):
            layers.Attention(dropout=rate)
        with pytest.raises(ValueError, match="dropout"):
            layers.AdditiveAttention(dropout=rate)


@pytest.mark.parametrize(
    "name, kwargs, expected",
    [
        ("Attention", {}, []),
        ("Attention", {"use_scale": True}, [("scale", ())]),
        ("Attention", {"score_mode": "concat"}, [("concat_score_weight", ())]),
        ("Attention", {"score_mode": "concat", "use_scale": True}, [("scale", ()), ("concat_score_weight", ())]),
        ("AdditiveAttention", {}, [("scale", (4,))]),
        ("AdditiveAttention", {"use_scale": False}, []),
    ],
)
def test_weights_as_keras_names_shapes_initial_values(name, kwargs, expected):
    ours, theirs = getattr(layers, name)(**kwargs), getattr(keras.layers, name)(**kwargs)
    for layer in (ours, theirs):
        layer.build([(2, 3, 4), (2, 5, 4)])
    assert [(w.name, tuple(w.shape)) for w in ours.weights] == expected
    assert [(w.name, tuple(w.shape)) for w in theirs.weights] == expected
    for w in ours.weights:
        if name == "Attention":
            np.testing.assert_array_equal(w.numpy(), np.ones(w.shape))  # "ones", as Keras's
        else:
            limit = np.sqrt(6 / 8)  # glorot_uniform of a (4,) weight: fan_in = fan_out = 4
            assert np.all(np.abs(w.numpy()) <= limit) and np.any(w.numpy() != 0)


@pytest.mark.parametrize("name", CLASSES)
def test_config_round_trip_matches_keras(name):
    kwargs = {"use_scale": True, "dropout": 0.25, "seed": 11}
    if name == "Attention":
        kwargs["score_mode"] = "concat"
    ours, theirs = getattr(layers, name)(**kwargs), getattr(keras.layers, name)(**kwargs)
    config, their_config = ours.get_config(), theirs.get_config()
    assert config.keys() == their_config.keys()
    assert ("score_mode" in config) == (name == "Attention")
    assert {k: config[k] for k in kwargs} == kwargs
    restored = type(ours).from_config(config)
    assert restored.get_config() == config and restored.seed == 11
    # Keras's config builds ours (what convert does).
    their_config["name"] = config["name"]
    assert type(ours).from_config(their_config).get_config() == config


def test_save_and_load_a_model_with_masks_dropout_and_scores(tmp_path):
    query, value = keras.Input((3, 4)), keras.Input((5, 4))
    output, scores = layers.Attention(use_scale=True, dropout=0.3, seed=2)([query, value], return_attention_scores=True)
    additive = layers.AdditiveAttention()([query, value], use_causal_mask=False)
    model = keras.Model([query, value], [output, scores, additive])
    x = [t.numpy() for t in _inputs(tv=5)]
    model.save(tmp_path / "attention.keras")
    loaded = keras.models.load_model(tmp_path / "attention.keras")
    for a, b in zip(loaded.predict(x, verbose=0), model.predict(x, verbose=0)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", CLASSES)
def test_return_attention_scores_are_keras_weights_after_dropout(name):
    inputs = _inputs()
    ours, theirs = getattr(layers, name)(dropout=0.5, seed=4), getattr(keras.layers, name)(dropout=0.5, seed=4)
    for layer in (ours, theirs):
        layer(inputs)
    ours.set_weights(theirs.get_weights())
    call = {"training": True, "return_attention_scores": True, "mask": [None, np.array([[1, 1, 0, 1]] * 2, bool)]}
    our_out, our_grads = _loss_and_grads(ours, inputs, **call)
    their_out, their_grads = _loss_and_grads(theirs, inputs, **call)
    weights = our_out[1].numpy()
    assert np.any(weights == 0) and np.any(weights > 1 / 4)  # some dropped, some scaled by 1 / (1 - 0.5)
    np.testing.assert_array_equal(weights[..., 2], 0)  # the masked key
    for a, b in zip(our_out + our_grads, their_out + their_grads):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Without training: no dropout, each row of the weights sums to 1.
    outputs = ours(inputs, return_attention_scores=True)
    assert isinstance(outputs, tuple)
    np.testing.assert_allclose(np.sum(outputs[1], axis=-1), 1, rtol=1e-6)


def test_masked_keys_and_queries_get_zero_gradient():
    query, value, key = _inputs(tv=4)[0], _inputs(seed=1)[1], _inputs(seed=2)[1]
    query_mask = np.array([[True, False, True], [True, True, True]])
    value_mask = np.array([[True, True, False, True], [False, True, True, True]])
    layer = layers.Attention(use_scale=True)
    _, (dq, dv, dk, _) = _loss_and_grads(layer, [query, value, key], mask=[query_mask, value_mask])
    for g in (dv, dk):
        np.testing.assert_array_equal(g.numpy()[~value_mask], 0)
        assert np.all(g.numpy()[value_mask] != 0)
    # A masked-out query's output is 0: nothing flows back to it.
    np.testing.assert_array_equal(dq.numpy()[~query_mask], 0)


def test_causal_mask_stops_gradient_from_the_future():
    x = _inputs(tq=4, tv=4)[0]
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layers.Attention()([x, x], use_causal_mask=True)[:, 1]  # position 1 reads positions 0 and 1
        loss = tf.reduce_sum(y * np.arange(1, 5, dtype="float32"))
    g = tape.gradient(loss, x).numpy()
    np.testing.assert_array_equal(g[:, 2:], 0)
    assert np.all(g[:, :2] != 0)


def test_keras_masks_carried_by_the_inputs():
    # Embedding(mask_zero=True) gives query and value Keras masks; Attention reads them, as Keras's does.
    tokens = np.array([[3, 1, 0, 0], [2, 5, 4, 0]])
    models = []
    for module in (keras.layers, layers):
        ids = keras.Input((4,), dtype="int32")
        h = keras.layers.Embedding(6, 4, mask_zero=True, name="embedding")(ids)
        h = module.Attention(use_scale=True, name="attention")([h, h])
        models.append(keras.Model(ids, keras.layers.GlobalAveragePooling1D()(h)))
    models[1].set_weights(models[0].get_weights())
    results = []
    for model in models:
        with tf.GradientTape() as tape:
            y = model(tokens)
            loss = tf.reduce_sum(y * np.arange(1, 5, dtype="float32"))
        results.append([y] + tape.gradient(loss, model.trainable_weights))
    for a, b in zip(*results):
        np.testing.assert_allclose(tf.convert_to_tensor(a), tf.convert_to_tensor(b), rtol=1e-5, atol=1e-7)
    # The output mask is the query's.
    h = models[1].get_layer("embedding")(tokens)
    mask = models[1].get_layer("attention").compute_mask([h, h], [h._keras_mask, h._keras_mask])
    np.testing.assert_array_equal(mask, tokens != 0)


def test_the_hand_written_backward_runs(monkeypatch):
    # The softmax's backward is read when the attention op's backward runs: count those runs.
    calls = []
    softmax = attention_module._SOFTMAX

    def counted(y, dy):
        calls.append(1)
        return softmax.backward(y, dy)

    monkeypatch.setattr(attention_module, "_SOFTMAX", softmax._replace(backward=counted))
    for layer in (layers.Attention(score_mode="concat"), layers.AdditiveAttention()):
        _loss_and_grads(layer, _inputs())
    assert len(calls) == 2
    with keras_bp.autodiff():
        _loss_and_grads(layers.Attention(), _inputs())
    assert len(calls) == 2


def test_calculate_scores_and_score_mask_as_keras():
    query, key = _inputs()
    for kwargs in ({"use_scale": True}, {"score_mode": "concat", "use_scale": True}):
        ours, theirs = layers.Attention(**kwargs), keras.layers.Attention(**kwargs)
        for layer in (ours, theirs):
            layer.build([(2, 3, 4), (2, 4, 4)])
        theirs.set_weights([np.full(w.shape, 0.7, "float32") for w in theirs.weights])
        ours.set_weights(theirs.get_weights())
        np.testing.assert_allclose(ours._calculate_scores(query, key), theirs._calculate_scores(query, key), rtol=1e-6)
    value_mask = np.array([[True, False, True, True]] * 2)
    scores = np.zeros((2, 3, 4))
    for causal in (False, True):
        ours = layers.Attention()._calculate_score_mask(scores, value_mask, causal)
        theirs = keras.layers.Attention()._calculate_score_mask(scores, value_mask, causal)
        np.testing.assert_array_equal(ours, theirs)


def test_symbolic_outputs_and_output_shape():
    query, value, key = keras.Input((3, 5)), keras.Input((4, 6)), keras.Input((4, 5))
    layer = layers.Attention()
    output, scores = layer([query, value, key], return_attention_scores=True)
    assert output.shape == (None, 3, 6) and scores.shape == (None, 3, 4)
    assert layer([query, value, key]).shape == (None, 3, 6)
    assert layer.compute_output_shape([(None, 3, 5), (None, 4, 6), (None, 4, 5)]) == (None, 3, 6)


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_fit_with_dropout_follows_keras_step_for_step(jit_compile):
    """Same seed, same masks each step: our model's losses and weights are Keras's."""
    rng = np.random.RandomState(0)
    x = [rng.standard_normal((8, 3, 4)).astype("float32"), rng.standard_normal((8, 5, 4)).astype("float32")]
    y = rng.standard_normal((8, 2)).astype("float32")
    histories, models = [], []
    for module in (keras.layers, layers):
        query, value = keras.Input((3, 4)), keras.Input((5, 4))
        h = module.Attention(use_scale=True, score_mode="concat", dropout=0.3, seed=1)([query, value])
        h = module.AdditiveAttention(dropout=0.4, seed=2)([h, value])
        model = keras.Model([query, value], keras.layers.Dense(2)(keras.layers.Flatten()(h)))
        if models:
            model.set_weights(models[0].get_weights())
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", jit_compile=jit_compile)
        models.append(model)
    initial = models[0].get_weights()
    for model in models:
        model.set_weights(initial)
        histories.append(model.fit(x, y, batch_size=4, epochs=3, verbose=0, shuffle=False).history["loss"])
    np.testing.assert_allclose(histories[1], histories[0], rtol=1e-5)
    for a, b in zip(models[1].get_weights(), models[0].get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(models[1].get_weights()[0], initial[0])


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_with_dropout_and_masks(policy, mixed_precision):
    mixed_precision(policy)
    inputs = _inputs()
    call = {"training": True, "return_attention_scores": True, "mask": [None, np.array([[1, 0, 1, 1]] * 2, bool)]}
    for name in CLASSES:
        ours, theirs = getattr(layers, name)(dropout=0.3, seed=9), getattr(keras.layers, name)(dropout=0.3, seed=9)
        for layer in (ours, theirs):
            layer(inputs)
        ours.set_weights(theirs.get_weights())
        our_out, our_grads = _loss_and_grads(ours, inputs, **call)
        their_out, _ = _loss_and_grads(theirs, inputs, **call)
        for a, b in zip(our_out, their_out):
            assert a.dtype == b.dtype == policy.split("_")[1]
            np.testing.assert_allclose(tf.cast(a, "float32"), tf.cast(b, "float32"), rtol=2e-2, atol=2e-2)
        for g in our_grads:
            assert np.all(np.isfinite(tf.cast(g, "float32")))


def test_convert_puts_attention_behind_manual_backward_passes():
    tokens = keras.Input((6,), dtype="int32")
    h = keras.layers.Embedding(10, 8)(tokens)
    a = keras.layers.Attention(use_scale=True, score_mode="concat", dropout=0.1)([h, h], use_causal_mask=True)
    b = keras.layers.AdditiveAttention()([h, a])
    h = keras.layers.Add()([a, b])
    h = keras.layers.GlobalAveragePooling1D()(h)
    model = keras.Model(tokens, keras.layers.Dense(3, activation="softmax")(h))
    converted, report = keras_bp.convert(model, return_report=True)
    assert {"Attention", "AdditiveAttention"} <= {cls for _, cls in report.swapped}
    assert report.kept == [] and report.manual_parameter_share == 1.0
    x = np.random.RandomState(3).randint(0, 10, (4, 6))
    y = np.eye(3, dtype="float32")[[0, 1, 2, 0]]
    np.testing.assert_allclose(converted(x), model(x), rtol=1e-6, atol=1e-7)
    grads = []
    for m in (model, converted):
        with tf.GradientTape() as tape:
            loss = keras.losses.categorical_crossentropy(y, m(x))
        grads.append(tape.gradient(loss, m.trainable_variables))
    for a, b in zip(*grads):
        np.testing.assert_allclose(tf.convert_to_tensor(b), tf.convert_to_tensor(a), rtol=1e-5, atol=1e-7)
