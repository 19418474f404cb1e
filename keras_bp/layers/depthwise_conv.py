"""The depthwise and separable convolutions (DepthwiseConv1D/2D, SeparableConv1D/2D): one depthwise pair for all four.

A depthwise convolution convolves each input channel c with its own
`depth_multiplier` M filters, never mixing channels; output channel c M + m
is channel c under filter m. A separable convolution is a depthwise one
followed by a pointwise (1x1) convolution that mixes the C M channels into
`filters` F; its op composes the depthwise pair below with Conv's pair
(`keras_bp.layers.conv`), and derives nothing new. As in conv.py, a rank-1
input is a 2-D image of height 1, channels_first inputs are computed in NHWC
(`keras_bp.layers._spatial.Layout`), and a dilated convolution runs under
XLA (`maybe_xla`), whose kernels have the gradients and the strided dilated
case that TensorFlow's CPU kernels lack.

Keras's depthwise and separable layers have no LoRA and no quantization, and
neither have these.
"""

from typing import NamedTuple

import keras
import tensorflow as tf

from keras_bp import activations
from keras_bp._validation import check_input_rank, check_positive_int
from keras_bp.core import manual_gradient
from keras_bp.layers._spatial import (
    Layout,
    standardize_data_format,
    standardize_padding,
    standardize_tuple,
    windowed_output_shape,
)
from keras_bp.layers._weight_options import add_weight_with_options, set_weight_options, weight_options_config
from keras_bp.layers.conv import (
    ConvMath,
    ConvSpec,
    conv_forward,
    conv_input_grad,
    conv_kernel_grad,
    conv_op,
    maybe_xla,
)

# --- the depthwise convolution pair --------------------------------------------


def depthwise_forward(spec, x, kernel):
    """z = x (*)_dw W: each channel convolved with its own M filters.

        z[n, i, j, c M + m] = sum over (a, b) of
                              x_pad[n, s_h i + d_h a, s_w j + d_w b, c] * W[a, b, c, m]

    x: (N, H, W, C)   kernel W: (kh, kw, C, M)   z: (N, H', W', C M)
    """
    return tf.raw_ops.DepthwiseConv2dNative(input=x, filter=kernel, **spec.tf_args())


def depthwise_input_grad(spec, x_shape, kernel, dz):
    """dL/dx: the depthwise convolution of dz (dilated by the stride) with W flipped in space.

        dx[n, p, q, c] = sum over (i, j, a, b) with s_h i + d_h a = p + pad_top,
                         s_w j + d_w b = q + pad_left, and over m, of
                         dz[n, i, j, c M + m] * W[a, b, c, m]

    dz: (N, H', W', C M) -> dx: (N, H, W, C). Channel c gathers only its own M
    output channels (no sum over other channels, unlike Conv's). This sum is
    what DepthwiseConv2dNativeBackpropInput (`tf.nn.depthwise_conv2d_backprop_input`)
    computes.
    """
    return tf.raw_ops.DepthwiseConv2dNativeBackpropInput(
        input_sizes=x_shape, filter=kernel, out_backprop=dz, **spec.tf_args()
    )


def depthwise_kernel_grad(spec, x, kernel_shape, dz):
    """dL/dW: the correlation of each input channel with its own M output channels of dz.

        dW[a, b, c, m] = sum over (n, i, j) of
                         x_pad[n, s_h i + d_h a, s_w j + d_w b, c] * dz[n, i, j, c M + m]

    x: (N, H, W, C), dz: (N, H', W', C M) -> dW: (kh, kw, C, M). This sum is
    what DepthwiseConv2dNativeBackpropFilter (`tf.nn.depthwise_conv2d_backprop_filter`)
    computes.
    """
    return tf.raw_ops.DepthwiseConv2dNativeBackpropFilter(
        input=x, filter_sizes=kernel_shape, out_backprop=dz, **spec.tf_args()
    )


DEPTHWISE_MATH = ConvMath(depthwise_forward, depthwise_input_grad, depthwise_kernel_grad)

# The pointwise step of a separable convolution: a 1x1 Conv, stride 1, no padding.
POINTWISE_SPEC = ConvSpec(strides=(1, 1), dilations=(1, 1), padding="VALID", groups=1)


def depthwise_op(layout, spec, activation):
    """The DepthwiseConv layer as one manual-gradient op: (x, kernel, bias) -> y.

    Conv's op (`conv_op`, its docstring has the layout, bias and activation
    steps) with the depthwise pair in place of the convolution's:
        z = x (*)_dw W + b    (N, H', W', C M)    depthwise_forward
        dx = depthwise_input_grad(dz),  dW = depthwise_kernel_grad(x, dz),
        db = sum over n, i, j of dz     (C M,)
    It takes no LoRA adapters (Keras's DepthwiseConv has none): the layer
    passes None for them.
    """
    return conv_op(layout, spec, activation, lora_scale=None, math=DEPTHWISE_MATH, kind="depthwise_conv")


class SeparableSaved(NamedTuple):
    """What the separable op's forward saves for its backward."""

    x: tf.Tensor  # the NHWC input, for dWd
    u: tf.Tensor  # the depthwise output, for dWp
    depthwise_2d: tf.Tensor  # Wd (a 1-D kernel lifted to 2-D), for dx
    pointwise_2d: tf.Tensor  # Wp (1, 1, C M, F), for du
    has_bias: bool  # whether b was given (else db is None)
    activation_saved: object  # what the activation's backward needs


def separable_op(layout, spec, activation):
    """The SeparableConv layer as one manual-gradient op: (x, depthwise_kernel, pointwise_kernel, bias) -> y.

    Forward (on NHWC tensors), the depthwise pair then Conv's pair with a 1x1 kernel:
        u = x (*)_dw Wd            (N, H', W', C M)   depthwise_forward
        z = u (*) Wp + b           (N, H', W', F)     conv_forward (1x1: z = u Wp over channels)
        y = f(z)                                      activation's forward

    Backward, with dy = dL/dy, each step the transpose of one above:
        dz = dy * f'(z)                               activation's backward
        db = sum over n, i, j of dz          (F,)     None without a bias
        du = dz (*)^T Wp           (N, H', W', C M)   conv_input_grad (1x1: du = dz Wp^T)
        dWp = u (*) dz             (1, 1, C M, F)     conv_kernel_grad
        dx = du (*)_dw^T Wd        (N, H, W, C)       depthwise_input_grad
        dWd = x (*)_dw du          (kh, kw, C, M)     depthwise_kernel_grad

    Wd: (kh, kw, C, M), Wp: (1, 1, C M, F) (rank 1: (k, C, M) and (1, C M, F),
    lifted to height 1). Saves the NHWC input, u, both kernels and what the
    activation's backward needs.
    """
    depthwise = maybe_xla(depthwise_forward, spec)
    depthwise_dx = maybe_xla(depthwise_input_grad, spec)
    depthwise_dw = maybe_xla(depthwise_kernel_grad, spec)

    def lift(kernel):
        return kernel[tf.newaxis] if layout.rank == 1 else kernel

    def forward(x, depthwise_kernel, pointwise_kernel, bias):
        x = layout.to_nhwc(x)
        depthwise_2d, pointwise_2d = lift(depthwise_kernel), lift(pointwise_kernel)
        u = depthwise(spec, x, depthwise_2d)
        z = conv_forward(POINTWISE_SPEC, u, pointwise_2d)
        if bias is not None:
            z = tf.nn.bias_add(z, bias)
        y, activation_saved = activation.forward(z)
        saved = SeparableSaved(x, u, depthwise_2d, pointwise_2d, bias is not None, activation_saved)
        return layout.from_nhwc(y), saved

    def backward(saved, dy):
        x, u = saved.x, saved.u
        dz = activation.backward(saved.activation_saved, layout.to_nhwc(dy))
        dbias = tf.raw_ops.BiasAddGrad(out_backprop=dz) if saved.has_bias else None  # sum of dz over n, i, j
        du = conv_input_grad(POINTWISE_SPEC, tf.shape(u), saved.pointwise_2d, dz)
        dpointwise = conv_kernel_grad(POINTWISE_SPEC, u, tf.shape(saved.pointwise_2d), dz)
        dx = depthwise_dx(spec, tf.shape(x), saved.depthwise_2d, du)
        ddepthwise = depthwise_dw(spec, x, tf.shape(saved.depthwise_2d), du)
        if layout.rank == 1:
            ddepthwise, dpointwise = ddepthwise[0], dpointwise[0]
        return layout.from_nhwc(dx), ddepthwise, dpointwise, dbias

    return manual_gradient(forward, backward, name=f"separable_conv{layout.rank}d_{activation.name}")


# --- the layers ---------------------------------------------------------------

# Keras's words lead our errors (see keras_bp._validation).
_KERAS_EMPTY_OUTPUT = "Computed output size would be zero or negative."


class _DepthwiseBase(keras.layers.Layer):
    """What the depthwise and separable layers share: the window arguments, activation, bias, `call`.

    A subclass calls `_init_window` and `set_weight_options` in `__init__`,
    then `_make_op`; in `build`, `_input_channels` and then its weights.
    `_op_inputs` lists the op's weight inputs after x.
    """

    rank = None

    def _init_window(
        self, kernel_size, strides, padding, depth_multiplier, data_format, dilation_rate, activation, use_bias
    ):
        rank = self.rank
        self.depth_multiplier = check_positive_int(
            "depth_multiplier", depth_multiplier,
            lead="Invalid value for argument `depth_multiplier`. Expected a strictly positive value. "
            f"Received depth_multiplier={depth_multiplier}.",
        )
        self.kernel_size = standardize_tuple("kernel_size", kernel_size, rank)
        self.strides = standardize_tuple("strides", strides, rank)
        self.dilation_rate = standardize_tuple("dilation_rate", dilation_rate, rank)
        # Keras's depthwise and separable layers have no 'causal' padding, even in 1-D.
        self.padding = standardize_padding(padding, ("valid", "same"))
        self.data_format = standardize_data_format(data_format)
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        self._fused_activation, self._activation_after = activations.fused_and_after(self.activation)
        self.input_spec = keras.layers.InputSpec(min_ndim=rank + 2)
        self._layout = Layout(rank, self.data_format == "channels_first")
        # NOTE: TensorFlow's depthwise kernels take only equal strides on both
        # axes: a 1-D stride s is lifted to (s, s) (the height is 1, so the
        # sums are the same, as in Keras), and unequal 2-D strides (which
        # Keras's CPU kernel refuses) run under XLA, as dilated ones do.
        # Unlike Conv, strides > 1 with dilation_rate > 1 is allowed (Keras
        # 3.15 decomposes it); XLA's depthwise convolution computes it directly.
        strides = (self.strides[0],) * 2 if rank == 1 else self.strides
        self._spec = ConvSpec(
            strides=strides,
            dilations=self._layout.spatial_2d(self.dilation_rate),
            padding=self.padding.upper(),
            groups=1,
            xla=strides[0] != strides[1],
        )

    def _input_channels(self, input_shape):
        """The input's channel count, checked; sets the input spec (as Keras) and checks the output fits."""
        channel_axis = -1 if self.data_format == "channels_last" else 1
        check_input_rank(type(self).__name__, "inputs", input_shape, rank=self.rank + 2)
        channels = input_shape[channel_axis]
        if channels is None:
            raise ValueError(
                f"The channel dimension of the input to {type(self).__name__} "
                f"must be known, received: input_shape={tuple(input_shape)}"
            )
        self.input_spec = keras.layers.InputSpec(min_ndim=self.rank + 2, axes={channel_axis: channels})
        self.compute_output_shape(input_shape)  # raises for a kernel that does not fit
        return channels

    def _output_shape(self, input_shape, channels):
        return windowed_output_shape(
            self, input_shape, "kernel_size", self.kernel_size, self.dilation_rate, channels, lead=_KERAS_EMPTY_OUTPUT
        )

    def call(self, inputs):
        if not inputs.dtype.is_floating:
            # Trap 13 (docs/traps.md): Keras computes integer inputs in the compute dtype.
            inputs = tf.cast(inputs, self.compute_dtype)
        # Trap 1 (docs/traps.md): read the weights here, outside the custom gradient.
        weights = [None if w is None else tf.convert_to_tensor(w) for w in self._op_inputs()]
        outputs = self._op(inputs, *weights)
        if self._activation_after is not None:
            return activations.apply(self._activation_after, outputs)
        return outputs

    def _window_config(self):
        return {
            "depth_multiplier": self.depth_multiplier,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
        }


class _DepthwiseConv(_DepthwiseBase):
    """Shared body of DepthwiseConv1D and DepthwiseConv2D."""

    def __init__(
        self,
        kernel_size,
        strides=1,
        padding="valid",
        depth_multiplier=1,
        data_format=None,
        dilation_rate=1,
        activation=None,
        use_bias=True,
        depthwise_initializer="glorot_uniform",
        bias_initializer="zeros",
        depthwise_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        depthwise_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self._init_window(kernel_size, strides, padding, depth_multiplier, data_format, dilation_rate, activation, use_bias)
        set_weight_options(
            self,
            depthwise=(depthwise_initializer, depthwise_regularizer, depthwise_constraint),
            bias=(bias_initializer, bias_regularizer, bias_constraint),
        )
        self._op = depthwise_op(self._layout, self._spec, self._fused_activation)

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        # Keras names the depthwise kernel `kernel` here (`depthwise_kernel` in SeparableConv).
        self.kernel = add_weight_with_options(
            self, "kernel", self.kernel_size + (channels, self.depth_multiplier), prefix="depthwise"
        )
        self.bias = add_weight_with_options(self, "bias", (self.depth_multiplier * channels,)) if self.use_bias else None

    def _op_inputs(self):
        return self.kernel, self.bias, None, None  # no LoRA adapters

    def compute_output_shape(self, input_shape):
        channel_axis = -1 if self.data_format == "channels_last" else 1
        return self._output_shape(input_shape, self.depth_multiplier * input_shape[channel_axis])

    def get_config(self):
        return {
            **super().get_config(),
            **self._window_config(),
            **weight_options_config(self, "depthwise", "bias", activity_regularizer=True),
        }


class _SeparableConv(_DepthwiseBase):
    """Shared body of SeparableConv1D and SeparableConv2D."""

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        dilation_rate=1,
        depth_multiplier=1,
        activation=None,
        use_bias=True,
        depthwise_initializer="glorot_uniform",
        pointwise_initializer="glorot_uniform",
        bias_initializer="zeros",
        depthwise_regularizer=None,
        pointwise_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        depthwise_constraint=None,
        pointwise_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self._init_window(kernel_size, strides, padding, depth_multiplier, data_format, dilation_rate, activation, use_bias)
        self.filters = check_positive_int(
            "filters", filters,
            lead=f"Invalid value for argument `filters`. Expected a strictly positive value. Received filters={filters}.",
        )
        set_weight_options(
            self,
            depthwise=(depthwise_initializer, depthwise_regularizer, depthwise_constraint),
            pointwise=(pointwise_initializer, pointwise_regularizer, pointwise_constraint),
            bias=(bias_initializer, bias_regularizer, bias_constraint),
        )
        self._op = separable_op(self._layout, self._spec, self._fused_activation)

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        self.depthwise_kernel = add_weight_with_options(
            self, "depthwise_kernel", self.kernel_size + (channels, self.depth_multiplier), prefix="depthwise"
        )
        self.pointwise_kernel = add_weight_with_options(
            self, "pointwise_kernel", (1,) * self.rank + (self.depth_multiplier * channels, self.filters),
            prefix="pointwise",
        )
        self.bias = add_weight_with_options(self, "bias", (self.filters,)) if self.use_bias else None

    def _op_inputs(self):
        return self.depthwise_kernel, self.pointwise_kernel, self.bias

    def compute_output_shape(self, input_shape):
        return self._output_shape(input_shape, self.filters)

    def get_config(self):
        window = self._window_config()
        return {
            **super().get_config(),
            "depth_multiplier": window.pop("depth_multiplier"),
            "filters": self.filters,
            **window,
            **weight_options_config(self, "depthwise", "pointwise", "bias", activity_regularizer=True),
        }


_DEPTHWISE_DOC = """{rank}-D depthwise convolution layer with a hand-derived backward pass.

    Drop-in for `keras.layers.DepthwiseConv{rank}D`: same arguments, defaults,
    weights (`kernel` of shape `kernel_size + (input_channels,
    depth_multiplier)`, then `bias` of shape `(input_channels *
    depth_multiplier,)`) and outputs. Each input channel c is convolved with
    its own `depth_multiplier` filters, giving output channels
    `c * depth_multiplier + m`. The forward and backward are `depthwise_op`
    (derivation in `depthwise_forward`, `depthwise_input_grad`,
    `depthwise_kernel_grad`); the activation's derivative is fused into the
    backward, except softmax's and sigmoid's, which run after it as Keras's
    do. No LoRA and no quantization (Keras's layer has neither).

    Args:
        kernel_size: int or tuple of {rank} ints, the window size.
        strides: int or tuple of {rank} ints.
        padding: `"valid"` or `"same"` (case-insensitive).
        depth_multiplier: Positive integer, the filters per input channel.
        data_format: `"channels_last"` (default from `keras.config`) or
            `"channels_first"`.
        dilation_rate: int or tuple of {rank} ints (may be combined with
            `strides > 1`, as in Keras).
        activation: Activation name or `keras.activations` function (see
            `keras_bp.activations.SUPPORTED`). `None` means linear.
        use_bias: Whether to add a bias vector.
        depthwise_initializer, bias_initializer: Initializers.
        depthwise_regularizer, bias_regularizer, activity_regularizer: Regularizers.
        depthwise_constraint, bias_constraint: Constraints.

    Input shape:
        `(batch, {spatial}, channels)` for channels_last,
        `(batch, channels, {spatial})` for channels_first.

    Output shape:
        `(batch, {new_spatial}, channels * depth_multiplier)` or
        `(batch, channels * depth_multiplier, {new_spatial})`.
    """

_SEPARABLE_DOC = """{rank}-D separable convolution layer with a hand-derived backward pass.

    Drop-in for `keras.layers.SeparableConv{rank}D`: same arguments, defaults,
    weights (`depthwise_kernel` of shape `kernel_size + (input_channels,
    depth_multiplier)`, `pointwise_kernel` of shape `{ones} +
    (input_channels * depth_multiplier, filters)`, then `bias` of shape
    `(filters,)`) and outputs: a depthwise convolution (see
    `DepthwiseConv{rank}D`) followed by a 1x1 convolution mixing its channels
    into `filters`. The forward and backward are `separable_op`, which
    composes the depthwise pair with Conv's; the activation is applied as in
    `DepthwiseConv{rank}D`. No LoRA and no quantization (Keras's layer has
    neither).

    Args:
        filters: Positive integer, number of output channels.
        kernel_size: int or tuple of {rank} ints, the depthwise window size.
        strides: int or tuple of {rank} ints, of the depthwise step.
        padding: `"valid"` or `"same"` (case-insensitive).
        data_format: `"channels_last"` (default from `keras.config`) or
            `"channels_first"`.
        dilation_rate: int or tuple of {rank} ints, of the depthwise step.
        depth_multiplier: Positive integer, the depthwise filters per input channel.
        activation: Activation name or `keras.activations` function. `None`
            means linear.
        use_bias: Whether to add a bias vector.
        depthwise_initializer, pointwise_initializer, bias_initializer: Initializers.
        depthwise_regularizer, pointwise_regularizer, bias_regularizer,
            activity_regularizer: Regularizers.
        depthwise_constraint, pointwise_constraint, bias_constraint: Constraints.

    Input shape:
        `(batch, {spatial}, channels)` for channels_last,
        `(batch, channels, {spatial})` for channels_first.

    Output shape:
        `(batch, {new_spatial}, filters)` or `(batch, filters, {new_spatial})`.
    """


def _doc(template, rank):
    if rank == 1:
        return template.format(rank=1, spatial="steps", new_spatial="new_steps", ones="(1,)")
    return template.format(rank=2, spatial="height, width", new_spatial="new_height, new_width", ones="(1, 1)")


@keras.saving.register_keras_serializable(package="keras_bp")
class DepthwiseConv1D(_DepthwiseConv):
    __doc__ = _doc(_DEPTHWISE_DOC, 1)
    rank = 1


@keras.saving.register_keras_serializable(package="keras_bp")
class DepthwiseConv2D(_DepthwiseConv):
    __doc__ = _doc(_DEPTHWISE_DOC, 2)
    rank = 2


@keras.saving.register_keras_serializable(package="keras_bp")
class SeparableConv1D(_SeparableConv):
    __doc__ = _doc(_SEPARABLE_DOC, 1)
    rank = 1


@keras.saving.register_keras_serializable(package="keras_bp")
class SeparableConv2D(_SeparableConv):
    __doc__ = _doc(_SEPARABLE_DOC, 2)
    rank = 2
