"""Scaled dot-product attention as one forward/backward pair, over Keras's einsum equations.

With Q (query), K (key), V (value) the projected heads, the equations of
Keras's `_build_attention_equation` (for the default axes, "aecd,abcd->acbe"
and "acbe,aecd->abcd": K, Q -> S over (batch, heads, T, S); P', V -> O) and
c = 1 / sqrt(key_dim):

    S  = einsum(dot, K, c Q)                         scores     (B, h, T, S)
    S~ = S where the mask is True, else -1e9         masked     (as Keras's Softmax)
    P  = softmax(S~) over the key axes               probs      (B, h, T, S)
         (zeroed where masked, on Keras's explicit path: a row with every key masked is 0)
    P' = P * keep                                    dropout    keep = m / (1 - rate), or 1
    O  = einsum(combine, P', V)                      output     (B, T, h, d_v)

Backward, with dO = dL/dO and, when P is an output too (`return_scores`), dP_out = dL/dP:

    dV  = einsum(combine's "O,P'->V", dO, P')        P'^T dO       (B, S, h, d_v)
    dP' = einsum(combine's "O,V->P'", dO, V)         dO V^T        (B, h, T, S)
    dP  = dP' * keep (+ dP_out)                      the same mask as forward
    dS  = P * (dP - sum over keys of dP * P)         softmax's backward (activations._softmax_pair)
          0 where masked                             (S~ does not depend on a masked S)
    dQ  = c einsum(dot's "S,K->Q", dS, K)            dS K / sqrt(d_k)    (B, T, h, d_k)
    dK  = einsum(dot's "S,Q->K", dS, c Q)            dS^T Q / sqrt(d_k)  (B, S, h, d_k)

each "Y,A->B" being the gradient of an einsum with respect to one operand
(`einsum_dense.einsum_gradient`). The forward saves P once (and the
dropout mask, which Keras's autodiff keeps too); P' is formed again in the
backward for dV.
"""

from typing import NamedTuple

import tensorflow as tf

from keras_bp.activations import _softmax_pair
from keras_bp.core import manual_gradient
from keras_bp.layers.einsum_dense import Subscripts, einsum_gradient, ordered_einsum

# As Keras's Softmax layer: the score a masked position gets.
_MASKED_SCORE = -1e9


class AttentionSaved(NamedTuple):
    """What the attention's forward saves for its backward."""

    query: tf.Tensor  # c Q, the scaled query, for dK
    key: tf.Tensor  # K, for dQ
    value: tf.Tensor  # V, for dP'
    probs: tf.Tensor  # P (zero where Keras zeroes it), for dS and, with keep, dV
    mask: object  # the attention mask (True: attend), broadcastable to S; None for none
    keep: object  # m / (1 - rate), the scaled dropout mask; None without dropout


def attention_op(dot_equation, combine_equation, norm_axes, scale, zero_masked, return_scores=True):
    """The op (query, key, value, mask, keep) -> (O, P), or O alone; mask and keep may be None.

    dot_equation: "K,Q->S" (Keras's `_dot_product_equation`); combine_equation:
    "S,V->O" (its `_combine_equation`); norm_axes: the key axes of S, softmax's
    axes; scale: c = 1 / sqrt(key_dim); zero_masked: P is zeroed where masked,
    as on Keras's explicit path (its fused `dot_product_attention` leaves a
    fully masked row uniform); return_scores: P is an output too (without it,
    no upstream dL/dP, and no zeros of P's shape, enter the backward).
    """
    dot, combine = Subscripts.parse(dot_equation), Subscripts.parse(combine_equation)
    softmax = _softmax_pair(norm_axes if len(norm_axes) > 1 else norm_axes[0])

    def forward(query, key, value, mask, keep):
        # NOTE: c scales the (B, T, h, d_k) query, not the (B, h, T, S) scores: one
        # pass over the small tensor, forward and backward (Keras's explicit path does so).
        scaled_query = scale * query
        scores = ordered_einsum(key, dot.x, scaled_query, dot.w, dot.y)
        half = scores.dtype in (tf.float16, tf.bfloat16)
        # NOTE: as Keras's attention, the softmax runs in float32 under mixed precision.
        logits = tf.cast(scores, tf.float32) if half else scores
        if mask is not None:
            logits = tf.where(mask, logits, tf.cast(_MASKED_SCORE, logits.dtype))
        probs, _ = softmax.forward(logits)
        probs = tf.cast(probs, scores.dtype)
        if mask is not None and zero_masked:
            probs = tf.where(mask, probs, tf.zeros((), probs.dtype))
        dropped = probs if keep is None else probs * keep
        output = ordered_einsum(dropped, combine.x, value, combine.w, combine.y)
        saved = AttentionSaved(scaled_query, key, value, probs, mask, keep)
        return ((output, probs) if return_scores else output), saved

    def backward(saved, doutput, dprobs_out=None):
        dropped = saved.probs if saved.keep is None else saved.probs * saved.keep
        dvalue = einsum_gradient(doutput, combine.y, dropped, combine.x, combine.w, tf.shape(saved.value))
        ddropped = einsum_gradient(doutput, combine.y, saved.value, combine.w, combine.x, tf.shape(saved.probs))
        dprobs = ddropped if saved.keep is None else ddropped * saved.keep
        if dprobs_out is not None:
            dprobs = dprobs + dprobs_out
        dscores = softmax.backward(saved.probs, dprobs)
        if saved.mask is not None:
            dscores = tf.where(saved.mask, dscores, tf.zeros((), dscores.dtype))
        dquery = scale * einsum_gradient(dscores, dot.y, saved.key, dot.x, dot.w, tf.shape(saved.query))
        dkey = einsum_gradient(dscores, dot.y, saved.query, dot.w, dot.x, tf.shape(saved.key))
        return dquery, dkey, dvalue, None, None

    return manual_gradient(forward, backward, name="dot_product_attention")
