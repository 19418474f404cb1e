"""Embedding: a table lookup (LoRA's low-rank term optional) whose backward is a scatter-add of rows."""

from typing import NamedTuple

import keras
import tensorflow as tf

from keras_bp._validation import check_positive_int, reject_keras_only_options
from keras_bp.core import manual_gradient
from keras_bp.layers._lora import LoraLayer
from keras_bp.layers._quantization import NoQuantization
from keras_bp.layers._weight_options import add_weight_with_options, set_weight_options, weight_options_config


class EmbeddingSaved(NamedTuple):
    """What Embedding's forward saves for its backward (never the table itself)."""

    ids: tf.Tensor  # the looked-up rows, negatives counted from the end
    table_shape: tf.Tensor  # E's shape (input_dim, output_dim)
    a_rows: object  # A[ids] (..., r), for dB; None without LoRA
    lora_b: object  # B (r, output_dim), for dA; None without LoRA


def embedding_forward(lora_scale, ids, embeddings, lora_a, lora_b):
    """Forward of Embedding; `lora_a`, `lora_b` None without LoRA.

        y[p, :] = E[ids[p], :] + s A[ids[p], :] B        (..., output_dim)

    E (input_dim, output_dim) is `embeddings`, A (input_dim, r) `lora_a`,
    B (r, output_dim) `lora_b`, s = lora_scale = lora_alpha / lora_rank;
    without LoRA, y[p, :] = E[ids[p], :]. Only the looked-up rows of A are
    multiplied by B: the merged table E + s A B is never formed.
    ids may be negative, counted from the end as Keras's `ops.take` does.
    """
    ids = tf.where(ids < 0, ids + tf.cast(tf.shape(embeddings)[0], ids.dtype), ids)
    y = tf.gather(embeddings, ids)
    a_rows = None
    if lora_a is not None:
        a_rows = tf.gather(lora_a, ids)
        y = y + lora_scale * tf.tensordot(a_rows, lora_b, axes=1)
    return y, EmbeddingSaved(ids, tf.shape(embeddings), a_rows, lora_b)


def embedding_backward(lora_scale, saved, dy):
    """Backward of Embedding: (None for the ids, dE, dA, dB).

    Each looked-up row receives its upstream row; a row looked up several
    times receives their sum. With the positions p flattened (N of them):

        dE[j, :] = sum over p with ids[p] = j of dy[p, :]            (input_dim, output_dim)
    and with LoRA:
        dA[j, :] = sum over p with ids[p] = j of s dy[p, :] B^T      (input_dim, r)
        dB       = s sum over p of A[ids[p], :]^T dy[p, :]           (r, output_dim)

    dE and dA are returned unsummed as tf.IndexedSlices (values: one row per
    position, indices: the ids), which optimizers apply as sparse updates and
    TensorFlow sums when it densifies.
    """
    ids = tf.reshape(saved.ids, (-1,))
    dy_rows = tf.reshape(dy, tf.stack([-1, saved.table_shape[1]]))
    dembeddings = tf.IndexedSlices(dy_rows, ids, dense_shape=saved.table_shape)
    if saved.a_rows is None:
        return None, dembeddings, None, None
    b = saved.lora_b
    a_rows = tf.reshape(saved.a_rows, tf.stack([-1, tf.shape(b)[0]]))
    a_shape = tf.stack([saved.table_shape[0], tf.shape(b)[0]])
    dlora_a = tf.IndexedSlices(lora_scale * tf.matmul(dy_rows, b, transpose_b=True), ids, dense_shape=a_shape)
    dlora_b = lora_scale * tf.matmul(a_rows, dy_rows, transpose_a=True)
    return None, dembeddings, dlora_a, dlora_b


def embedding_op(lora_scale):
    """Embedding as one manual-gradient op: (ids, E, A, B) -> y; s = `lora_scale` (None without LoRA)."""

    def forward(ids, embeddings, lora_a, lora_b):
        return embedding_forward(lora_scale, ids, embeddings, lora_a, lora_b)

    def backward(saved, dy):
        return embedding_backward(lora_scale, saved, dy)

    return manual_gradient(forward, backward, name="embedding" + ("_lora" if lora_scale is not None else ""))


def _positive_int(name, value):
    # Keras's words lead (see keras_bp._validation).
    return check_positive_int(name, value, lead=f"`{name}` must be a positive integer.")


@keras.saving.register_keras_serializable(package="keras_bp")
class Embedding(LoraLayer, NoQuantization):
    """Turns non-negative integers (indices) into dense vectors of fixed size.

    Drop-in for `keras.layers.Embedding`: same arguments, the weight
    `embeddings` of shape `(input_dim, output_dim)` (then with LoRA
    `lora_embeddings_a` `(input_dim, lora_rank)` and `lora_embeddings_b`
    `(lora_rank, output_dim)`), same outputs. Its gradients are
    `tf.IndexedSlices` (see `embedding_backward`). A `tf.SparseTensor` of ids
    is looked up as Keras does (a missing entry reads row 0), a
    `tf.RaggedTensor` gives a ragged output.

    LoRA (`lora_rank`, or `enable_lora` on a built layer) freezes the table E
    and trains A and B in E[ids] + (lora_alpha / lora_rank) A[ids] B;
    `embeddings` reads E + (lora_alpha / lora_rank) A B, and saving stores
    that merged table, as Keras does (see `keras_bp.layers._lora`).
    Quantization (`quantize`, int8/int4 dtype policies,
    `quantization_config`) is not supported: use `keras.layers.Embedding` for
    quantized inference.

    Args:
        input_dim: Positive integer, size of the vocabulary (largest index + 1).
        output_dim: Positive integer, dimension of the dense embedding.
        embeddings_initializer: Initializer for the `embeddings` matrix.
        embeddings_regularizer: Regularizer applied to the `embeddings` matrix
            (and to the LoRA adapters).
        embeddings_constraint: Constraint applied to the `embeddings` matrix
            (incompatible with LoRA).
        mask_zero: Whether index 0 is padding to be masked out (then
            `compute_mask` gives `ids != 0` to the layers downstream, and
            `input_dim` should be vocabulary size + 1).
        weights: Optional initial table, as Keras accepts it.
        lora_rank: Optional integer; when set (and not 0), `build` enables
            LoRA with this rank.
        lora_alpha: Optional number; LoRA's update is scaled by
            `lora_alpha / lora_rank`. Defaults to `lora_rank`.
        activity_regularizer: Regularizer applied to the output.

    Input shape:
        N-D integer tensor `(batch_size, ...)`: dense, sparse or ragged.

    Output shape:
        `(batch_size, ..., output_dim)`.
    """

    _lora_weight = "embeddings"
    _lora_noun = "embedding"

    def __init__(
        self,
        input_dim,
        output_dim,
        embeddings_initializer="uniform",
        embeddings_regularizer=None,
        embeddings_constraint=None,
        mask_zero=False,
        weights=None,
        lora_rank=None,
        lora_alpha=None,
        **kwargs,
    ):
        reject_keras_only_options(self, kwargs, ("quantization_config",))
        # Keras accepts and ignores the deprecated input_length.
        kwargs.pop("input_length", None)
        super().__init__(**kwargs)
        self._refuse_quantized_policy()
        self.input_dim = _positive_int("input_dim", input_dim)
        self.output_dim = _positive_int("output_dim", output_dim)
        set_weight_options(self, embeddings=(embeddings_initializer, embeddings_regularizer, embeddings_constraint))
        self.mask_zero = bool(mask_zero)
        self.supports_masking = self.mask_zero
        # The table stays in the variable dtype (as Keras's): the output is cast.
        self.autocast = False
        self._init_lora(lora_rank, lora_alpha)
        self._make_ops()
        if weights is not None:
            self.build()
            if not (isinstance(weights, list) and len(weights) == 1):
                weights = [weights]
            self.set_weights(weights)

    def _make_ops(self):
        self._op = embedding_op(self._lora_scale)

    @property
    def embeddings(self):
        """The table the layer looks up: E, or E + (lora_alpha / lora_rank) A B with LoRA on (as Keras's)."""
        return self._lora_merged()

    def build(self, input_shape=None):
        if self.built:
            return
        self._refuse_quantized_policy()  # a policy may be set between __init__ and build
        self._embeddings = add_weight_with_options(self, "embeddings", (self.input_dim, self.output_dim))
        self.built = True
        self._build_lora()

    def call(self, inputs):
        if isinstance(inputs, tf.SparseTensor):
            # Keras looks up a sparse tensor of ids with each missing entry
            # reading row 0 (safe_embedding_lookup_sparse, default_id=0): the
            # same as looking up its dense form.
            inputs = tf.sparse.to_dense(inputs)
        if isinstance(inputs, tf.RaggedTensor):
            return inputs.with_flat_values(self._lookup(inputs.flat_values))
        return self._lookup(inputs)

    def _lookup(self, ids):
        if ids.dtype not in (tf.int32, tf.int64):
            ids = tf.cast(ids, tf.int32)
        # Trap 1 (docs/traps.md): read the weights here, outside the custom gradient.
        table = tf.convert_to_tensor(self._embeddings)
        lora_a, lora_b = (
            None if v is None else tf.cast(tf.convert_to_tensor(v), table.dtype) for v in self._lora_adapters()
        )
        outputs = self._op(ids, table, lora_a, lora_b)
        return tf.cast(outputs, self.compute_dtype)

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return None
        # keras.ops: compute_mask also runs on symbolic KerasTensors.
        return keras.ops.not_equal(inputs, 0)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.output_dim)

    def compute_output_spec(self, inputs):
        # As Keras's: a ragged input gives a ragged output.
        shape = self.compute_output_shape(inputs.shape)
        return keras.KerasTensor(shape, dtype=self.compute_dtype, ragged=getattr(inputs, "ragged", False))

    def get_config(self):
        base_config = super().get_config()
        config = {
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            **weight_options_config(self, "embeddings", activity_regularizer=True),
            "mask_zero": self.mask_zero,
            **self._lora_config(),
        }
        return {**base_config, **config}
