"""Harness cases for EinsumDense and MultiHeadAttention.

EinsumDense runs over several equations (the `fit` ones with a fully known
`output_shape`: Keras's, and so ours, leaves a None of it unknown in the
symbolic output, which the harness's Flatten and Dense head cannot take): Dense's, a sequence's, multi-axis
kernels as MultiHeadAttention's projections, both ellipses, an input axis
summed alone, bias_axes not at the end, LoRA. MultiHeadAttention takes its
tensors positionally (query, value[, key]); what its call takes by keyword
(masks, `use_causal_mask`, `return_attention_scores`) goes through
`CalledAttention`, a test layer that takes the masks positionally, so that
every check (the float64 finite differences among them, which call a layer
positionally) sees them.
"""

import keras
import tensorflow as tf

import keras_bp
from tests.harness import LayerCase, paired_case


def _einsum(name, input_shape, fit=False, **kwargs):
    return paired_case(f"einsum-dense-{name}", "EinsumDense", input_shape, fit, **kwargs)


@keras.saving.register_keras_serializable(package="keras_bp_tests")
class CalledAttention(keras.layers.Layer):
    """A MultiHeadAttention (keras_bp's or Keras's) called with `masks` positionally and `call_options`.

    masks: what the inputs after (query, value) are, in order:
    "attention_mask" (B, T, S), or "query_mask" (B, T) / "value_mask" (B, S),
    set as the Keras masks of query and value (as an Embedding with
    `mask_zero` or a Masking layer would).
    """

    def __init__(self, impl, options, masks=(), call_options=None, **kwargs):
        super().__init__(**kwargs)
        self.impl, self.options, self.masks = impl, dict(options), tuple(masks)
        self.call_options = dict(call_options or {})
        layers = keras_bp.layers if impl == "keras_bp" else keras.layers
        self.attention = layers.MultiHeadAttention(**self.options, dtype=self.dtype_policy, name="attention")

    def build(self, query_shape, value_shape, first_mask_shape=None, second_mask_shape=None):
        self.attention.build(query_shape, value_shape)

    def call(self, query, value, first_mask=None, second_mask=None, training=None):
        query, value = tf.identity(query), tf.identity(value)  # masks set on copies
        kwargs = {}
        for name, mask in zip(self.masks, (first_mask, second_mask)):
            if name == "attention_mask":
                kwargs[name] = mask
            else:
                keras.src.backend.set_keras_mask(query if name == "query_mask" else value, mask)
        return self.attention(query, value, **kwargs, **self.call_options, training=training)

    def get_config(self):
        return {**super().get_config(), "impl": self.impl, "options": self.options, "masks": self.masks,
                "call_options": self.call_options}


def _inputs(*shapes, masks=()):
    """query, value (, key) drawn normal; then the boolean masks of `masks` shapes (some rows fully masked)."""

    def make(rng):
        tensors = [rng.standard_normal(s).astype("float32") for s in shapes]
        for shape in masks:
            mask = rng.uniform(size=shape) > 0.4
            mask[(0,) * (len(shape) - 1)] = False  # one query row (or sequence) masked whole
            mask[(-1,) * len(shape)] = True
            tensors.append(mask)
        return tensors

    return make


def _mha(name, shapes, fit=False, masks=(), mask_shapes=(), call_options=None, **options):
    """A MultiHeadAttention case: plain (positional tensors) or through CalledAttention."""
    if masks or call_options:
        def layer(impl):
            return lambda: CalledAttention(impl, options, masks, call_options)
        make, keras_make, call_kwargs = layer("keras_bp"), layer("keras"), {}
    else:
        make = lambda: keras_bp.layers.MultiHeadAttention(**options)  # noqa: E731
        keras_make = lambda: keras.layers.MultiHeadAttention(**options)  # noqa: E731
        call_kwargs = {}
    if options.get("dropout"):
        call_kwargs = {"training": True}
    return LayerCase(f"mha-{name}", make, keras_make, shapes[0],
                     make_inputs=_inputs(*shapes, masks=mask_shapes), call_kwargs=call_kwargs, fit=fit)


CASES = [
    _einsum("dense", (3, 4), fit=True, equation="ab,bc->ac", output_shape=5, bias_axes="c"),
    _einsum("sequence-relu", (2, 3, 4), fit=True, equation="abc,cd->abd", output_shape=(3, 5),
            bias_axes="d", activation="relu"),
    _einsum("heads", (2, 3, 4), equation="abc,cde->abde", output_shape=(None, 2, 3), bias_axes="de"),
    _einsum("heads-out", (2, 3, 2, 3), fit=True, equation="abcd,cde->abe", output_shape=(3, 4), bias_axes="e",
            activation="tanh"),
    _einsum("ellipsis-left", (2, 3, 4), fit=True, equation="...b,bc->...c", output_shape=5, bias_axes="c"),
    _einsum("ellipsis-right", (2, 4, 3), equation="ab...,bc->ac...", output_shape=(5, None), bias_axes="c"),
    _einsum("summed-alone", (2, 3, 4), fit=True, equation="abc,bd->ad", output_shape=5, bias_axes="d"),
    _einsum("bias-inner", (2, 3, 4), equation="abc,cd->abd", output_shape=(3, 5), bias_axes="b"),
    _einsum("no-bias-softmax", (2, 3, 4), equation="abc,cd->abd", output_shape=(None, 5), activation="softmax"),
    _einsum("lora", (2, 3, 4), fit=True, equation="abc,cde->abde", output_shape=(3, 2, 3), bias_axes="de",
            lora_rank=2, lora_alpha=3.0),
    _mha("self", [(2, 4, 6), (2, 4, 6)], fit=True, num_heads=2, key_dim=3),
    _mha("cross", [(2, 4, 6), (2, 3, 5)], num_heads=2, key_dim=3),
    _mha("cross-key-output-shape", [(2, 4, 6), (2, 3, 5), (2, 3, 4)], fit=True, num_heads=2, key_dim=3,
         value_dim=2, output_shape=(3,)),
    _mha("no-bias-one-head", [(2, 3, 4), (2, 3, 4)], num_heads=1, key_dim=4, use_bias=False),
    _mha("attention-axes-1-2", [(2, 3, 2, 4), (2, 3, 2, 4)], fit=True, num_heads=2, key_dim=2,
         attention_axes=(1, 2)),
    _mha("attention-axes-2", [(2, 3, 2, 4), (2, 3, 2, 4)], num_heads=2, key_dim=2, attention_axes=2),
    _mha("gate", [(2, 4, 6), (2, 4, 6)], num_heads=2, key_dim=3, use_gate=True),
    _mha("dropout", [(2, 4, 6), (2, 4, 6)], num_heads=2, key_dim=3, dropout=0.5, seed=1),
    _mha("dropout-fit", [(2, 4, 6), (2, 4, 6)], fit=True, num_heads=2, key_dim=3, dropout=0.1, seed=1),
    _mha("attention-mask", [(2, 4, 6), (2, 3, 6)], fit=True, masks=("attention_mask",),
         mask_shapes=[(2, 4, 3)], num_heads=2, key_dim=3),
    _mha("attention-mask-scores", [(2, 4, 6), (2, 3, 6)], masks=("attention_mask",), mask_shapes=[(2, 4, 3)],
         call_options={"return_attention_scores": True}, num_heads=2, key_dim=3),
    _mha("causal", [(2, 4, 6), (2, 4, 6)], fit=True, call_options={"use_causal_mask": True}, num_heads=2,
         key_dim=3),
    _mha("causal-mask-dropout", [(2, 4, 6), (2, 4, 6)], masks=("attention_mask",), mask_shapes=[(2, 4, 4)],
         call_options={"use_causal_mask": True}, num_heads=2, key_dim=3, dropout=0.3, seed=2),
    _mha("input-masks", [(2, 4, 6), (2, 3, 6)], fit=True, masks=("query_mask", "value_mask"),
         mask_shapes=[(2, 4), (2, 3)], num_heads=2, key_dim=3),
    _mha("sliding-window", [(2, 5, 4), (2, 5, 4)], call_options={"use_causal_mask": True}, num_heads=2,
         key_dim=2, sliding_window=2),
]
