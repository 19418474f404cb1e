"""Dense: y = activation(x @ kernel + bias), with its backward written out."""

from typing import NamedTuple

import keras
import tensorflow as tf

from keras_bp._validation import check_positive_int, reject_keras_only_options
from keras_bp.core import manual_gradient
from keras_bp.layers._kernel import KernelLayer


class DenseSaved(NamedTuple):
    """What Dense's forward saves for its backward."""

    x: tf.Tensor  # the input, for dW = x^T dz
    kernel: tf.Tensor  # W, for dx = dz W^T
    has_bias: bool  # whether b was given (else db is None)
    activation_saved: object  # what the activation's backward needs


def dense_forward(activation, x, kernel, bias):
    """Forward of Dense with a fused activation; `bias` is None without one.

        z = x @ W + b          (..., units)
        y = f(z)               (..., units)

    Saves x and W for the matrix products of the backward, and what the
    activation's backward needs (its output, for sigmoid, tanh, softmax).
    """
    z = _matmul(x, kernel)
    if bias is not None:
        z = z + bias
    y, activation_saved = activation.forward(z)
    return y, DenseSaved(x, kernel, bias is not None, activation_saved)


def dense_backward(activation, saved, dy):
    """Backward of Dense.

    With dy = dL/dy (..., units):

        dz = dy * f'(z)                    (..., units)   activation's backward
        dx = dz @ W^T                      (..., in)
        dW = sum over rows of x^T dz       (in, units)    leading axes flattened
        db = sum over rows of dz           (units,)       None without a bias
    """
    dz = activation.backward(saved.activation_saved, dy)
    dx = _matmul(dz, saved.kernel, transpose_b=True)
    x_rows, dz_rows = _rows(saved.x), _rows(dz)
    dkernel = tf.matmul(x_rows, dz_rows, transpose_a=True)
    dbias = tf.reduce_sum(dz_rows, axis=0) if saved.has_bias else None
    return dx, dkernel, dbias


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


def _dense_op(activation):
    def forward(x, kernel, bias):
        return dense_forward(activation, x, kernel, bias)

    def backward(saved, dy):
        return dense_backward(activation, saved, dy)

    return manual_gradient(forward, backward, name=f"dense_{activation.name}")


@keras.saving.register_keras_serializable(package="keras_bp")
class Dense(KernelLayer):
    """Densely connected layer with a hand-derived backward pass.

    Drop-in for `keras.layers.Dense`: same arguments, defaults, weights
    (`kernel` of shape `(input_dim, units)`, then `bias` of shape `(units,)`)
    and outputs. The activation's derivative is fused into Dense's backward
    (see `dense_backward`), except softmax's and sigmoid's: those run as an
    op of their own after the linear part, and their output carries the
    logits (`_keras_logits`) so that a cross-entropy after it computes from
    them, as after Keras's Dense. LoRA and quantization are not supported.

    Args:
        units: Positive integer, dimensionality of the output space.
        activation: Activation name or `keras.activations` function (see
            `keras_bp.activations.SUPPORTED`). `None` means linear.
        use_bias: Whether the layer uses a bias vector.
        kernel_initializer: Initializer for the kernel weights matrix.
        bias_initializer: Initializer for the bias vector.
        kernel_regularizer: Regularizer applied to the kernel.
        bias_regularizer: Regularizer applied to the bias.
        activity_regularizer: Regularizer applied to the output.
        kernel_constraint: Constraint applied to the kernel.
        bias_constraint: Constraint applied to the bias.

    Input shape:
        N-D tensor `(batch_size, ..., input_dim)`.

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
        **kwargs,
    ):
        reject_keras_only_options(self, kwargs, ("lora_rank", "lora_alpha", "quantization_config"))
        super().__init__(
            activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
            activity_regularizer, kernel_constraint, bias_constraint, **kwargs,
        )
        self.units = check_positive_int("units", units)
        self.input_spec = keras.layers.InputSpec(min_ndim=2)
        self.supports_masking = True
        self._op = _dense_op(self._fused_activation)

    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(
                "The last dimension of the input to Dense must be known, "
                f"received: input_shape={tuple(input_shape)}"
            )
        self._add_kernel_and_bias((input_dim, self.units), (self.units,))
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: input_dim})

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {**super().get_config(), "units": self.units, **self._kernel_options_config()}
