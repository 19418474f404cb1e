"""Dense: y = activation(x W + s (x A) B + b), LoRA's term s (x A) B optional, with its backward written out."""

from typing import NamedTuple

import keras
import tensorflow as tf

from keras_bp._validation import check_positive_int, reject_keras_only_options
from keras_bp.core import manual_gradient
from keras_bp.layers._kernel import KernelLayer

# --- the input's products: dense (..., in) or sparse (rows, in) ----------------


class DenseRows:
    """A dense input x (..., in) in the three products Dense's math takes of it."""

    def __init__(self, x):
        self.x = x

    def times(self, m):
        """x M    (..., out)"""
        return _matmul(self.x, m)

    def transpose_times(self, g):
        """x^T G  (in, out), the leading axes of x and G flattened to rows"""
        return tf.matmul(_rows(self.x), _rows(g), transpose_a=True)

    def gradient(self, g, m):
        """dL/dx of x M, given G = dL/d(x M):  G M^T  (..., in)"""
        return _matmul(g, m, transpose_b=True)


class SparseRows:
    """A sparse input x (rows, in), as a tf.SparseTensor's parts, in the same three products.

    With the nonzeros k at (i_k, j_k), of values v_k:

        (x M)[i, :]    = sum over k with i_k = i of v_k M[j_k, :]           sparse_dense_matmul
        (x^T G)[j, :]  = sum over k with j_k = j of v_k G[i_k, :]           tf.IndexedSlices, rows j_k
        dL/dv_k        = <G[i_k, :], M[j_k, :]>   (G = dL/d(x M))           one number per nonzero

    so x stays sparse forward and backward, as in Keras's matmul, and the
    kernel's gradient only touches the rows x uses.
    """

    def __init__(self, indices, values, dense_shape):
        self.indices, self.values, self.dense_shape = indices, values, dense_shape

    def times(self, m):
        return tf.sparse.sparse_dense_matmul(tf.SparseTensor(self.indices, self.values, self.dense_shape), m)

    def transpose_times(self, g):
        rows, cols = self.indices[:, 0], self.indices[:, 1]
        shape = tf.stack([self.dense_shape[1], tf.shape(g, out_type=tf.int64)[1]])
        return tf.IndexedSlices(self.values[:, tf.newaxis] * tf.gather(g, rows), cols, dense_shape=shape)

    def gradient(self, g, m):
        rows, cols = self.indices[:, 0], self.indices[:, 1]
        return tf.reduce_sum(tf.gather(g, rows) * tf.gather(m, cols), axis=-1)


def _rows(x):
    """(..., n) -> (rows, n); a (batch, n) tensor as it is (no shape ops)."""
    return x if x.shape.rank == 2 else tf.reshape(x, (-1, tf.shape(x)[-1]))


def _matmul(x, kernel, transpose_b=False):
    """x (..., in) @ kernel (in, out), or @ kernel^T for a kernel (out, in)."""
    if x.shape.rank == 2:
        return tf.matmul(x, kernel, transpose_b=transpose_b)
    # NOTE: (..., in) inputs are flattened to rows; each output element is the
    # same dot product Keras computes.
    rows = tf.matmul(_rows(x), kernel, transpose_b=transpose_b)
    out = tf.shape(kernel)[:1] if transpose_b else tf.shape(kernel)[-1:]
    return tf.reshape(rows, tf.concat([tf.shape(x)[:-1], out], 0))


# --- the pair -------------------------------------------------------------------


class DenseSaved(NamedTuple):
    """What Dense's forward saves for its backward."""

    x: object  # the input (DenseRows or SparseRows), for dW = x^T dz, dA = x^T du and dx
    kernel: tf.Tensor  # W, for dx = dz W^T
    has_bias: bool  # whether b was given (else db is None)
    lora_a: object  # A, for dx's du A^T; None without LoRA
    lora_b: object  # B, for du = s dz B^T; None without LoRA
    u: object  # u = x A, for dB = s u^T dz; None without LoRA
    activation_saved: object  # what the activation's backward needs


def dense_forward(activation, lora_scale, x, kernel, bias, lora_a, lora_b):
    """Forward of Dense with a fused activation and, when `lora_a` and `lora_b` are given, LoRA.

        u = x A                    (..., r)        LoRA only
        z = x W + s u B + b        (..., units)    s = lora_scale = lora_alpha / lora_rank
        y = f(z)                   (..., units)

    x (..., in) is a DenseRows or a SparseRows; W (in, units) is `kernel`,
    A (in, r) `lora_a`, B (r, units) `lora_b`, b (units,) `bias` (None
    without one). Without LoRA, z = x W + b. The merged kernel W + s A B is
    never formed: u is small, and is what dB needs.
    """
    z = x.times(kernel)
    u = None
    if lora_a is not None:
        u = x.times(lora_a)
        z = z + lora_scale * _matmul(u, lora_b)
    if bias is not None:
        z = z + bias
    y, activation_saved = activation.forward(z)
    return y, DenseSaved(x, kernel, bias is not None, lora_a, lora_b, u, activation_saved)


def dense_backward(activation, lora_scale, saved, dy):
    """Backward of Dense: (dx, dW, db, dA, dB).

    With dy = dL/dy (..., units), and the leading axes flattened to rows in
    each x^T and u^T product:

        dz = dy * f'(z)                    (..., units)   activation's backward
        dW = x^T dz                        (in, units)
        db = sum over rows of dz           (units,)       None without a bias
        dx = dz W^T                        (..., in)      without LoRA
    and with LoRA:
        du = s dz B^T                      (..., r)
        dA = x^T du                        (in, r)
        dB = s u^T dz                      (r, units)
        dx = dz W^T + du A^T               (..., in)

    For a sparse x, dx is the gradient of its nonzero values (see SparseRows).
    NOTE: LoRA freezes W, yet dW is returned, so that the gradient is true
    for every input; where nothing asks for it (a traced training step with
    W frozen), graph pruning drops its matmul.
    """
    dz = activation.backward(saved.activation_saved, dy)
    x = saved.x
    dkernel = x.transpose_times(dz)
    dbias = tf.reduce_sum(_rows(dz), axis=0) if saved.has_bias else None
    dx = x.gradient(dz, saved.kernel)
    if saved.lora_a is None:
        return dx, dkernel, dbias, None, None
    du = lora_scale * _matmul(dz, saved.lora_b, transpose_b=True)
    dlora_a = x.transpose_times(du)
    dlora_b = lora_scale * tf.matmul(_rows(saved.u), _rows(dz), transpose_a=True)
    dx = dx + x.gradient(du, saved.lora_a)
    return dx, dkernel, dbias, dlora_a, dlora_b


def dense_ops(activation, lora_scale):
    """Dense's two ops, `(x, W, b, A, B)` and `(indices, values, dense_shape, W, b, A, B)` for a sparse x.

    Both run dense_forward and dense_backward; `activation` is fused in and
    `lora_scale` is s (None without LoRA). Absent b, A, B are None.
    """

    def forward(x, kernel, bias, lora_a, lora_b):
        return dense_forward(activation, lora_scale, DenseRows(x), kernel, bias, lora_a, lora_b)

    def sparse_forward(indices, values, dense_shape, kernel, bias, lora_a, lora_b):
        x = SparseRows(indices, values, dense_shape)
        return dense_forward(activation, lora_scale, x, kernel, bias, lora_a, lora_b)

    def backward(saved, dy):
        return dense_backward(activation, lora_scale, saved, dy)

    def sparse_backward(saved, dy):
        dvalues, *weight_grads = dense_backward(activation, lora_scale, saved, dy)
        return (None, dvalues, None, *weight_grads)  # the indices and shape get none

    name = f"dense_{activation.name}" + ("_lora" if lora_scale is not None else "")
    op = manual_gradient(forward, backward, name=name)
    sparse_op = manual_gradient(sparse_forward, sparse_backward, name=f"sparse_{name}")
    return op, sparse_op


# --- the layer ------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="keras_bp")
class Dense(KernelLayer):
    """Densely connected layer with a hand-derived backward pass.

    Drop-in for `keras.layers.Dense`: same arguments, defaults, weights
    (`kernel` of shape `(input_dim, units)`, then `bias` of shape `(units,)`,
    then with LoRA `lora_kernel_a` `(input_dim, lora_rank)` and
    `lora_kernel_b` `(lora_rank, units)`) and outputs. The activation's
    derivative is fused into Dense's backward (see `dense_backward`), except
    softmax's and sigmoid's: those run as an op of their own after the linear
    part, and their output carries the logits (`_keras_logits`) so that a
    cross-entropy after it computes from them, as after Keras's Dense.
    Integer inputs are computed in the compute dtype, and a `tf.SparseTensor`
    input stays sparse (see `SparseRows`), as in Keras's Dense.

    LoRA (`lora_rank`, or `enable_lora` on a built layer) freezes the kernel
    W and trains A and B in x W + (lora_alpha / lora_rank) (x A) B, with the
    backward in `dense_backward`; `kernel` reads W + (lora_alpha / lora_rank)
    A B, and saving stores that merged kernel, as Keras does (see
    `keras_bp.layers._lora`). Quantization (`quantize`, int8/int4/float8
    dtype policies, `quantization_config`) is not supported: use
    `keras.layers.Dense` for quantized inference.

    Args:
        units: Positive integer, dimensionality of the output space.
        activation: Activation name or `keras.activations` function (see
            `keras_bp.activations.SUPPORTED`). `None` means linear.
        use_bias: Whether the layer uses a bias vector.
        kernel_initializer: Initializer for the kernel weights matrix.
        bias_initializer: Initializer for the bias vector.
        kernel_regularizer: Regularizer applied to the kernel (and to the
            LoRA adapters).
        bias_regularizer: Regularizer applied to the bias.
        activity_regularizer: Regularizer applied to the output.
        kernel_constraint: Constraint applied to the kernel (incompatible
            with LoRA).
        bias_constraint: Constraint applied to the bias.
        lora_rank: Optional integer; when set (and not 0), `build` enables
            LoRA with this rank.
        lora_alpha: Optional number; LoRA's update is scaled by
            `lora_alpha / lora_rank`. Defaults to `lora_rank`.

    Input shape:
        N-D tensor `(batch_size, ..., input_dim)`, dense or `tf.SparseTensor`.

    Output shape:
        N-D tensor `(batch_size, ..., units)`.
    """

    def __init__(
        self,
        units,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        lora_rank=None,
        lora_alpha=None,
        **kwargs,
    ):
        reject_keras_only_options(self, kwargs, ("quantization_config",))
        super().__init__(
            activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
            activity_regularizer, kernel_constraint, bias_constraint, lora_rank, lora_alpha, **kwargs,
        )
        self.units = check_positive_int("units", units)
        self.input_spec = keras.layers.InputSpec(min_ndim=2)
        self.supports_masking = True
        self._make_ops()

    def _make_ops(self):
        self._op, self._sparse_op = dense_ops(self._fused_activation, self._lora_scale)

    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(
                "The last dimension of the input to Dense must be known, "
                f"received: input_shape={tuple(input_shape)}"
            )
        self._add_kernel_and_bias((input_dim, self.units), (self.units,))
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: input_dim})

    def _apply_op(self, inputs, kernel, bias, lora_a, lora_b):
        if not isinstance(inputs, tf.SparseTensor):
            return self._op(inputs, kernel, bias, lora_a, lora_b)
        x = inputs if inputs.shape.rank == 2 else tf.sparse.reshape(inputs, (-1, inputs.shape[-1]))
        values = tf.cast(x.values, kernel.dtype)
        y = self._sparse_op(x.indices, values, x.dense_shape, kernel, bias, lora_a, lora_b)
        if inputs.shape.rank == 2:
            return y
        return tf.reshape(y, tf.concat([tf.cast(inputs.dense_shape[:-1], tf.int32), [self.units]], 0))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {**super().get_config(), "units": self.units, **self._kernel_options_config(), **self._lora_config()}
