"""Edge cases of EinsumDense and MultiHeadAttention.

The shared harness (tests/cases_attention_mha.py) covers parity, autodiff,
finite differences, fit, save/load and mixed precision; this module covers
what a registry entry cannot say: bad arguments (Keras's exception and
words), configs both ways, Keras masks from an Embedding, masked positions'
zero gradients, what the attention op saves, flash attention as Keras
refuses it, quantization, and symbolic shapes.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_bp import layers
from keras_bp.layers._attention_math import attention_op
from tests.harness import assert_close


def _raised(make):
    with pytest.raises(Exception) as info:
        make()
    return info.type, str(info.value)


# --- bad arguments, as Keras says them ------------------------------------------

BAD = [
    ("MultiHeadAttention", dict(num_heads=0, key_dim=2)),
    ("MultiHeadAttention", dict(num_heads=2, key_dim=2.5)),
    ("MultiHeadAttention", dict(num_heads=2, key_dim=2, value_dim=-1)),
    ("MultiHeadAttention", dict(num_heads=2, key_dim=2, attention_axes="1")),
    ("MultiHeadAttention", dict(num_heads=2, key_dim=2, sliding_window=0)),
    ("MultiHeadAttention", dict(num_heads=2, key_dim=2, dropout=0.1, flash_attention=True)),
]


@pytest.mark.parametrize("name, kwargs", BAD, ids=[str(k) for _, k in BAD])
def test_bad_arguments_raise_as_keras(name, kwargs):
    ours = _raised(lambda: getattr(layers, name)(**kwargs))
    theirs = _raised(lambda: getattr(keras.layers, name)(**kwargs))
    assert ours == theirs


@pytest.mark.parametrize("equation", ["ab,bc", "...ab,bc->ac", "a...b,bc->a...c"])
def test_einsum_bad_equation_raises_as_keras(equation):
    def built(module):
        return lambda: module.EinsumDense(equation, output_shape=3)(tf.zeros((2, 4)))

    assert _raised(built(layers)) == _raised(built(keras.layers))


def test_einsum_bias_axis_not_in_output_raises_as_keras():
    def built(module):
        return lambda: module.EinsumDense("ab,bc->ac", output_shape=3, bias_axes="x")(tf.zeros((2, 4)))

    assert _raised(built(layers)) == _raised(built(keras.layers))


def test_einsum_diagonal_is_refused_by_name():
    with pytest.raises(NotImplementedError, match="received: equation='abb,bc->ac'"):
        layers.EinsumDense("abb,bc->ac", output_shape=3)


def test_value_and_key_shapes_must_agree_as_keras():
    shapes = ((2, 4, 3), (2, 5, 3), (2, 6, 3))
    for module in (layers, keras.layers):
        with pytest.raises(ValueError, match="All dimensions of `value` and `key`, except the last one"):
            module.MultiHeadAttention(2, 2).build(*shapes)


def test_quantization_refused_by_name():
    layer = layers.EinsumDense("ab,bc->ac", output_shape=3)
    layer.build((2, 4))
    with pytest.raises(NotImplementedError, match="keras_bp.layers.EinsumDense does not support quantization"):
        layer.quantize("int8")
    with pytest.raises(ValueError, match="does not support quantization_config"):
        layers.EinsumDense("ab,bc->ac", output_shape=3, quantization_config={"mode": "int8"})


# --- configs and weights both ways ----------------------------------------------


@pytest.mark.parametrize("cls, kwargs", [
    ("EinsumDense", dict(equation="abc,cde->abde", output_shape=(None, 2, 3), bias_axes="de",
                         activation="gelu", kernel_regularizer="l2", lora_rank=2)),
    ("MultiHeadAttention", dict(num_heads=3, key_dim=2, value_dim=4, dropout=0.2, output_shape=5,
                                attention_axes=-2, kernel_initializer="he_normal", bias_constraint="non_neg",
                                activity_regularizer="l1", use_gate=True, sliding_window=3, seed=7)),
])
def test_config_matches_keras_and_loads_both_ways(cls, kwargs):
    ours, theirs = getattr(layers, cls)(**kwargs), getattr(keras.layers, cls)(**kwargs)
    ours_config, theirs_config = ours.get_config(), theirs.get_config()
    theirs_config.pop("quantization_config", None)  # Keras-only (refused by keras_bp)
    assert ours_config == {**theirs_config, "name": ours_config["name"]}
    loaded = getattr(layers, cls).from_config(theirs.get_config()).get_config()
    assert loaded == {**ours_config, "name": theirs_config["name"]}
    assert getattr(keras.layers, cls).from_config(ours_config).get_config()["name"] == ours_config["name"]


def test_transformer_block_weights_transfer_both_ways():
    def block(module):
        x = keras.Input((5, 8))
        y = module.MultiHeadAttention(2, 4)(x, x)
        y = module.LayerNormalization()(module.Add()([x, y]))
        return keras.Model(x, module.Dense(3)(y))

    ours, theirs = block(layers), block(keras.layers)
    x = np.random.RandomState(0).standard_normal((2, 5, 8)).astype("float32")
    ours.set_weights(theirs.get_weights())
    assert_close(ours(x), theirs(x), 1e-5)
    theirs.set_weights([w * 0.5 for w in ours.get_weights()])
    ours.set_weights(theirs.get_weights())
    assert_close(ours(x), theirs(x), 1e-5)


# --- masks -----------------------------------------------------------------------


def _embedded_attention(module, causal):
    tokens = keras.Input((5,), dtype="int32")
    x = keras.layers.Embedding(7, 6, mask_zero=True)(tokens)
    y = module.MultiHeadAttention(2, 3)(x, x, use_causal_mask=causal)
    return keras.Model(tokens, y)


@pytest.mark.parametrize("causal", [False, True])
def test_embedding_masks_match_keras_outputs_and_gradients(causal):
    ours, theirs = _embedded_attention(layers, causal), _embedded_attention(keras.layers, causal)
    ours.set_weights(theirs.get_weights())
    tokens = np.array([[3, 1, 0, 0, 2], [0, 0, 0, 0, 0]])  # the second example masked whole
    results = []
    for model in (ours, theirs):
        with tf.GradientTape() as tape:
            y = model(tokens)
            loss = tf.reduce_sum(y * np.random.RandomState(1).standard_normal(y.shape))
        results.append([y] + tape.gradient(loss, model.trainable_weights))
    for a, b in zip(*results):
        assert_close(tf.convert_to_tensor(a), tf.convert_to_tensor(b), 1e-5)


def test_output_carries_the_query_mask():
    x = tf.ones((2, 3, 4))
    keras.src.backend.set_keras_mask(x, tf.constant([[True, True, False], [True, False, False]]))
    y = layers.MultiHeadAttention(2, 2)(x, x)
    np.testing.assert_array_equal(keras.src.backend.get_keras_mask(y), [[True, True, False], [True, False, False]])


def test_masked_keys_get_zero_gradient():
    layer = layers.MultiHeadAttention(2, 3)
    rng = np.random.RandomState(0)
    query, value = (tf.constant(rng.standard_normal(s).astype("float32")) for s in ((2, 4, 5), (2, 3, 5)))
    mask = np.ones((2, 4, 3), bool)
    mask[:, :, 1] = False  # no query attends to key 1
    with tf.GradientTape() as tape:
        tape.watch(value)
        y = layer(query, value, attention_mask=mask)
        loss = tf.reduce_sum(y * rng.standard_normal(y.shape))
    dvalue = tape.gradient(loss, value).numpy()
    np.testing.assert_array_equal(dvalue[:, 1], 0.0)
    assert np.all(np.abs(dvalue[:, [0, 2]]) > 0)


@pytest.mark.parametrize("zero_masked", [False, True])
def test_fully_masked_row_gets_zero_gradient(zero_masked):
    op = attention_op("aecd,abcd->acbe", "acbe,aecd->abcd", (3,), 0.5, zero_masked)
    rng = np.random.RandomState(0)
    q, k, v = (tf.constant(rng.standard_normal((1, 3, 2, 2)).astype("float32")) for _ in range(3))
    mask = np.ones((1, 1, 3, 3), bool)
    mask[0, 0, 1] = False  # query 1 attends to nothing
    with tf.GradientTape() as tape:
        tape.watch(q)
        output, probs = op(q, k, v, tf.constant(mask), None)
        loss = tf.reduce_sum(output * rng.standard_normal(output.shape))
    np.testing.assert_array_equal(tape.gradient(loss, q).numpy()[0, 1], 0.0)
    # Keras's explicit path zeroes that row; its fused path leaves it uniform.
    np.testing.assert_allclose(probs.numpy()[0, :, 1], 0.0 if zero_masked else 1 / 3)


# --- what the attention op saves ---------------------------------------------------


@pytest.mark.parametrize("dropout", [False, True])
def test_forward_saves_the_probabilities_once(dropout):
    op = attention_op("aecd,abcd->acbe", "acbe,aecd->abcd", (3,), 0.5, True)
    q = k = v = tf.ones((2, 4, 3, 2))
    keep = tf.fill((2, 3, 4, 4), 2.0) if dropout else None
    (_, probs), saved = op.forward(q, k, v, None, keep)
    assert saved.probs is probs
    scores_sized = [name for name, t in saved._asdict().items()
                    if isinstance(t, tf.Tensor) and t.shape == (2, 3, 4, 4)]
    assert scores_sized == (["probs", "keep"] if dropout else ["probs"])


# --- flash attention, shapes ---------------------------------------------------------


def test_flash_attention_raises_where_keras_raises():
    x = tf.ones((1, 3, 4))
    for module in (layers, keras.layers):
        layer = module.MultiHeadAttention(2, 2, flash_attention=True)
        with pytest.raises(ValueError, match="Flash attention is not supported in tensorflow backend."):
            layer(x, x)
        with pytest.raises(ValueError, match="Returning attention scores is not supported when flash"):
            layer(x, x, return_attention_scores=True)


def test_symbolic_shapes_match_keras():
    query, value = keras.Input((4, 6)), keras.Input((3, 5))
    for kwargs in (dict(), dict(output_shape=(2, 3))):
        ours = layers.MultiHeadAttention(2, 3, **kwargs)(query, value, return_attention_scores=True)
        theirs = keras.layers.MultiHeadAttention(2, 3, **kwargs)(query, value, return_attention_scores=True)
        assert [t.shape for t in ours] == [t.shape for t in theirs]
    dense = layers.EinsumDense("...b,bc->...c", output_shape=5, bias_axes="c")
    assert dense.compute_output_shape((2, 3, 4)) == keras.layers.EinsumDense(
        "...b,bc->...c", output_shape=5, bias_axes="c").compute_output_shape((2, 3, 4))



# --- convert: a keras-io transformer classifier -------------------------------------------


class TokenAndPositionEmbedding(keras.layers.Layer):
    """keras-io's (text classification with a transformer): token plus position embeddings."""

    def __init__(self, maxlen, vocab_size, embed_dim, **kwargs):
        super().__init__(**kwargs)
        self.maxlen, self.vocab_size, self.embed_dim = maxlen, vocab_size, embed_dim
        self.token_emb = keras.layers.Embedding(input_dim=vocab_size, output_dim=embed_dim)
        self.pos_emb = keras.layers.Embedding(input_dim=maxlen, output_dim=embed_dim)

    def call(self, x):
        positions = self.pos_emb(keras.ops.arange(keras.ops.shape(x)[-1]))
        return self.token_emb(x) + positions

    def get_config(self):
        return {**super().get_config(), "maxlen": self.maxlen, "vocab_size": self.vocab_size,
                "embed_dim": self.embed_dim}


def _keras_io_classifier(maxlen=6, vocab_size=20, embed_dim=8, num_heads=2, ff_dim=16):
    """keras-io's transformer text classifier, its block written out with Add as the residuals."""
    tokens = keras.Input((maxlen,), dtype="int32")
    x = TokenAndPositionEmbedding(maxlen, vocab_size, embed_dim)(tokens)
    attention = keras.layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)(x, x)
    x = keras.layers.LayerNormalization(epsilon=1e-6)(keras.layers.Add()([x, keras.layers.Dropout(0.1)(attention)]))
    ffn = keras.layers.Dense(embed_dim)(keras.layers.Dense(ff_dim, activation="relu")(x))
    x = keras.layers.LayerNormalization(epsilon=1e-6)(keras.layers.Add()([x, keras.layers.Dropout(0.1)(ffn)]))
    x = keras.layers.Dropout(0.1)(keras.layers.GlobalAveragePooling1D()(x))
    x = keras.layers.Dropout(0.1)(keras.layers.Dense(20, activation="relu")(x))
    return keras.Model(tokens, keras.layers.Dense(2, activation="softmax")(x))


def test_keras_io_transformer_classifier_converts_whole():
    import keras_bp

    model = _keras_io_classifier()
    converted, report = keras_bp.convert(model, return_report=True)
    assert report.manual_parameter_share == 1.0, str(report)
    assert any(cls == "MultiHeadAttention" for _, cls in report.swapped)
    tokens = np.random.RandomState(0).randint(0, 20, (3, 6)).astype("int32")
    projection = np.random.RandomState(1).standard_normal((3, 2)).astype("float32")
    grads = []
    for m in (model, converted):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(m(tokens, training=False) * projection)
        grads.append(tape.gradient(loss, m.trainable_variables))
    assert_close(converted(tokens), model(tokens), 1e-5)
    assert len(grads[0]) == len(grads[1]) == len(model.trainable_variables)
    for a, b in zip(*grads):
        a, b = np.asarray(tf.convert_to_tensor(a)), np.asarray(tf.convert_to_tensor(b))
        # NOTE: the key projection's bias has a zero gradient in exact arithmetic (softmax
        # ignores a shift common to all keys): both sides give round-off there, ~1e-10.
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
