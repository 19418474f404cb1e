"""convert(model) at depth: nested models, wrappers, users' own layers, shared layers, the manual share."""

import keras
import numpy as np
import tensorflow as tf

import keras_bp
from keras_bp import layers
from keras_bp.convert._report import count_manual_parameters


def _assert_same_outputs_and_gradients(model, converted, x):
    """Same outputs, and the same gradients of a fixed random projection of them, to 1e-5 relative."""
    np.testing.assert_allclose(converted(x), model(x), rtol=1e-5, atol=1e-6)
    projection = tf.random.stateless_normal(model.output.shape[1:], seed=(1, 2))
    grads = []
    for m in (model, converted):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(m(x, training=False) * projection)
        grads.append(tape.gradient(loss, m.trainable_variables))
    assert len(grads[0]) == len(grads[1])
    for a, b in zip(*grads):
        assert b is not None
        # Embeddings' gradients come as IndexedSlices, from Keras's layer and ours.
        np.testing.assert_allclose(tf.convert_to_tensor(b), tf.convert_to_tensor(a), rtol=1e-5, atol=1e-6)


def _snapshot(model):
    return [(type(layer), [w.numpy().copy() for w in layer.weights]) for layer in model._flatten_layers()]


def _assert_untouched(model, snapshot, converted):
    now = _snapshot(model)
    assert [t for t, _ in now] == [t for t, _ in snapshot]
    for (_, before), (_, after) in zip(snapshot, now):
        for a, b in zip(before, after):
            np.testing.assert_array_equal(a, b)
    ours = {id(w) for w in converted.weights}
    assert not any(id(w) in ours for w in model.weights), "the converted model shares a variable with the original"


def _save_and_load(converted, tmp_path, x, custom_objects=None):
    converted.save(tmp_path / "converted.keras")
    loaded = keras.models.load_model(tmp_path / "converted.keras", custom_objects=custom_objects)
    np.testing.assert_allclose(loaded(x), converted(x), rtol=1e-6, atol=1e-7)
    return loaded


def _bp(layer):
    return type(layer).__module__.startswith("keras_bp.")


# --- nested models -------------------------------------------------------------------------------


def test_nested_sequential_is_converted(tmp_path):
    block = keras.Sequential(
        [keras.layers.Dense(5, activation="relu", name="inner"), keras.layers.Dropout(0.1), keras.layers.Dense(4)],
        name="block",
    )
    inputs = keras.Input((6,))
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(block(inputs))
    model = keras.Model(inputs, outputs)
    before = _snapshot(model)
    converted, report = keras_bp.convert(model, return_report=True)
    nested = converted.get_layer("block")
    assert isinstance(nested, keras.Sequential) and nested is not block
    assert all(_bp(layer) for layer in nested.layers)
    assert ("block/inner", "Dense") in report.swapped and len(report.swapped) == 4
    assert report.kept == [] and [name for name, *_ in report.descended] == ["block"]
    assert report.manual_parameter_share == 1.0
    x = np.random.RandomState(0).standard_normal((4, 6)).astype("float32")
    _assert_same_outputs_and_gradients(model, converted, x)
    _assert_untouched(model, before, converted)
    loaded = _save_and_load(converted, tmp_path, x)
    assert isinstance(loaded.get_layer("block").get_layer("inner"), layers.Dense)


# --- wrappers ------------------------------------------------------------------------------------


def test_bidirectional_lstm_and_time_distributed_dense(tmp_path):
    inputs = keras.Input((5, 3))
    h = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True, name="lstm"), name="bi")(inputs)
    h = keras.layers.TimeDistributed(keras.layers.Dense(2, name="dense"), name="td")(h)
    outputs = keras.layers.Dense(3)(keras.layers.Flatten()(h))
    model = keras.Model(inputs, outputs)
    before = _snapshot(model)
    converted, report = keras_bp.convert(model, return_report=True)
    bi, td = converted.get_layer("bi"), converted.get_layer("td")
    assert isinstance(bi.forward_layer, layers.LSTM) and isinstance(bi.backward_layer, layers.LSTM)
    assert bi.backward_layer.go_backwards and isinstance(td.layer, layers.Dense)
    swapped = [name for name, _ in report.swapped]
    assert "bi/forward_lstm" in swapped and "bi/backward_lstm" in swapped and "td/dense" in swapped
    assert report.manual_parameter_share == 1.0
    x = np.random.RandomState(1).standard_normal((2, 5, 3)).astype("float32")
    _assert_same_outputs_and_gradients(model, converted, x)
    _assert_untouched(model, before, converted)
    loaded = _save_and_load(converted, tmp_path, x)
    assert isinstance(loaded.get_layer("bi").forward_layer, layers.LSTM)
    assert isinstance(loaded.get_layer("td").layer, layers.Dense)


# --- users' own layers (keras-io style) ----------------------------------------------------------


class TokenAndPositionEmbedding(keras.layers.Layer):
    """keras-io's, as written there: no get_config, no **kwargs, so from_config fails."""

    def __init__(self, maxlen, vocab_size, embed_dim):
        super().__init__()
        self.token_emb = keras.layers.Embedding(input_dim=vocab_size, output_dim=embed_dim)
        self.pos_emb = keras.layers.Embedding(input_dim=maxlen, output_dim=embed_dim)

    def call(self, x):
        positions = self.pos_emb(keras.ops.arange(keras.ops.shape(x)[-1]))
        return self.token_emb(x) + positions


class TransformerBlock(keras.layers.Layer):
    """keras-io's, small: attention, a feed-forward list, norms and dropouts; rebuilds from config."""

    def __init__(self, embed_dim, num_heads, ff_dim, rate=0.1, **kwargs):
        super().__init__(**kwargs)
        self.embed_dim, self.num_heads, self.ff_dim, self.rate = embed_dim, num_heads, ff_dim, rate
        self.att = keras.layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
        self.ffn = [keras.layers.Dense(ff_dim, activation="relu"), keras.layers.Dense(embed_dim)]
        self.layernorm1 = keras.layers.LayerNormalization(epsilon=1e-6)
        self.layernorm2 = keras.layers.LayerNormalization(epsilon=1e-6)
        self.dropout1 = keras.layers.Dropout(rate)
        self.dropout2 = keras.layers.Dropout(rate)

    def call(self, inputs, training=None):
        attn = self.dropout1(self.att(inputs, inputs), training=training)
        out1 = self.layernorm1(inputs + attn)
        ffn = out1
        for dense in self.ffn:
            ffn = dense(ffn)
        return self.layernorm2(out1 + self.dropout2(ffn, training=training))

    def get_config(self):
        return {**super().get_config(), "embed_dim": self.embed_dim, "num_heads": self.num_heads,
                "ff_dim": self.ff_dim, "rate": self.rate}


def _text_transformer(maxlen=6, vocab_size=20, embed_dim=8):
    inputs = keras.Input((maxlen,), dtype="int32")
    h = TokenAndPositionEmbedding(maxlen, vocab_size, embed_dim)(inputs)
    h = TransformerBlock(embed_dim, num_heads=2, ff_dim=8, name="block")(h)
    h = keras.layers.GlobalAveragePooling1D()(h)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Dropout(0.1)(h))
    return keras.Model(inputs, outputs)


def test_keras_io_text_transformer_is_converted_inside_its_own_layers():
    model = _text_transformer()
    before = _snapshot(model)
    converted, report = keras_bp.convert(model, return_report=True)  # raised TypeError before
    embedding = converted.layers[1]
    assert type(embedding) is TokenAndPositionEmbedding and embedding is not model.layers[1]
    assert isinstance(embedding.token_emb, layers.Embedding) and isinstance(embedding.pos_emb, layers.Embedding)
    block = converted.get_layer("block")
    assert type(block) is TransformerBlock and block is not model.get_layer("block")
    assert all(isinstance(d, layers.Dense) for d in block.ffn)
    assert isinstance(block.layernorm1, layers.LayerNormalization) and isinstance(block.dropout2, layers.Dropout)
    assert type(block.att) is layers.MultiHeadAttention
    how = dict((name, how) for name, _, how in report.descended)
    assert how["block"] == "rebuilt from its config"
    assert how[embedding.name].startswith("rebuilt from its constructor arguments") and "trainable" in how[embedding.name]
    assert (f"block/{block.att.name}", "MultiHeadAttention") in report.swapped
    # Every parameter, the attention's four projections included, is manual.
    assert report.trainable_parameters == sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert report.manual_parameters == report.trainable_parameters
    x = np.random.RandomState(2).randint(0, 20, (3, 6)).astype("int32")
    _assert_same_outputs_and_gradients(model, converted, x)
    _assert_untouched(model, before, converted)


def test_custom_layer_rebuilt_from_config_saves_and_loads(tmp_path):
    inputs = keras.Input((4, 8))
    outputs = TransformerBlock(8, num_heads=2, ff_dim=6, name="block")(inputs)
    converted = keras_bp.convert(keras.Model(inputs, outputs))
    x = np.random.RandomState(3).standard_normal((2, 4, 8)).astype("float32")
    loaded = _save_and_load(converted, tmp_path, x, custom_objects={"TransformerBlock": TransformerBlock})
    # On loading, the layer's own constructor makes Keras's layers again (same weights): convert again.
    assert type(loaded.get_layer("block").ffn[0]) is keras.layers.Dense
    again = keras_bp.convert(loaded)
    assert isinstance(again.get_layer("block").ffn[0], layers.Dense)
    np.testing.assert_allclose(again(x), converted(x), rtol=1e-6, atol=1e-7)


class Gated(keras.layers.Layer):
    """Takes a function: Keras records no constructor arguments, and there is no get_config."""

    def __init__(self, units, gate):
        super().__init__()
        self.gate = gate
        self.dense = keras.layers.Dense(units)

    def call(self, x):
        return self.gate(self.dense(x))


def test_custom_layer_that_cannot_be_rebuilt_is_kept_shared():
    inputs = keras.Input((5,))
    h = Gated(4, keras.ops.sigmoid)(inputs)
    outputs = keras.layers.Dense(2)(h)
    model = keras.Model(inputs, outputs)
    gated = model.layers[1]
    before = _snapshot(model)
    converted, report = keras_bp.convert(model, return_report=True)
    assert converted.layers[1] is gated and type(gated.dense) is keras.layers.Dense  # the user's layer untouched
    (name, cls, why), = report.kept
    assert (name, cls) == (gated.name, "Gated") and why.startswith("shared with the original model")
    assert "cannot be rebuilt" in why
    assert isinstance(converted.layers[2], layers.Dense)
    x = np.random.RandomState(4).standard_normal((3, 5)).astype("float32")
    _assert_same_outputs_and_gradients(model, converted, x)
    assert [t for t, _ in _snapshot(model)] == [t for t, _ in before]
    assert {id(w) for w in gated.weights} <= {id(w) for w in converted.weights}  # shared, as the report says


# --- shared layers and the manual share ----------------------------------------------------------


def test_shared_layers_stay_shared():
    shared = keras.layers.Dense(4, name="shared")
    tower = keras.Sequential([keras.layers.Dense(4, name="tower_dense")], name="tower")
    a, b = keras.Input((4,)), keras.Input((4,))
    h = keras.layers.Add()([tower(shared(a)), tower(shared(b))])
    model = keras.Model([a, b], h)
    converted, report = keras_bp.convert(model, return_report=True)
    assert [name for name, _ in report.swapped].count("shared") == 1
    new_shared, new_tower = converted.get_layer("shared"), converted.get_layer("tower")
    assert isinstance(new_shared, layers.Dense) and len(new_shared._inbound_nodes) == 2
    assert len(new_tower._inbound_nodes) == 2
    assert sum(layer is new_shared for layer in converted.layers) == 1
    assert len(converted.trainable_weights) == 4
    rng = np.random.RandomState(5)
    x = [rng.standard_normal((2, 4)).astype("float32") for _ in range(2)]
    _assert_same_outputs_and_gradients(model, converted, x)


class Scaled(keras.layers.Layer):
    """A layer with a weight of its own (not manual) and a Dense sublayer (manual once swapped)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(2)

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="scale")

    def call(self, x):
        return self.dense(x * self.scale)


@keras.saving.register_keras_serializable(package="tests")
def _cube(x):
    return x * x * x


def test_manual_parameter_share_by_hand(capsys):
    inputs = keras.Input((4,))
    h = keras.layers.Dense(3)(inputs)  # 4*3 + 3 = 15, manual
    h = keras.layers.BatchNormalization()(h)  # gamma, beta: 6 manual; the moving statistics are not trainable
    h = Scaled()(h)  # scale: 3, its own, not manual; its dense: 3*2 + 2 = 8, manual
    frozen = keras.layers.Dense(2)
    frozen.trainable = False  # 6, not trainable: not counted
    h = frozen(h)
    outputs = keras.layers.Dense(2, activation=_cube)(h)  # 6, kept as Keras's (a user's activation): not manual
    model = keras.Model(inputs, outputs)
    assert count_manual_parameters(model) == (0, 38)
    converted, report = keras_bp.convert(model, verbose=True, return_report=True)
    assert (report.manual_parameters, report.trainable_parameters) == (29, 38)
    assert report.manual_parameter_share == 29 / 38
    assert "manual backward passes: 29 of 38 trainable parameters (76.3%)" in capsys.readouterr().out
    x = np.random.RandomState(6).standard_normal((3, 4)).astype("float32")
    _assert_same_outputs_and_gradients(model, converted, x)


# --- a keras.applications model ------------------------------------------------------------------


def test_mobilenet_v2_is_converted():
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=5)
    converted, report = keras_bp.convert(model, return_report=True)
    # Every layer has a counterpart now (DepthwiseConv2D, Add, ZeroPadding2D included).
    assert report.kept == [] and report.manual_parameters == report.trainable_parameters
    x = np.random.RandomState(7).standard_normal((2, 32, 32, 3)).astype("float32")
    _assert_same_outputs_and_gradients(model, converted, x)


def test_ops_in_a_functional_graph_are_cloned_without_weights():
    inputs = keras.Input((3,))
    h = keras.layers.Dense(3)(inputs)
    outputs = keras.ops.add(h, inputs)  # an Operation, not a Layer (ConvNeXt's graph has these)
    model = keras.Model(inputs, outputs)
    converted, report = keras_bp.convert(model, return_report=True)
    assert [cls for _, cls, _ in report.kept] == ["Add"]
    x = np.random.RandomState(8).standard_normal((2, 3)).astype("float32")
    _assert_same_outputs_and_gradients(model, converted, x)
