"""EinsumDense: y = activation(einsum(equation, x, W) + b), with the einsum's backward derived for any equation.

The gradient of an einsum with respect to one operand is an einsum of the
upstream gradient with the other operand. For

    y[Y] = sum over the letters of X and W not in Y of  x[X] w[W]

(X, W, Y the subscript strings of "X,W->Y"), each x[X] is multiplied by the
w[W] that share its letters, and reaches every y[Y] that shares its letters,
so

    dL/dx[X] = sum over the letters not in X of  dy[Y] w[W]     einsum("Y,W->X")
    dL/dw[W] = sum over the letters not in W of  dy[Y] x[X]     einsum("Y,X->W")

with one case that einsum cannot write: a letter of X that is in neither W
nor Y (an axis that the forward sums x over, alone) is in neither operand of
"Y,W->X". x[X] does not depend on it: the gradient is the same for each of
its values, so `einsum_gradient` computes "Y,W->X'" over the letters X' of X
that W or Y have and broadcasts along the others. An ellipsis "..." is
spelled out as letters the equation does not use (`spelled_out`) once the
input's rank is known, so the same two rules cover it.
"""

import re
import string
from typing import NamedTuple

import keras
import tensorflow as tf

# NOTE: the shapes of the kernel, bias and output (and the errors for an
# equation or shape Keras refuses) come from Keras's own parser, so that both
# layers agree on every equation Keras accepts.
from keras.src.layers.core.einsum_dense import _analyze_einsum_string

from keras_bp import activations
from keras_bp._validation import reject_keras_only_options
from keras_bp.core import manual_gradient
from keras_bp.layers._broadcast import sum_to_shape
from keras_bp.layers._kernel import KernelLayer
from keras_bp.layers._weight_options import weight_options_config
from keras_bp.layers.conv import lora_grads, lora_product

# --- the einsum's backward, for any two-operand equation -------------------------


def spelled_out(equation, rank):
    """`equation` ("X,W->Y") with its ellipsis replaced by letters it does not use.

    `rank` is the first operand's rank; the ellipsis stands for the axes of X
    that its letters do not name, and the same axes of Y.
    """
    if "..." not in equation:
        return equation
    inputs, output = equation.split("->")
    x, w = inputs.split(",")
    unused = [c for c in string.ascii_letters if c not in equation]
    letters = "".join(unused[: rank - (len(x) - 3)])
    return f"{x.replace('...', letters)},{w.replace('...', letters)}->{output.replace('...', letters)}"


def einsum_gradient(dy, output, other, other_subscripts, subscripts, shape):
    """dL/d(operand) of y = einsum("<subscripts>,<other_subscripts>->output") (either operand order).

        dL/d operand = einsum("output,other->subscripts'")      subscripts' = the letters of
                                                                  `subscripts` in output or other
    broadcast to `shape` along the letters of `subscripts` that neither has
    (see the module docstring). The letters are the operand's axes, in order.
    """
    reached = "".join(c for c in subscripts if c in output or c in other_subscripts)
    g = ordered_einsum(dy, output, other, other_subscripts, reached)
    if reached == subscripts:
        return g
    # Summed alone in the forward: the same gradient for each of its positions.
    expanded = tf.reshape(g, [tf.shape(g)[reached.index(c)] if c in reached else 1 for c in subscripts])
    return tf.broadcast_to(expanded, shape)


def ordered_einsum(a, a_subscripts, b, b_subscripts, output):
    """einsum("a,b->output", a, b), the operands in the order that spares TensorFlow a transpose of the result.

    NOTE: TensorFlow's einsum multiplies into (batch, free letters of the
    first operand, free letters of the second) and transposes that into
    `output`; with the operand whose free letters come first in `output`
    first, that transpose is of nothing (attention's scores: 5x faster at
    T = 256 than with K first). The value is the same either way.
    """

    def first(subscripts, other):
        free = [output.index(c) for c in subscripts if c in output and c not in other]
        return min(free) if free else len(output)

    if first(b_subscripts, a_subscripts) < first(a_subscripts, b_subscripts):
        return tf.einsum(f"{b_subscripts},{a_subscripts}->{output}", b, a)
    return tf.einsum(f"{a_subscripts},{b_subscripts}->{output}", a, b)


class Subscripts(NamedTuple):
    """The three subscript strings of "x,w->y", ellipsis spelled out."""

    x: str
    w: str
    y: str

    @classmethod
    def parse(cls, equation):
        inputs, y = equation.split("->")
        x, w = inputs.split(",")
        return cls(x, w, y)


class EinsumSaved(NamedTuple):
    """What EinsumDense's forward saves for its backward."""

    subscripts: Subscripts  # the equation, spelled out for this input's rank
    x: tf.Tensor  # the input, for dW = einsum("Y,X->W")
    kernel: tf.Tensor  # W' = W (+ s A B with LoRA), for dx = einsum("Y,W->X")
    bias_shape: object  # b's shape, for db (None without a bias)
    lora_a: object  # A, for dB; None without LoRA
    lora_b: object  # B, for dA; None without LoRA
    activation_saved: object  # what the activation's backward needs


def einsum_dense_op(equation, activation, lora_scale):
    """EinsumDense as one manual-gradient op: (x, W, b, A, B) -> y.

    Forward, with "X,W->Y" = `equation` (ellipsis spelled out for x's rank)
    and s = lora_scale = lora_alpha / lora_rank:
        W' = W + s A B                 W's shape        LoRA only (A B over the rank)
        z  = einsum("X,W->Y", x, W') + b                b broadcast from the right
        y  = f(z)
    Backward, with dy = dL/dy:
        dz = dy * f'(z)                                  activation's backward
        dx = einsum("Y,W->X", dz, W')                    (x's shape)  see einsum_gradient
        dW = einsum("Y,X->W", dz, x)                     (W's shape)
        db = dz summed over the axes b was broadcast along   (b's shape)
        dA = s dW B^T,  dB = s A^T dW                    LoRA only (conv.lora_grads)
    """

    def forward(x, kernel, bias, lora_a, lora_b):
        subscripts = Subscripts.parse(spelled_out(equation, x.shape.rank))
        if lora_a is not None:
            kernel = kernel + lora_scale * lora_product(lora_a, lora_b)
        z = ordered_einsum(x, subscripts.x, kernel, subscripts.w, subscripts.y)
        if bias is not None:
            z = z + bias
        y, activation_saved = activation.forward(z)
        bias_shape = None if bias is None else tf.shape(bias)
        return y, EinsumSaved(subscripts, x, kernel, bias_shape, lora_a, lora_b, activation_saved)

    def backward(saved, dy):
        s = saved.subscripts
        dz = activation.backward(saved.activation_saved, dy)
        dx = einsum_gradient(dz, s.y, saved.kernel, s.w, s.x, tf.shape(saved.x))
        dkernel = einsum_gradient(dz, s.y, saved.x, s.x, s.w, tf.shape(saved.kernel))
        dbias = None if saved.bias_shape is None else sum_to_shape(dz, saved.bias_shape)
        if saved.lora_a is None:
            return dx, dkernel, dbias, None, None
        dlora_a, dlora_b = lora_grads(lora_scale, saved.lora_a, saved.lora_b, dkernel)
        return dx, dkernel, dbias, dlora_a, dlora_b

    name = f"einsum_dense_{activation.name}" + ("_lora" if lora_scale is not None else "")
    return manual_gradient(forward, backward, name=name)


def _check_equation(equation):
    """Raises for a letter repeated within one operand (a diagonal), which the backward does not derive."""
    for part in re.split(",|->", equation.replace("...", "")):
        repeated = sorted({c for c in part if part.count(c) > 1})
        if repeated:
            raise NotImplementedError(
                f"keras_bp.layers.EinsumDense does not support a subscript repeated within one operand "
                f"(a diagonal), received: equation={equation!r} (repeats {''.join(repeated)!r} in {part!r}); "
                "use keras.layers.EinsumDense for it."
            )


# --- the layer ------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="keras_bp")
class EinsumDense(KernelLayer):
    """A dense layer computed by an einsum, with a hand-derived backward pass (drop-in for `keras.layers.EinsumDense`).

    y = activation(einsum(equation, x, kernel) + bias); the backward is
    `einsum_dense_op`'s, derived for any equation in the module docstring.
    Same arguments, defaults, weights (`kernel`, then `bias` when
    `bias_axes` is given, then with LoRA `lora_kernel_a` of shape
    `kernel.shape[:-1] + (lora_rank,)` and `lora_kernel_b` of shape
    `(lora_rank, kernel.shape[-1])`), shapes and outputs as Keras's; the
    kernel initializer's fan is computed along the equation's input and output
    axes, as in Keras. Quantization is not supported: use
    `keras.layers.EinsumDense` for quantized inference.

    Args:
        equation: The einsum to perform, "ab,bc->ac", "...ab,bc->...ac" or
            "ab...,bc->ac...".
        output_shape: The output's shape without the batch axis and the
            axes of an ellipsis; `None` for an axis known from the input.
        activation: Activation name or function; `None` means linear.
        bias_axes: The output letters to apply a bias along; `None` for no bias.
        kernel_initializer: Initializer for the kernel.
        bias_initializer: Initializer for the bias.
        kernel_regularizer: Regularizer applied to the kernel (and to the
            LoRA adapters).
        bias_regularizer: Regularizer applied to the bias.
        kernel_constraint: Constraint applied to the kernel (incompatible with LoRA).
        bias_constraint: Constraint applied to the bias.
        lora_rank: Optional integer; when set (and not 0), `build` enables LoRA
            (the factorization is along the kernel's last axis).
        lora_alpha: Optional number; LoRA's update is scaled by
            `lora_alpha / lora_rank`. Defaults to `lora_rank`.

    Input shape:
        N-D tensor matching the equation's first operand.

    Output shape:
        The equation's output: `(batch_size,) + output_shape`, with the axes
        of an ellipsis where the equation puts them.
    """

    def __init__(
        self,
        equation,
        output_shape,
        activation=None,
        bias_axes=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        lora_rank=None,
        lora_alpha=None,
        **kwargs,
    ):
        reject_keras_only_options(self, kwargs, ("gptq_unpacked_column_size", "quantization_config"))
        activity_regularizer = kwargs.pop("activity_regularizer", None)
        super().__init__(
            activation, bias_axes is not None, kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint, lora_rank, lora_alpha,
            **kwargs,
        )
        _check_equation(equation)
        self.equation = equation
        self.partial_output_shape = (output_shape,) if isinstance(output_shape, int) else tuple(output_shape)
        self.bias_axes = bias_axes
        self._make_ops()

    def _make_ops(self):
        self._op = einsum_dense_op(self.equation, self._fused_activation, self._lora_scale)

    def build(self, input_shape):
        kernel_shape, bias_shape, _, input_axes, output_axes = _analyze_einsum_string(
            self.equation, self.bias_axes, input_shape, self.partial_output_shape
        )
        self.input_spec = keras.layers.InputSpec(ndim=len(input_shape))
        initializer = self.kernel_initializer
        if isinstance(initializer, keras.initializers.VarianceScaling) and (
            initializer.input_axes is None or initializer.output_axes is None
        ):
            # As Keras: the fan along the equation's axes; the seed kept, so a
            # seeded initializer draws what Keras's draws.
            config = {**initializer.get_config(), "seed": initializer.seed,
                      "input_axes": input_axes, "output_axes": output_axes}
            initializer = initializer.__class__.from_config(config)
        self._add_kernel_and_bias(tuple(kernel_shape), bias_shape and tuple(bias_shape),
                                  initializer=initializer)

    def compute_output_shape(self, input_shape):
        _, _, output_shape, _, _ = _analyze_einsum_string(
            self.equation, self.bias_axes, input_shape, self.partial_output_shape
        )
        return tuple(output_shape)

    def call(self, inputs, training=None):
        return super().call(inputs)

    def get_config(self):
        return {
            **super().get_config(),
            "output_shape": self.partial_output_shape,
            "equation": self.equation,
            "activation": activations.serialize(self.activation),
            "bias_axes": self.bias_axes,
            **weight_options_config(self, "kernel", "bias", activity_regularizer=True),
            **self._lora_config(),
        }
