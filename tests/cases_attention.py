"""Harness cases for Attention ("dot" and "concat" scores) and AdditiveAttention.

Each layer takes one list, `[query, value]` or `[query, value, key]`
(`list_input=True`), drawn by `make_inputs`; masks, `use_causal_mask`,
`return_attention_scores` and `training` go in as call arguments. The masks
are fixed arrays for a batch of 2, so the cases with masks are not fit
cases (the fit model's batch is symbolic); the causal mask is. Dropout
draws the same mask as Keras's layer (same seed generator, same op), so the
dropout cases are compared with Keras too; their training with `fit` (a
random mask each step: three epochs need not lower the loss) is compared
with Keras's, step for step, in tests/test_attention.py.
"""

import keras
import numpy as np

from keras_bp import layers
from tests.harness import LayerCase

# A batch of 2; Tq = 3 queries, Tv = 4 values. Every row of the value mask keeps a key.
QUERY_MASK = np.array([[True, False, True], [True, True, False]])
VALUE_MASK = np.array([[True, False, True, True], [False, True, True, False]])
MASKS = [QUERY_MASK, VALUE_MASK]

Q, V, K = (2, 3, 4), (2, 4, 5), (2, 4, 4)  # a value of its own width (5) beside the key (4)
SELF = (2, 4, 4)  # self-attention for the causal mask: Tq = Tv


def _normal(*shapes):
    return lambda rng: [rng.standard_normal(s).astype("float32") for s in shapes]


def _case(id, name, shapes, fit=False, call_kwargs=None, **kwargs):
    return LayerCase(
        id,
        make=lambda: getattr(layers, name)(**kwargs),
        keras_make=lambda: getattr(keras.layers, name)(**kwargs),
        input_shape=shapes[0],
        make_inputs=_normal(*shapes),
        call_kwargs=call_kwargs or {},
        list_input=True,
        fit=fit,
    )


CASES = [
    # Attention, "dot".
    _case("attention-dot", "Attention", [Q, K], fit=True),
    _case("attention-dot-key", "Attention", [Q, V, K]),
    _case("attention-dot-scale", "Attention", [Q, V, K], fit=True, use_scale=True),
    _case("attention-dot-value-mask", "Attention", [Q, V, K], call_kwargs={"mask": [None, VALUE_MASK]},
          use_scale=True),
    _case("attention-dot-masks", "Attention", [Q, K], call_kwargs={"mask": MASKS}),
    _case("attention-dot-causal", "Attention", [SELF, SELF], fit=True, call_kwargs={"use_causal_mask": True},
          use_scale=True),
    _case("attention-dot-causal-masks-scores", "Attention", [SELF, SELF],
          call_kwargs={"use_causal_mask": True, "return_attention_scores": True,
                       "mask": [np.array([[True, True, False, True]] * 2), np.array([[True, False, True, True]] * 2)]}),
    _case("attention-dot-scores", "Attention", [Q, V, K], fit=True, call_kwargs={"return_attention_scores": True},
          use_scale=True),
    _case("attention-dot-4d", "Attention", [(2, 2, 3, 4), (2, 2, 5, 4)], use_scale=True),
    # Attention, "concat".
    _case("attention-concat", "Attention", [Q, K], fit=True, score_mode="concat"),
    _case("attention-concat-scale", "Attention", [Q, V, K], fit=True, score_mode="concat", use_scale=True),
    _case("attention-concat-masks-scores", "Attention", [Q, V, K], score_mode="concat", use_scale=True,
          call_kwargs={"mask": MASKS, "return_attention_scores": True}),
    _case("attention-concat-causal", "Attention", [SELF, SELF], score_mode="concat",
          call_kwargs={"use_causal_mask": True}),
    # AdditiveAttention.
    _case("additive", "AdditiveAttention", [Q, K], fit=True),
    _case("additive-no-scale", "AdditiveAttention", [Q, V, K], fit=True, use_scale=False),
    _case("additive-key-masks", "AdditiveAttention", [Q, V, K], call_kwargs={"mask": MASKS}),
    _case("additive-causal-scores", "AdditiveAttention", [SELF, SELF], fit=True,
          call_kwargs={"use_causal_mask": True, "return_attention_scores": True}),
    # Dropout on the attention weights, training: the same mask as Keras's, forward and backward.
    _case("attention-dot-dropout", "Attention", [Q, V, K], use_scale=True, dropout=0.4, seed=3,
          call_kwargs={"training": True, "return_attention_scores": True}),
    _case("attention-concat-dropout-masks", "Attention", [Q, V, K], score_mode="concat", dropout=0.3, seed=5,
          call_kwargs={"training": True, "mask": MASKS}),
    _case("additive-dropout", "AdditiveAttention", [Q, V, K], dropout=0.4, seed=7,
          call_kwargs={"training": True}),
]
