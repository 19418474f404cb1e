"""MultiHeadAttention: keras_bp EinsumDense projections around one hand-derived scaled dot-product attention op."""

import math

import keras
from keras.src.backend import get_keras_mask, set_keras_mask
from keras.src.backend.config import is_flash_attention_enabled

# NOTE: the projections' and the attention's einsum equations are built by
# Keras's own functions, so that weight shapes and attention axes are Keras's
# for every rank and `attention_axes`.
from keras.src.layers.attention.multi_head_attention import (
    _build_attention_equation,
    _build_proj_equation,
    _get_output_shape,
)
import tensorflow as tf

from keras_bp.core import manual_gradient
from keras_bp.layers._attention_math import attention_op
from keras_bp.layers._weight_options import set_weight_options, weight_options_config
from keras_bp.layers.dropout import Dropout
from keras_bp.layers.einsum_dense import EinsumDense


def _gated_forward(output, gate):
    """use_gate: y = O * G, G = sigmoid(query projection)  (B, T, N, H)."""
    return output * gate, (output, gate)


def _gated_backward(saved, dy):
    """dO = dy * G,  dG = dy * O."""
    output, gate = saved
    return dy * gate, dy * output


_gated = manual_gradient(_gated_forward, _gated_backward, name="attention_gate")


def _positive_int_or_error(name, value, expected="a positive integer"):
    if not isinstance(value, int) or value <= 0:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected {expected}. Received: {name}={value}"
        )


@keras.saving.register_keras_serializable(package="keras_bp")
class MultiHeadAttention(keras.layers.Layer):
    """Multi-head attention with hand-derived backward passes (drop-in for `keras.layers.MultiHeadAttention`).

    The query, key and value are projected by keras_bp `EinsumDense` layers
    named `query`, `key` and `value` (kernels `(dim, num_heads, key_dim)`,
    biases `(num_heads, key_dim)`), attended to by one manual-gradient op
    (`keras_bp.layers._attention_math.attention_op`, its derivation in that
    module), and projected back by the `EinsumDense` `attention_output`
    (kernel `(num_heads, value_dim, dim)`), with `use_gate` a sigmoid
    `gate` projection of the query multiplying the attention's output, as
    Keras's. Weights, paths, equations and masks are Keras's, so weights
    transfer both ways.

    The attention mask is Keras's: `attention_mask` (True attends), the Keras
    masks of `query`, `value` and `key`, `use_causal_mask` and
    `sliding_window`, all combined with AND. As in Keras, a query row with
    every key masked gets zero attention on the explicit path (dropout,
    `return_attention_scores`, or a query of rank other than 3) and uniform
    attention on the fused path Keras takes otherwise.

    Args:
        num_heads: Number of attention heads.
        key_dim: Size of each attention head for query and key.
        value_dim: Size of each attention head for value (defaults to `key_dim`).
        dropout: Dropout probability on the attention weights.
        use_bias: Whether the projections use biases.
        output_shape: The output's shape besides the batch and query axes;
            defaults to the query's last dimension.
        attention_axes: Axes over which attention is applied; `None` means all
            axes but batch, heads and features.
        sliding_window: Optional positive integer: each query attends only to
            keys within `sliding_window - 1` positions of it.
        flash_attention: Accepted as Keras accepts it; the TensorFlow backend
            has no flash attention, so `True` raises where Keras's raises.
        kernel_initializer, bias_initializer, kernel_regularizer,
        bias_regularizer, activity_regularizer, kernel_constraint,
        bias_constraint: The projections' options.
        use_gate: Whether to gate the attention's output with a sigmoid
            projection of the query.
        seed: Optional integer seed of the attention dropout.

    Call arguments:
        query: `(B, T, dim)`; value: `(B, S, dim)`; key: optional `(B, S, dim)`,
        defaults to `value`; attention_mask: boolean `(B, T, S)`;
        return_attention_scores: also return the attention weights
        `(B, num_heads, T, S)`; training: whether dropout is applied;
        use_causal_mask: mask the keys after each query.
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        dropout=0.0,
        use_bias=True,
        output_shape=None,
        attention_axes=None,
        sliding_window=None,
        flash_attention=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        use_gate=False,
        seed=None,
        **kwargs,
    ):
        _positive_int_or_error("num_heads", num_heads)
        _positive_int_or_error("key_dim", key_dim)
        if value_dim is not None:
            _positive_int_or_error("value_dim", value_dim, "a positive integer or `None`")
        super().__init__(**kwargs)
        self.supports_masking = True
        self._num_heads = num_heads
        self._key_dim = key_dim
        self._value_dim = value_dim if value_dim else key_dim
        self._dropout = dropout
        self._use_bias = use_bias
        self._use_gate = use_gate
        if output_shape:
            if isinstance(output_shape, int):
                output_shape = (output_shape,)
            try:
                output_shape = tuple(output_shape)
            except TypeError:
                raise ValueError(
                    f"Invalid `output_shape`: {output_shape}. When specified, the `output_shape` should be of "
                    "type tuple, list, or int."
                ) from None
        self._output_shape = output_shape
        self._flash_attention = flash_attention or is_flash_attention_enabled()
        set_weight_options(
            self,
            _kernel=(kernel_initializer, kernel_regularizer, kernel_constraint),
            _bias=(bias_initializer, bias_regularizer, bias_constraint),
        )
        self._activity_regularizer = keras.regularizers.get(activity_regularizer)
        if isinstance(attention_axes, int):
            attention_axes = (attention_axes,)
        elif attention_axes and not isinstance(attention_axes, (list, tuple)):
            raise ValueError(
                f"`attention_axes` must be an int, list, or tuple.Received: attention_axes={attention_axes}"
            )
        self._attention_axes = attention_axes
        if sliding_window is not None and (not isinstance(sliding_window, int) or sliding_window <= 0):
            raise ValueError(
                f"`sliding_window` must be `None` or a positive integer. Received: sliding_window={sliding_window}"
            )
        self._sliding_window = sliding_window
        self.seed = seed
        self._inverse_sqrt_key_dim = 1.0 / math.sqrt(float(self._key_dim))
        if self._flash_attention and self._dropout > 0.0:
            raise ValueError(
                "Dropout is not supported when flash attention is enabled. "
                "Please set dropout to 0.0 to use flash attention."
            )

    num_heads = property(lambda self: self._num_heads)
    key_dim = property(lambda self: self._key_dim)
    value_dim = property(lambda self: self._value_dim)
    dropout = property(lambda self: self._dropout)
    use_bias = property(lambda self: self._use_bias)
    attention_axes = property(lambda self: self._attention_axes)
    query_dense = property(lambda self: self._query_dense)
    key_dense = property(lambda self: self._key_dense)
    value_dense = property(lambda self: self._value_dense)
    output_dense = property(lambda self: self._output_dense)

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self._num_heads,
            "key_dim": self._key_dim,
            "value_dim": self._value_dim,
            "dropout": self._dropout,
            "use_bias": self._use_bias,
            "use_gate": self._use_gate,
            "output_shape": self._output_shape,
            "attention_axes": self._attention_axes,
            "sliding_window": self._sliding_window,
            # The projections' options, under Keras's names (kept as `_kernel_initializer`, ...).
            **{name[1:]: value for name, value in weight_options_config(self, "_kernel", "_bias").items()},
            "activity_regularizer": keras.regularizers.serialize(self._activity_regularizer),
            "seed": self.seed,
        }

    # --- build: the four (five) projections, as Keras builds them -------------------

    def build(self, query_shape, value_shape, key_shape=None):
        """Builds the `query`, `key`, (`gate`,) `value` and `attention_output` projections and the attention.

        Args:
            query_shape: Shape of the `query` tensor.
            value_shape: Shape of the `value` tensor.
            key_shape: Optional shape of the `key` tensor (defaults to `value_shape`).
        """
        key_shape = value_shape if key_shape is None else key_shape
        if value_shape[1:-1] != key_shape[1:-1]:
            raise ValueError(
                "All dimensions of `value` and `key`, except the last one, must be equal. "
                f"Received: value_shape={value_shape} and key_shape={key_shape}"
            )
        query_rank = len(query_shape)
        self._query_dense = self._projection(query_rank, self._key_dim, "query", query_shape)
        self._key_dense = self._projection(len(key_shape), self._key_dim, "key", key_shape)
        if self._use_gate:
            self._gate_dense = self._projection(query_rank, self._value_dim, "gate", query_shape, activation="sigmoid")
        self._value_dense = self._projection(len(value_shape), self._value_dim, "value", value_shape)
        self._build_attention(query_rank + 1)
        self._output_dense = self._make_output_dense(query_shape, self._get_common_kwargs_for_sublayer(),
                                                     "attention_output")
        output_dense_input_shape = list(self._query_dense.compute_output_shape(query_shape))
        output_dense_input_shape[-1] = self._value_dim
        self._output_dense.build(tuple(output_dense_input_shape))

    def _projection(self, rank, head_dim, name, shape, activation=None):
        """An EinsumDense from (B, ..., dim) to (B, ..., num_heads, head_dim), built on `shape`."""
        equation, bias_axes, output_rank = _build_proj_equation(rank - 1, bound_dims=1, output_dims=2)
        layer = EinsumDense(
            equation,
            output_shape=_get_output_shape(output_rank - 1, [self._num_heads, head_dim]),
            bias_axes=bias_axes if self._use_bias else None,
            activation=activation,
            name=name,
            **self._get_common_kwargs_for_sublayer(),
        )
        layer.build(shape)
        return layer

    def _get_common_kwargs_for_sublayer(self):
        """The projections' options; each gets its own initializer instances (else the same values, as Keras says)."""
        def fresh(initializer):
            return initializer.__class__.from_config(initializer.get_config())

        return dict(
            kernel_regularizer=self._kernel_regularizer,
            bias_regularizer=self._bias_regularizer,
            activity_regularizer=self._activity_regularizer,
            kernel_constraint=self._kernel_constraint,
            bias_constraint=self._bias_constraint,
            dtype=self.dtype_policy,
            kernel_initializer=fresh(self._kernel_initializer),
            bias_initializer=fresh(self._bias_initializer),
        )

    def _make_output_dense(self, query_shape, common_kwargs, name=None):
        """The output projection, (B, T, num_heads, value_dim) -> (B, T) + output_shape."""
        output_shape = self._output_shape if self._output_shape else [query_shape[-1]]
        equation, bias_axes, output_rank = _build_proj_equation(
            len(query_shape) - 1, bound_dims=2, output_dims=len(output_shape)
        )
        return EinsumDense(
            equation,
            output_shape=_get_output_shape(output_rank - 1, output_shape),
            bias_axes=bias_axes if self._use_bias else None,
            name=name,
            **common_kwargs,
        )

    def _build_attention(self, rank):
        """The attention's equations, softmax axes and dropout, for projected tensors of `rank`."""
        if self._attention_axes is None:
            self._attention_axes = tuple(range(1, rank - 2))
        else:
            self._attention_axes = tuple(axis if axis >= 0 else (rank - 1) + axis for axis in self._attention_axes)
        self._dot_product_equation, self._combine_equation, scores_rank = _build_attention_equation(
            rank, attn_axes=self._attention_axes
        )
        self._norm_axes = tuple(range(scores_rank - len(self._attention_axes), scores_rank))
        # Keras's dropout sublayer, kept for its seed generator: the mask is drawn
        # as Keras's Dropout draws it, and applied inside the attention op.
        self._dropout_layer = Dropout(rate=self._dropout, dtype=self.dtype_policy, seed=self.seed)
        self._ops = {
            (zero_masked, scores): attention_op(self._dot_product_equation, self._combine_equation,
                                                self._norm_axes, self._inverse_sqrt_key_dim, zero_masked, scores)
            for zero_masked in (False, True) for scores in (False, True)
        }

    # --- call ------------------------------------------------------------------

    def call(
        self,
        query,
        value,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        return_attention_scores=False,
        training=None,
        use_causal_mask=False,
    ):
        if key is None:
            key = value
        # As Keras: the masks are handled here, and taken off the inputs.
        query_mask = get_keras_mask(query)
        for x in (query, value, key):
            set_keras_mask(x, None)
        attention_mask = self._compute_attention_mask(
            query, value, query_mask=query_mask, value_mask=value_mask, key_mask=key_mask,
            attention_mask=attention_mask, use_causal_mask=use_causal_mask,
        )
        if self._use_gate:
            gate = self._gate_dense(query)
        query = self._query_dense(query)  # (B, T, N, H)
        key = self._key_dense(key)  # (B, S, N, H)
        value = self._value_dense(value)  # (B, S, N, H)
        attention_output, attention_scores = self._compute_attention(
            query, key, value, attention_mask, training, return_attention_scores
        )
        if self._use_gate:
            attention_output = _gated(attention_output, gate)
        attention_output = self._output_dense(attention_output)
        if query_mask is not None:
            set_keras_mask(attention_output, query_mask)
        if return_attention_scores:
            return attention_output, attention_scores
        return attention_output

    def _compute_attention(self, query, key, value, attention_mask=None, training=None,
                           return_attention_scores=False, use_causal_mask=False):
        """The attention op on the projected heads: (output (B, T, N, H), scores (B, N, T, S)).

        Keras takes a fused path (no scores zeroed where masked) unless there is
        dropout, scores are returned, or the heads are not 4-D; the op follows it.
        `use_causal_mask` ANDs the causal mask into `attention_mask` (`call`
        has already done so in `attention_mask`), as Keras's does.
        """
        if self._flash_attention and return_attention_scores:
            raise ValueError(
                "Returning attention scores is not supported when flash attention is enabled. Please disable "
                "flash attention to access attention scores."
            )
        fused = not (self._dropout > 0.0 or return_attention_scores or len(query.shape) != 4)
        if fused and self._flash_attention:
            raise ValueError("Flash attention is not supported in tensorflow backend.")
        if use_causal_mask:
            causal = self._compute_causal_mask(query, value)
            attention_mask = causal if attention_mask is None else tf.cast(attention_mask, tf.bool) & causal
        mask = None
        if attention_mask is not None:
            mask = tf.cast(attention_mask, tf.bool)
            expansion_axis = -len(self._attention_axes) * 2 - 1
            for _ in range(len(query.shape) - len(mask.shape)):
                mask = tf.expand_dims(mask, axis=expansion_axis)
        op = self._ops[not fused, bool(return_attention_scores)]
        shape = self._scores_shape(query, key)
        keep = None
        if training and self._dropout > 0.0:
            keep = keras.random.dropout(tf.ones(shape, query.dtype), self._dropout,
                                        seed=self._dropout_layer.seed_generator)
        if return_attention_scores:
            return op(query, key, value, mask, keep)
        return op(query, key, value, mask, keep), None

    def _scores_shape(self, query, key):
        """The scores' shape, (<batch dims>, heads, <query attention dims>, <key attention dims>)."""
        rank = len(query.shape)
        q, k = tf.shape(query), tf.shape(key)
        batch = [q[i] for i in range(rank) if i not in self._attention_axes and i != rank - 1]
        return tf.stack(batch + [q[i] for i in self._attention_axes] + [k[i] for i in self._attention_axes])

    def _compute_attention_mask(self, query, value, query_mask=None, value_mask=None, key_mask=None,
                                attention_mask=None, use_causal_mask=False):
        """Keras's mask (B, T, S): the query's (B, T, 1), value's and key's (B, 1, S), causal and window (1, T, S), ANDed."""
        auto_mask = None

        def both(mask):
            return mask if auto_mask is None else auto_mask & mask

        if query_mask is not None:
            auto_mask = tf.expand_dims(tf.cast(query_mask, tf.bool), -1)
        if value_mask is not None:
            auto_mask = both(tf.expand_dims(tf.cast(value_mask, tf.bool), -2))
        if key_mask is not None:
            auto_mask = both(tf.expand_dims(tf.cast(key_mask, tf.bool), -2))
        if use_causal_mask:
            auto_mask = both(self._compute_causal_mask(query, value))
        if self._sliding_window is not None:
            auto_mask = both(self._compute_sliding_window_mask(query, value))
        if attention_mask is not None:
            attention_mask = tf.cast(attention_mask, tf.bool)
        if auto_mask is not None:
            attention_mask = auto_mask if attention_mask is None else attention_mask & auto_mask
        return attention_mask

    def _compute_causal_mask(self, query, value=None):
        """(1, T, S), True where the key's position is at most the query's."""
        t = tf.shape(query)[1]
        s = t if value is None else tf.shape(value)[1]
        return (tf.range(t)[:, None] >= tf.range(s)[None, :])[None]

    def _compute_sliding_window_mask(self, query, value=None):
        """(1, T, S), True where query and key positions are less than `sliding_window` apart."""
        t = tf.shape(query)[1]
        s = t if value is None else tf.shape(value)[1]
        return (tf.abs(tf.range(t)[:, None] - tf.range(s)[None, :]) < self._sliding_window)[None]

    def compute_output_shape(self, query_shape, value_shape, key_shape=None):
        query_shape, value_shape = tuple(query_shape), tuple(value_shape)
        key_shape = value_shape if key_shape is None else tuple(key_shape)
        if value_shape[1:-1] != key_shape[1:-1]:
            raise ValueError(
                "All dimensions of `value` and `key`, except the last one, must be equal. "
                f"Received: value_shape={value_shape} and key_shape={key_shape}"
            )
        if self._output_shape:
            query_shape = query_shape[:-1] + self._output_shape
        return query_shape

    def compute_output_spec(self, query, value, key=None, query_mask=None, value_mask=None, key_mask=None,
                            attention_mask=None, return_attention_scores=False, training=None,
                            use_causal_mask=False):
        key_shape = None if key is None else key.shape
        output_spec = keras.KerasTensor(
            self.compute_output_shape(query.shape, value.shape, key_shape), dtype=self.compute_dtype
        )
        if return_attention_scores:
            # NOTE: as Keras 3.15, whose symbolic scores have the query's length on both key axes.
            length = query.shape[1]
            scores = keras.KerasTensor((query.shape[0], self.num_heads, length, length), dtype=self.compute_dtype)
            return output_spec, scores
        return output_spec
