"""Embedding: a table lookup whose backward is a scatter-add of rows, as tf.IndexedSlices."""

import keras
import tensorflow as tf

from keras_bp._validation import check_positive_int, reject_keras_only_options
from keras_bp.core import manual_gradient
from keras_bp.layers._weight_options import add_weight_with_options, set_weight_options, weight_options_config


def embedding_forward(ids, embeddings):
    """Forward of Embedding.

        y[..., :] = E[ids[...], :]        (..., output_dim)

    ids may be negative, counted from the end as Keras's `ops.take` does.
    Saves the (non-negative) ids and the table's shape, not the table.
    """
    ids = tf.where(ids < 0, ids + tf.cast(tf.shape(embeddings)[0], ids.dtype), ids)
    return tf.gather(embeddings, ids), (ids, tf.shape(embeddings))


def embedding_backward(saved, dy):
    """Backward of Embedding.

    Each looked-up row receives its upstream row; a row looked up several
    times receives their sum:

        dL/dE[j, :] = sum over positions p with ids[p] = j of dy[p, :]   (input_dim, output_dim)

    Returned unsummed as tf.IndexedSlices(values=dy rows (N, output_dim),
    indices=ids flattened (N,), dense_shape=E's shape), which optimizers
    apply as sparse updates and TensorFlow sums when it densifies. The ids
    get no gradient.
    """
    ids, table_shape = saved
    rows = tf.reshape(dy, tf.stack([-1, table_shape[1]]))
    return None, tf.IndexedSlices(rows, tf.reshape(ids, (-1,)), dense_shape=table_shape)


_embedding_op = manual_gradient(embedding_forward, embedding_backward, name="embedding")


@keras.saving.register_keras_serializable(package="keras_bp")
class Embedding(keras.layers.Layer):
    """Turns non-negative integers (indices) into dense vectors of fixed size.

    Drop-in for `keras.layers.Embedding`: same arguments, the one weight
    `embeddings` of shape `(input_dim, output_dim)`, same outputs. Its gradient
    is a `tf.IndexedSlices` (see `embedding_backward`). LoRA and quantization
    are not supported.

    Args:
        input_dim: Positive integer, size of the vocabulary (largest index + 1).
        output_dim: Positive integer, dimension of the dense embedding.
        embeddings_initializer: Initializer for the `embeddings` matrix.
        embeddings_regularizer: Regularizer applied to the `embeddings` matrix.
        embeddings_constraint: Constraint applied to the `embeddings` matrix.
        mask_zero: Whether index 0 is padding to be masked out (then
            `compute_mask` gives `ids != 0` to the layers downstream, and
            `input_dim` should be vocabulary size + 1).
        weights: Optional initial table, as Keras accepts it.
        activity_regularizer: Regularizer applied to the output.

    Input shape:
        N-D integer tensor `(batch_size, ...)`.

    Output shape:
        `(batch_size, ..., output_dim)`.
    """

    def __init__(
        self,
        input_dim,
        output_dim,
        embeddings_initializer="uniform",
        embeddings_regularizer=None,
        embeddings_constraint=None,
        mask_zero=False,
        weights=None,
        **kwargs,
    ):
        reject_keras_only_options(self, kwargs, ("lora_rank", "lora_alpha", "quantization_config"))
        # Keras accepts and ignores the deprecated input_length.
        kwargs.pop("input_length", None)
        super().__init__(**kwargs)
        self.input_dim = check_positive_int("input_dim", input_dim)
        self.output_dim = check_positive_int("output_dim", output_dim)
        set_weight_options(self, embeddings=(embeddings_initializer, embeddings_regularizer, embeddings_constraint))
        self.mask_zero = bool(mask_zero)
        self.supports_masking = self.mask_zero
        # The table stays in the variable dtype (as Keras's): the output is cast.
        self.autocast = False
        if weights is not None:
            self.build()
            if not (isinstance(weights, list) and len(weights) == 1):
                weights = [weights]
            self.set_weights(weights)

    def build(self, input_shape=None):
        if self.built:
            return
        self.embeddings = add_weight_with_options(self, "embeddings", (self.input_dim, self.output_dim))
        self.built = True

    def call(self, inputs):
        if inputs.dtype not in (tf.int32, tf.int64):
            inputs = tf.cast(inputs, tf.int32)
        # Trap 1 (docs/traps.md): read the table here, outside the custom gradient.
        outputs = _embedding_op(inputs, tf.convert_to_tensor(self.embeddings))
        return tf.cast(outputs, self.compute_dtype)

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return None
        # keras.ops: compute_mask also runs on symbolic KerasTensors.
        return keras.ops.not_equal(inputs, 0)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.output_dim)

    def get_config(self):
        base_config = super().get_config()
        config = {
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            **weight_options_config(self, "embeddings", activity_regularizer=True),
            "mask_zero": self.mask_zero,
        }
        return {**base_config, **config}
