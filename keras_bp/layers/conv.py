"""The convolution layers (Conv1D, Conv2D, Conv3D): one forward/backward pair for every rank.

Conv1D and Conv2D run the same 2-D math on channels-last tensors, Conv3D the
same math on 5-D NDHWC tensors (the 3-D raw ops, picked by `_RAW_OPS`). A
Conv1D input `(batch, steps, channels)` is a 2-D image of height 1,
`(batch, 1, steps, channels)`, and its kernel `(k, in/groups, filters)` a
`(1, k, in/groups, filters)` kernel; channels_first inputs are transposed to
channels_last inside the op, because TensorFlow's CPU convolution only
supports channels-last (Keras transposes for pooling for the same reason).
The layout changes (`keras_bp.layers._spatial.Layout`) are part of the op's
forward, and undone on the gradients in its backward, so the whole layer is
one hand-written op. The transposed convolutions (conv_transpose.py) reuse
this op with the three functions below in other roles.
"""

from typing import Callable, NamedTuple

import keras
import tensorflow as tf

from keras_bp._validation import check_input_rank, check_positive_int
from keras_bp.core import manual_gradient
from keras_bp.layers._kernel import KernelLayer
from keras_bp.layers._spatial import (
    Layout,
    check_filters,
    check_strides_with_dilation,
    spatial_names,
    standardize_data_format,
    standardize_padding,
    standardize_tuple,
    windowed_output_shape,
)

# --- the convolution pair ----------------------------------------------------


class ConvSpec(NamedTuple):
    """Static arguments of a channels-last convolution (NHWC, or NDHWC for rank 3; 1-D ones already lifted)."""

    strides: tuple  # (sh, sw), or (sd, sh, sw)
    dilations: tuple  # (dh, dw), or (dd, dh, dw)
    padding: object  # "SAME", "VALID", or explicit [[0, 0], [t, b], [l, r], [0, 0]] (2-D only)
    groups: int
    xla: bool = False  # run under XLA whatever the above (a depthwise convolution with unequal strides)
    output_padding: object = None  # a transposed convolution's: None, or one int >= 0 per spatial axis

    @property
    def rank(self):
        """The number of spatial axes the math runs on: 2 (Conv1D and Conv2D) or 3."""
        return len(self.strides)

    def tf_args(self):
        if isinstance(self.padding, str):
            return dict(strides=[1, *self.strides, 1], padding=self.padding, dilations=[1, *self.dilations, 1])
        return dict(
            strides=[1, *self.strides, 1],
            padding="EXPLICIT",
            explicit_paddings=[p for pair in self.padding for p in pair],
            dilations=[1, *self.dilations, 1],
        )


# The raw ops of each rank the math runs on, as (z, dL/dx, dL/dW): the same
# sums, with one more spatial axis in 3-D (and the same arguments, by name).
_RAW_OPS = {
    2: (tf.raw_ops.Conv2D, tf.raw_ops.Conv2DBackpropInput, tf.raw_ops.Conv2DBackpropFilter),
    3: (tf.raw_ops.Conv3D, tf.raw_ops.Conv3DBackpropInputV2, tf.raw_ops.Conv3DBackpropFilterV2),
}


def conv_forward(spec, x, kernel):
    """z = x (*) W, the cross-correlation of Keras's Conv layers.

        z[n, i, j, f] = sum over (a, b, c) of
                        x_pad[n, s_h i + d_h a, s_w j + d_w b, g(f) C_g + c] * W[a, b, c, f]

    x: (N, H, W, C_in)   kernel W: (kh, kw, C_in / groups, F)   z: (N, H', W', F)
    where g(f) = f // (F / groups) is filter f's group and C_g = C_in / groups.
    In 3-D, one more spatial axis in front: x (N, D, H, W, C_in), W (kd, kh,
    kw, C_in / groups, F), and a sum over it too (Conv3D).
    """
    convolve, _, _ = _RAW_OPS[spec.rank]
    return convolve(input=x, filter=kernel, **spec.tf_args())


def conv_input_grad(spec, x_shape, kernel, dz):
    """dL/dx: the transposed convolution of dz with the same kernel.

        dx[n, p, q, c] = sum over (i, j, a, b) with s_h i + d_h a = p + pad_top,
                         s_w j + d_w b = q + pad_left, and f in c's group, of
                         dz[n, i, j, f] * W[a, b, c mod C_g, f]

    dz: (N, H', W', F) -> dx: (N, H, W, C_in). This sum is what
    Conv2DBackpropInput (Conv3DBackpropInputV2 in 3-D) computes (a
    convolution of dz, dilated by the stride, with the kernel flipped in
    space and transposed in its channel axes). `x_shape` is x's shape, which
    dz alone does not fix (a stride drops the last rows).
    """
    _, input_grad, _ = _RAW_OPS[spec.rank]
    return input_grad(input_sizes=x_shape, filter=kernel, out_backprop=dz, **spec.tf_args())


def conv_kernel_grad(spec, x, kernel_shape, dz):
    """dL/dW: the correlation of the input with dz.

        dW[a, b, c, f] = sum over (n, i, j) of
                         x_pad[n, s_h i + d_h a, s_w j + d_w b, g(f) C_g + c] * dz[n, i, j, f]

    x: (N, H, W, C_in), dz: (N, H', W', F) -> dW: (kh, kw, C_in / groups, F).
    This sum is what Conv2DBackpropFilter (Conv3DBackpropFilterV2 in 3-D)
    computes.
    """
    _, _, kernel_grad = _RAW_OPS[spec.rank]
    return kernel_grad(input=x, filter_sizes=kernel_shape, out_backprop=dz, **spec.tf_args())


def maybe_xla(fn, spec):
    # NOTE: TensorFlow's CPU kernels have no gradients for grouped or dilated
    # convolutions (Keras runs grouped ones through XLA, and dilated ones
    # through space_to_batch); we run both through XLA, which has them.
    needs_xla = spec.xla or spec.groups > 1 or max(spec.dilations) > 1
    return tf.function(fn, jit_compile=True, reduce_retracing=True) if needs_xla else fn


def lora_product(lora_a, lora_b):
    """A B, contracted over the rank: (..., C_g, r) x (r, F) -> (..., C_g, F), a kernel's shape."""
    return tf.tensordot(lora_a, lora_b, axes=1)


def lora_grads(lora_scale, lora_a, lora_b, dkernel):
    """dA and dB of W' = W + s A B, given dW' = dL/dW' (a kernel's shape (..., C_g, F)).

        dA[..., c, q] = s sum over f of dW'[..., c, f] B[q, f]              (..., C_g, r)
        dB[q, f]      = s sum over (..., c) of A[..., c, q] dW'[..., c, f]  (r, F)
    """
    leading = list(range(lora_a.shape.rank - 1))
    dlora_a = lora_scale * tf.tensordot(dkernel, lora_b, axes=[[lora_a.shape.rank - 1], [1]])
    dlora_b = lora_scale * tf.tensordot(lora_a, dkernel, axes=[leading, leading])
    return dlora_a, dlora_b


class ConvMath(NamedTuple):
    """A convolution's forward and its two partials, each a function of channels-last tensors and a `ConvSpec`."""

    forward: Callable  # (spec, x, kernel) -> z
    input_grad: Callable  # (spec, x_shape, kernel, dz) -> dL/dx
    kernel_grad: Callable  # (spec, x, kernel_shape, dz) -> dL/dW


CONV_MATH = ConvMath(conv_forward, conv_input_grad, conv_kernel_grad)


class ConvSaved(NamedTuple):
    """What the convolution op's forward saves for its backward."""

    x: tf.Tensor  # the channels-last input, for dW' = x (*) dz
    kernel: tf.Tensor  # W' = W (+ s A B with LoRA; a 1-D kernel lifted to 2-D), for dx
    has_bias: bool  # whether b was given (else db is None)
    lora_a: object  # A, for dB; None without LoRA
    lora_b: object  # B, for dA; None without LoRA
    activation_saved: object  # what the activation's backward needs


def conv_op(layout, spec, activation, lora_scale=None, math=CONV_MATH, kind="conv"):
    """The Conv layer as one manual-gradient op: (x, kernel, bias, lora_a, lora_b) -> y.

    `math` is the convolution (x) and its partials (Conv's by default; the
    depthwise convolution's for DepthwiseConv1D/2D, see depthwise_conv.py;
    the transposed convolution's, Conv's three functions in other roles, for
    ConvXDTranspose, see conv_transpose.py), `kind` names the op; the
    layout, bias, activation and LoRA around it are the same for all.

    Forward (on channels-last tensors, see `Layout`; 3-D ones have one more
    spatial axis), with s = lora_scale = lora_alpha / lora_rank:
        W' = W + s A B             (kh, kw, C_g, F)   lora_product; W' = W without LoRA
        z = x (*) W' + b           (N, H', W', F)     conv_forward
        y = f(z)                                       activation's forward

    Backward, with dy = dL/dy:
        dz = dy * f'(z)                                activation's backward
        dx = dz (*)^T W'           (N, H, W, C_in)     conv_input_grad
        dW = dW' = x (*) dz        (kh, kw, C_g, F)    conv_kernel_grad
        db = sum over n, i, j of dz          (F,)      None without a bias
        dA = s dW' B^T             (kh, kw, C_g, r)    lora_grads (LoRA only)
        dB = s A^T dW'             (r, F)              A^T dW' sums over kh, kw, C_g

    A is (kh, kw, C_g, r) and B (r, F), as in Keras; W' is merged (as Keras
    merges it) because a grouped convolution applies one W' to each group of
    channels. LoRA freezes W, but dW is returned with the others: it is dW',
    which dA and dB need anyway. Saves the NHWC input, W', A and B, and what
    the activation's backward needs.
    """
    forward_math = maybe_xla(math.forward, spec)
    input_grad = maybe_xla(math.input_grad, spec)
    kernel_grad = maybe_xla(math.kernel_grad, spec)

    def forward(x, kernel, bias, lora_a, lora_b):
        if lora_a is not None:
            kernel = kernel + lora_scale * lora_product(lora_a, lora_b)
        x = layout.to_nhwc(x)
        kernel = kernel[tf.newaxis] if layout.rank == 1 else kernel
        z = forward_math(spec, x, kernel)
        if bias is not None:
            # NOTE: BiasAdd, not +: the same sums, and grappler fuses Conv2D + BiasAdd (+ relu).
            z = tf.nn.bias_add(z, bias)
        y, activation_saved = activation.forward(z)
        return layout.from_nhwc(y), ConvSaved(x, kernel, bias is not None, lora_a, lora_b, activation_saved)

    def backward(saved, dy):
        x, kernel = saved.x, saved.kernel
        dz = activation.backward(saved.activation_saved, layout.to_nhwc(dy))
        dx = input_grad(spec, tf.shape(x), kernel, dz)
        dkernel = kernel_grad(spec, x, tf.shape(kernel), dz)
        if layout.rank == 1:
            dkernel = dkernel[0]
        dbias = tf.raw_ops.BiasAddGrad(out_backprop=dz) if saved.has_bias else None  # sum of dz over n, i, j
        dlora_a = dlora_b = None
        if saved.lora_a is not None:
            dlora_a, dlora_b = lora_grads(lora_scale, saved.lora_a, saved.lora_b, dkernel)
        return layout.from_nhwc(dx), dkernel, dbias, dlora_a, dlora_b

    name = f"{kind}{layout.rank}d_{activation.name}" + ("_lora" if lora_scale is not None else "")
    return manual_gradient(forward, backward, name=name)


# --- the layers ---------------------------------------------------------------


class _Conv(KernelLayer):
    """Shared body of Conv1D, Conv2D and Conv3D; `rank` is the number of spatial axes."""

    rank = None

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        dilation_rate=1,
        groups=1,
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
        super().__init__(
            activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
            activity_regularizer, kernel_constraint, bias_constraint, lora_rank, lora_alpha, **kwargs,
        )
        rank = self.rank
        self.filters = check_filters(filters)
        # Keras's words lead (see keras_bp._validation).
        self.groups = check_positive_int(
            "groups", groups, lead=f"The number of groups must be a positive integer. Received: groups={groups}."
        )
        if self.filters % self.groups:
            raise ValueError(
                "filters must be divisible by groups, received: "
                f"filters={filters}, groups={groups}. The number of filters must be evenly "
                f"divisible by the number of groups. Received: groups={groups}, filters={filters}."
            )
        self.kernel_size = standardize_tuple("kernel_size", kernel_size, rank)
        self.strides = standardize_tuple("strides", strides, rank)
        self.dilation_rate = standardize_tuple("dilation_rate", dilation_rate, rank)
        self.padding = standardize_padding(padding, ("valid", "same", "causal") if rank == 1 else ("valid", "same"))
        self.data_format = standardize_data_format(data_format)
        check_strides_with_dilation(self.strides, self.dilation_rate)
        self.input_spec = keras.layers.InputSpec(ndim=rank + 2)

        self._layout = Layout(rank, self.data_format == "channels_first")
        self._spec = ConvSpec(
            strides=self._layout.spatial_2d(self.strides),
            dilations=self._layout.spatial_2d(self.dilation_rate),
            padding=self._tf_padding(),
            groups=self.groups,
        )
        self._make_ops()

    def _make_ops(self):
        self._op = conv_op(self._layout, self._spec, self._fused_activation, self._lora_scale)

    def _tf_padding(self):
        if self.padding != "causal":
            return self.padding.upper()
        # Causal: pad d (k - 1) steps on the left only (Keras pads, then runs
        # a 'valid' convolution; explicit padding is the same sum).
        left = self.dilation_rate[0] * (self.kernel_size[0] - 1)
        return [[0, 0], [0, 0], [left, 0], [0, 0]]

    def build(self, input_shape):
        channel_axis = -1 if self.data_format == "channels_last" else 1
        check_input_rank(type(self).__name__, "inputs", input_shape, rank=self.rank + 2)
        input_channels = input_shape[channel_axis]
        if input_channels is None:
            raise ValueError(
                f"The channel dimension of the input to {type(self).__name__} "
                f"must be known, received: input_shape={tuple(input_shape)}"
            )
        if input_channels % self.groups:
            raise ValueError(
                "The number of input channels must be divisible by groups, "
                f"received: groups={self.groups}, input_shape={tuple(input_shape)}"
            )
        self.compute_output_shape(input_shape)  # raises for a kernel that does not fit
        self._add_kernel_and_bias(self.kernel_size + (input_channels // self.groups, self.filters), (self.filters,))
        self.input_spec = keras.layers.InputSpec(ndim=self.rank + 2, axes={channel_axis: input_channels})

    def compute_output_shape(self, input_shape):
        return windowed_output_shape(self, input_shape, "kernel_size", self.kernel_size, self.dilation_rate, self.filters)

    def get_config(self):
        base_config = super().get_config()
        config = {
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate,
            "groups": self.groups,
            **self._kernel_options_config(),
            "activity_regularizer": keras.regularizers.serialize(self.activity_regularizer),
            **self._lora_config(),
        }
        return {**base_config, **config}


_CONV_DOC = """{rank}-D convolution layer with a hand-derived backward pass.

    Drop-in for `keras.layers.Conv{rank}D`: same arguments, defaults, weights
    (`kernel` of shape `kernel_size + (input_channels // groups, filters)`,
    then `bias` of shape `(filters,)`) and outputs.{runs_as} The forward and backward
    are `conv_op` (derivation in its docstring and in `conv_forward`,
    `conv_input_grad`, `conv_kernel_grad`); the activation's derivative is
    fused into the backward, except softmax's and sigmoid's, which run after
    it as Keras's do (softmax over the last axis; the output carries its
    logits for a cross-entropy).

    LoRA (`lora_rank`, or `enable_lora` on a built layer) freezes the kernel
    W and trains `lora_kernel_a` A `kernel_size + (input_channels // groups,
    lora_rank)` and `lora_kernel_b` B `(lora_rank, filters)`; the layer
    convolves with W + (lora_alpha / lora_rank) A B (backward in `conv_op`),
    which `kernel` reads and saving stores, as Keras does. Quantization is
    not supported (Keras's Conv layers have none either).

    Args:
        filters: Positive integer, number of output channels.
        kernel_size: int or tuple of {rank} ints, the window size.
        strides: int or tuple of {rank} ints. `strides > 1` is incompatible
            with `dilation_rate > 1`.
        padding: {paddings} (case-insensitive).{causal}
        data_format: `"channels_last"` (default from `keras.config`) or
            `"channels_first"`.
        dilation_rate: int or tuple of {rank} ints.
        groups: Positive integer; input channels and `filters` must be
            divisible by it. Each group of `input_channels // groups` input
            channels is convolved with `filters // groups` filters.
        activation: Activation name or `keras.activations` function (see
            `keras_bp.activations.SUPPORTED`). `None` means linear.
        use_bias: Whether to add a bias vector.
        kernel_initializer, bias_initializer: Initializers.
        kernel_regularizer, bias_regularizer, activity_regularizer: Regularizers.
        kernel_constraint, bias_constraint: Constraints (a kernel constraint
            is incompatible with LoRA).
        lora_rank: Optional integer; when set (and not 0), `build` enables
            LoRA with this rank.
        lora_alpha: Optional number; LoRA's update is scaled by
            `lora_alpha / lora_rank`. Defaults to `lora_rank`.

    Input shape:
        `(batch, {spatial}, channels)` for channels_last,
        `(batch, channels, {spatial})` for channels_first.

    Output shape:
        `(batch, {new_spatial}, filters)`
        or `(batch, filters, {new_spatial})`.
    """


_CAUSAL_DOC = """ `"causal"` pads `dilation_rate * (kernel_size - 1)`
            steps on the left, so output t sees inputs up to t only."""


_RUNS_AS = {
    1: "\n    It runs as a Conv2D of height 1.",
    2: "",
    3: "\n    It runs on NDHWC tensors (Conv3D and its two backprop ops).",
}


def _conv_doc(rank):
    spatial, new_spatial = spatial_names(rank), spatial_names(rank, "new_")
    if rank == 1:
        paddings, causal = '`"valid"`, `"same"` or `"causal"`', _CAUSAL_DOC
    else:
        paddings, causal = '`"valid"` or `"same"`', ""
    return _CONV_DOC.format(
        rank=rank, paddings=paddings, causal=causal, spatial=spatial, new_spatial=new_spatial, runs_as=_RUNS_AS[rank]
    )


@keras.saving.register_keras_serializable(package="keras_bp")
class Conv1D(_Conv):
    __doc__ = _conv_doc(1)
    rank = 1


@keras.saving.register_keras_serializable(package="keras_bp")
class Conv2D(_Conv):
    __doc__ = _conv_doc(2)
    rank = 2



@keras.saving.register_keras_serializable(package="keras_bp")
class Conv3D(_Conv):
    __doc__ = _conv_doc(3)
    rank = 3
