"""Attention: scores of queries against keys, a softmax over the keys, a weighted sum of values, with the backward.

Shapes (the leading batch axes `...` may be several, as Keras allows):
q (..., Tq, d) queries, k (..., Tv, d) keys, v (..., Tv, dv) values.

Forward, as Keras's `Attention` and `AdditiveAttention` compute it:

    S = score(q, k)                          (..., Tq, Tv)
    S' = S - M where the score mask is off   (M = 1e9, 65504 in float16: Keras's "large negative")
    P = softmax(S') along Tv                 (..., Tq, Tv)
    W = P * D                                D: the scaled dropout keep-mask (0 or 1/(1-rate)), in training
    O = W v                                  (..., Tq, dv)
    O' = O where the query mask is on, else 0

The score mask is the value mask (..., 1, Tv) and/or the causal mask
(1, Tq, Tv) [i >= j]; `return_attention_scores` returns W: the weights
after masking, softmax and dropout, as Keras returns them.

The score functions (a: `scale` inside the tanh, w: a weight per feature
outside it, c: one outside the sum; each optional):

    "dot" (Attention):           S_ij = a q_i . k_j
    "concat" (Attention):        S_ij = c sum_d tanh(a (q_id + k_jd))          (c: concat_score_weight)
    AdditiveAttention:           S_ij = sum_d w_d tanh(q_id + k_jd)            (w: scale, shape (d,))

Backward, with dO' (..., Tq, dv) and dW (..., Tq, Tv) (the scores' upstream,
zero unless the loss uses them) coming in:

    dO = dO' where the query mask is on, else 0       (..., Tq, dv)
    dv = W^T dO                                       (..., Tv, dv)
    dW += dO v^T                                      (..., Tq, Tv)
    dP = dW * D                                       (the same mask as the forward's)
    dS = P * (dP - rowsum(dP * P))                    softmax's backward (activations._softmax_pair),
                                                      rowsum: the sum over Tv, kept as a column

The mask's shift is a constant: dS' = dS. Where the mask is off P is 0
(exp underflows), so dS is 0 there and masked keys get no gradient;
a row masked out entirely stays a plain softmax, as in Keras.

Then through the score function, "dot" (G_q, G_k: the gradients before a):

    G_q = dS k    (..., Tq, d)     dq = a G_q
    G_k = dS^T q  (..., Tv, d)     dk = a G_k
    da = sum(dS * q k^T) = sum(q * G_q)   (no (Tq, Tv) product kept for it)

and the tanh scores, with U = tanh(Z), Z = a (q_i + k_j)  (..., Tq, Tv, d),
R = sum_d w_d U (..., Tq, Tv):

    dc = sum(dS * R)                       dR = c dS
    dw_d = sum over ..., i, j of dR U_d     dU = dR w (broadcast over d)
    dZ = dU (1 - U^2)                      (..., Tq, Tv, d)
    G_q = sum_j dZ  (..., Tq, d)           dq = a G_q
    G_k = sum_i dZ  (..., Tv, d)           dk = a G_k
    da = sum(dZ * (q_i + k_j)) = sum(q * G_q) + sum(k * G_k)

Without a key, `k` is `v`: the op takes v twice and TensorFlow adds the two
gradients (dk + dv). The forward saves P (and W, the same tensor without
dropout), the dropout mask, and what the score's backward needs: q and k
for "dot", U (and R where c is present) for the tanh scores, the (Tq, Tv, d)
tensor TensorFlow's own tanh gradient keeps.

Names in the code: S `s`, M `large`, P `p`, W `weights`, D `dropout`,
dO `do`, dW `dweights`, dS `ds`, G_q `g_q`, G_k `g_k`, U `u`, R `r`,
dR `dr`, dU `du`, dZ `dz`; the query mask `query_mask` (..., Tq, 1) and
the score mask's complement `padding` (True where a score is shifted).
"""

import functools
from typing import Callable, NamedTuple, Optional

import keras
import tensorflow as tf

from keras_bp._validation import check_unit_interval, invalid
from keras_bp.activations import _softmax_pair
from keras_bp.core import manual_gradient

_SOFTMAX = _softmax_pair(-1)


class ScorePair(NamedTuple):
    """A score function S = score(q, k, *params) and its backward (dq, dk, *dparams)."""

    forward: Callable
    backward: Callable


# --- "dot": S = a q k^T --------------------------------------------------------


def _dot_scores(q, k, a):
    """S = q k^T, times a when present (Keras multiplies after the product)."""
    s = tf.matmul(q, k, transpose_b=True)
    if a is not None:
        s = s * a
    return s, (q, k, a)


def _dot_scores_backward(saved, ds):
    """dq = a dS k, dk = a dS^T q, da = sum(q * dS k)."""
    q, k, a = saved
    g_q = tf.matmul(ds, k)  # (..., Tq, d)
    g_k = tf.matmul(ds, q, transpose_a=True)  # (..., Tv, d)
    if a is None:
        return g_q, g_k, None
    return a * g_q, a * g_k, tf.reduce_sum(q * g_q)


DOT = ScorePair(_dot_scores, _dot_scores_backward)


# --- "concat" and additive: S = c sum_d w_d tanh(a (q_i + k_j)) ----------------


class _TanhSaved(NamedTuple):
    q: tf.Tensor
    k: tf.Tensor
    u: tf.Tensor  # tanh(Z)  (..., Tq, Tv, d)
    r: Optional[tf.Tensor]  # sum_d w_d U  (..., Tq, Tv), kept only for dc
    a: Optional[tf.Tensor]
    w: Optional[tf.Tensor]
    c: Optional[tf.Tensor]


def _tanh_scores(q, k, a, w, c):
    """S = c sum_d w_d tanh(a (q_i + k_j)), each of a, w, c optional (Keras's order of operations)."""
    z = tf.expand_dims(q, -2) + tf.expand_dims(k, -3)  # (..., Tq, 1, d) + (..., 1, Tv, d)
    if a is not None:
        z = a * z
    u = tf.tanh(z)
    r = tf.reduce_sum(u if w is None else w * u, axis=-1)
    s = r if c is None else c * r
    return s, _TanhSaved(q, k, u, None if c is None else r, a, w, c)


def _tanh_scores_backward(saved, ds):
    q, k, u, r, a, w, c = saved
    dc = None if c is None else tf.reduce_sum(ds * r)
    dr = ds if c is None else c * ds
    dw = None
    if w is not None:
        # sum over ..., i, j of dR U_d, as one (1, n) x (n, d) product: no (..., Tq, Tv, d) temporary.
        d = tf.shape(u)[-1]
        dw = tf.matmul(tf.reshape(dr, (1, -1)), tf.reshape(u, (-1, d)))[0]
        du = tf.expand_dims(dr, -1) * w  # (..., Tq, Tv, d)
    else:
        du = tf.broadcast_to(tf.expand_dims(dr, -1), tf.shape(u))
    dz = tf.raw_ops.TanhGrad(y=u, dy=du)  # dU (1 - U^2), in one fused kernel
    g_q = tf.reduce_sum(dz, axis=-2)  # sum over j: (..., Tq, d)
    g_k = tf.reduce_sum(dz, axis=-3)  # sum over i: (..., Tv, d)
    if a is None:
        return g_q, g_k, None, dw, dc
    da = tf.reduce_sum(q * g_q) + tf.reduce_sum(k * g_k)
    return a * g_q, a * g_k, da, dw, dc


TANH = ScorePair(_tanh_scores, _tanh_scores_backward)


# --- the attention op: masks, softmax, dropout, the weighted sum -------------------


class _Saved(NamedTuple):
    score: object  # what the score function's backward needs
    p: tf.Tensor  # softmax(S')  (..., Tq, Tv)
    weights: tf.Tensor  # W = P * s (P itself without dropout)
    v: tf.Tensor
    dropout: Optional[tf.Tensor]  # s, or None
    query_mask: Optional[tf.Tensor]  # (..., Tq, 1) bool, or None


@functools.lru_cache(maxsize=None)
def attention_op(score):
    """The op (q, k, v, padding, query_mask, dropout, *params) -> (O', W) for one score function.

    padding: bool, True where the score mask is off (broadcast to (..., Tq, Tv)), or None;
    query_mask: bool (..., Tq, 1), or None; dropout: the scaled keep-mask s (..., Tq, Tv), or None.
    """

    def forward(q, k, v, padding, query_mask, dropout, *params):
        s, score_saved = score.forward(q, k, *params)
        if padding is not None:
            # NOTE: Keras's shift; 65504 is float16's largest value.
            large = 65504.0 if s.dtype == tf.float16 else 1.0e9
            s = tf.where(padding, s - large, s)
        p, _ = _SOFTMAX.forward(s)
        weights = p if dropout is None else p * dropout
        o = tf.matmul(weights, v)
        if query_mask is not None:
            o = tf.where(query_mask, o, tf.zeros((), o.dtype))
        return (o, weights), _Saved(score_saved, p, weights, v, dropout, query_mask)

    def backward(saved, do, dweights):
        if saved.query_mask is not None:
            do = tf.where(saved.query_mask, do, tf.zeros((), do.dtype))
        dv = tf.matmul(saved.weights, do, transpose_a=True)  # W^T dO  (..., Tv, dv)
        dweights = dweights + tf.matmul(do, saved.v, transpose_b=True)  # dO v^T  (..., Tq, Tv)
        dp = dweights if saved.dropout is None else dweights * saved.dropout
        ds = _SOFTMAX.backward(saved.p, dp)
        dq, dk, *dparams = score.backward(saved.score, ds)
        return (dq, dk, dv, None, None, None, *dparams)

    return manual_gradient(forward, backward, name="attention")


def causal_and_value_mask(tq, tv, v_mask, use_causal_mask):
    """Keras's score mask: True where query i may attend to key j; None when there is none."""
    if not use_causal_mask:
        return v_mask
    # Lower triangular (1, Tq, Tv): position i cannot attend to j > i.
    causal = tf.expand_dims(tf.range(tq)[:, None] >= tf.range(tv)[None, :], 0)
    if v_mask is None:
        return causal
    return tf.logical_and(tf.expand_dims(tf.cast(v_mask, tf.bool), -2), causal)


def weight_tensor(weight):
    """The weight's value as a tensor (None for an absent weight)."""
    # Trap 1: read the weight here (autocast honoured), outside the custom gradient.
    return None if weight is None else tf.convert_to_tensor(weight)


@keras.saving.register_keras_serializable(package="keras_bp")
class Attention(keras.layers.Layer):
    """Dot-product attention, a.k.a. Luong-style attention (drop-in for `keras.layers.Attention`).

    The math and its backward: this module's docstring.

    Args:
        use_scale: If `True`, a scalar weight `scale` (initialized to 1)
            scales the scores ("dot") or the sums inside the tanh ("concat").
        score_mode: `"dot"`, the dot product of query and key, or
            `"concat"`, the sum of the tanh of query plus key, times a
            scalar weight `concat_score_weight`.
        dropout: Float in [0, 1], the fraction of the attention weights to
            drop in training.
        seed: Integer seed for the dropout.

    Call arguments:
        inputs: `[query, value]` or `[query, value, key]`: query
            `(batch_size, Tq, dim)`, value `(batch_size, Tv, dim)`, key
            `(batch_size, Tv, dim)` (the value when not given).
        mask: `[query_mask, value_mask]`: booleans `(batch_size, Tq)` (the
            output is zero where False) and `(batch_size, Tv)` (those values
            do not contribute).
        training: Whether to apply dropout.
        return_attention_scores: If `True`, also return the attention
            weights (after masking, softmax and dropout).
        use_causal_mask: If `True`, position `i` does not attend to `j > i`.

    Output:
        The attention output `(batch_size, Tq, dim)`, and with
        `return_attention_scores` the weights `(batch_size, Tq, Tv)`.
    """

    def __init__(self, use_scale=False, score_mode="dot", dropout=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.use_scale = use_scale
        self.score_mode = score_mode
        self.dropout = check_unit_interval("dropout", dropout)
        self.seed = seed
        if self.dropout > 0:
            self.seed_generator = keras.random.SeedGenerator(seed=seed)
        if score_mode not in ("dot", "concat"):
            lead = f"Invalid value for argument score_mode. Expected one of {{'dot', 'concat'}}. Received: score_mode={score_mode}"
            raise invalid("score_mode", score_mode, "one of ('dot', 'concat')", lead)

    def build(self, input_shape):
        self._validate_inputs(input_shape)
        self.scale = None
        self.concat_score_weight = None
        if self.use_scale:
            self.scale = self.add_weight(name="scale", shape=(), initializer="ones", dtype=self.dtype, trainable=True)
        if self.score_mode == "concat":
            self.concat_score_weight = self.add_weight(
                name="concat_score_weight", shape=(), initializer="ones", dtype=self.dtype, trainable=True
            )

    def _score(self):
        """The score function and its parameters, as tensors."""
        if self.score_mode == "dot":
            return DOT, (weight_tensor(self.scale),)
        return TANH, (weight_tensor(self.scale), None, weight_tensor(self.concat_score_weight))

    def _calculate_scores(self, query, key):
        """The scores S (batch_size, Tq, Tv) of query against key (Keras's method)."""
        query, key = tf.convert_to_tensor(query), tf.convert_to_tensor(key)
        score, params = self._score()
        params = [None if p is None else tf.cast(p, query.dtype) for p in params]
        return score.forward(query, tf.cast(key, query.dtype), *params)[0]

    def _calculate_score_mask(self, scores, v_mask, use_causal_mask):
        """True where a score counts: the value mask and/or the causal mask (Keras's method)."""
        shape = tf.shape(scores)
        return causal_and_value_mask(shape[-2], shape[-1], v_mask, use_causal_mask)

    def call(self, inputs, mask=None, training=False, return_attention_scores=False, use_causal_mask=False):
        self._validate_inputs(inputs=inputs, mask=mask)
        q = inputs[0]
        v = inputs[1]
        k = inputs[2] if len(inputs) > 2 else v
        q_mask = mask[0] if mask else None
        v_mask = mask[1] if mask else None
        if v_mask is not None:
            v_mask = tf.cast(v_mask, tf.bool)
        keep = causal_and_value_mask(tf.shape(q)[-2], tf.shape(k)[-2], v_mask, use_causal_mask)
        padding = None
        if keep is not None:
            padding = tf.logical_not(keep)
            if len(padding.shape) == 2:
                padding = tf.expand_dims(padding, -2)  # (batch_size, 1, Tv)
        query_mask = None if q_mask is None else tf.expand_dims(tf.cast(q_mask, tf.bool), -1)
        dropout = None
        if training and self.dropout > 0:
            # The keep-mask Keras's dropout of the weights draws (same seed, same shape).
            shape = tf.concat([tf.shape(q)[:-1], tf.shape(k)[-2:-1]], 0)
            dropout = keras.random.dropout(tf.ones(shape, q.dtype), self.dropout, seed=self.seed_generator)
        score, params = self._score()
        output, weights = attention_op(score)(q, k, v, padding, query_mask, dropout, *params)
        if return_attention_scores:
            return output, weights
        return output

    def compute_mask(self, inputs, mask=None):
        self._validate_inputs(inputs=inputs, mask=mask)
        if mask is None or mask[0] is None:
            return None
        return keras.ops.convert_to_tensor(mask[0])

    def compute_output_shape(self, input_shape):
        return (*input_shape[0][:-1], input_shape[1][-1])

    def compute_output_spec(self, inputs, mask=None, return_attention_scores=False, training=None,
                            use_causal_mask=False):
        self._validate_inputs(inputs, mask)
        query, value = inputs[0], inputs[1]
        key = inputs[2] if len(inputs) > 2 else value
        output = keras.KerasTensor(self.compute_output_shape([query.shape, value.shape, key.shape]),
                                   dtype=self.compute_dtype)
        if return_attention_scores:
            return output, keras.KerasTensor((*query.shape[:-1], key.shape[-2]), dtype=self.compute_dtype)
        return output

    def _validate_inputs(self, inputs, mask=None):
        """Keras's checks of the call's arguments, with its words."""
        class_name = self.__class__.__name__
        if not isinstance(inputs, list):
            raise ValueError(
                f"{class_name} layer must be called on a list of inputs, namely [query, value] or "
                f"[query, value, key]. Received: inputs={inputs}."
            )
        if len(inputs) < 2 or len(inputs) > 3:
            raise ValueError(
                f"{class_name} layer accepts inputs list of length 2 or 3, namely [query, value] or "
                f"[query, value, key]. Received length: {len(inputs)}."
            )
        if mask is not None:
            if not isinstance(mask, list):
                raise ValueError(
                    f"{class_name} layer mask must be a list, namely [query_mask, value_mask]. "
                    f"Received: mask={mask}."
                )
            if len(mask) < 2 or len(mask) > 3:
                raise ValueError(
                    f"{class_name} layer accepts mask list of length 2 or 3. Received: inputs={inputs}, mask={mask}."
                )

    def get_config(self):
        return {**super().get_config(), "use_scale": self.use_scale, "score_mode": self.score_mode,
                "dropout": self.dropout, "seed": self.seed}
