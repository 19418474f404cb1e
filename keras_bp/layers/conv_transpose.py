"""The transposed convolutions (Conv1D/2D/3DTranspose): Conv's three functions in other roles.

A convolution z = C_W(x) = x (*) W is linear in x; its transpose C_W^T is
the map with <C_W^T(u), v> = <u, C_W(v)> for every u and v, which is what
`conv_input_grad` computes (dx = C_W^T(dz)). A transposed convolution is
that map used as a layer's forward:

    y = C_W^T(x) = x (*)^T W      x: a convolution's output shape, y: its input's

Its backward, for dy = dL/dy, follows from the same identity:
    dx = C_W(dy) = dy (*) W          (<dy, C_W^T(x)> = <C_W(dy), x>)   conv_forward
    dW = dy (*) x                    the correlation of Conv's kernel gradient,
                                     with dy as its input and x as its upstream   conv_kernel_grad
So a transposed convolution's forward is a convolution's input gradient, its
input gradient a convolution, and its kernel gradient a convolution's with
the roles of x and dz swapped: `transposed` builds that `ConvMath` from
Conv's, and the layer is `conv_op` (conv.py: layout, bias, activation) with
it. Nothing new is derived and no raw op is called here.

Keras's kernel is `kernel_size + (filters, input_channels)`: a convolution
kernel from `filters` channels to `input_channels`, the one whose transpose
maps `input_channels` to `filters`, and it is passed as it is. Keras's
transposed convolutions have no groups, LoRA or quantization, and neither
have these.
"""

import keras
import tensorflow as tf

from keras_bp import activations
from keras_bp._validation import check_input_rank, invalid
from keras_bp.layers._spatial import (
    Layout,
    check_filters,
    check_strides_with_dilation,
    spatial_names,
    standardize_data_format,
    standardize_padding,
    standardize_tuple,
    transposed_output_size,
)
from keras_bp.layers._weight_options import add_weight_with_options, set_weight_options, weight_options_config
from keras_bp.layers.conv import CONV_MATH, ConvMath, ConvSpec, conv_op

# --- the transposed convolution pair ---------------------------------------


def transposed_output_shape(spec, x, kernel):
    """The shape of x (*)^T W: (N, *spatial, filters), each spatial length by `transposed_output_size`.

    x: (N, *spatial_in, C_in), kernel W: (*kernel_size, filters, C_in); a
    tensor, as the batch (and maybe the lengths) are known only when run.
    """
    shape = tf.shape(x)
    output_padding = spec.output_padding or (None,) * spec.rank
    spatial = [
        transposed_output_size(shape[axis + 1], k, s, d, spec.padding, p)
        for axis, (k, s, d, p) in enumerate(zip(kernel.shape[:-2], spec.strides, spec.dilations, output_padding))
    ]
    return tf.stack([shape[0], *spatial, kernel.shape[-2]])


def transposed(math):
    """The transposed convolution of a convolution's `math`: each of its three functions in another role.

    With C_W(v) = math.forward(v, W), the convolution, and C_W^T(u) =
    math.input_grad(u, W), its transpose (see the module docstring):
        forward:      y  = C_W^T(x)                 math.input_grad, to y's shape
        input_grad:   dx = C_W(dy)                  math.forward
        kernel_grad:  dW = math.kernel_grad(dy, x)  dy in the input's place, x in the upstream's
    Shapes (2-D; 3-D has one more spatial axis): x (N, H, W, C_in), W (kh,
    kw, filters, C_in), y and dy (N, H', W', filters), with H' =
    `transposed_output_size`. The spec is the convolution's (strides,
    dilations, padding of the C_W that maps y's shape back to x's), plus
    `output_padding`, which only sizes y.
    """

    def forward(spec, x, kernel):
        return math.input_grad(spec, transposed_output_shape(spec, x, kernel), kernel, x)

    def input_grad(spec, x_shape, kernel, dy):
        return math.forward(spec, dy, kernel)

    def kernel_grad(spec, x, kernel_shape, dy):
        return math.kernel_grad(spec, dy, kernel_shape, x)

    return ConvMath(forward, input_grad, kernel_grad)


TRANSPOSED_CONV_MATH = transposed(CONV_MATH)


def conv_transpose_op(layout, spec, activation):
    """The ConvTranspose layer as one manual-gradient op: (x, kernel, bias) -> y.

    Conv's op (`conv_op`, its docstring has the layout, bias and activation
    steps) with the transposed math (`transposed`, derivation there):
        z = x (*)^T W + b     (N, H', W', filters)   conv_input_grad
        dx = dz (*) W         (N, H, W, C_in)        conv_forward
        dW = dz (*) x         (kh, kw, filters, C_in) conv_kernel_grad
        db = sum over n, i, j of dz   (filters,)
    It takes no LoRA adapters (Keras's ConvTranspose has none): the layer
    passes None for them.
    """
    return conv_op(layout, spec, activation, lora_scale=None, math=TRANSPOSED_CONV_MATH, kind="conv_transpose")


# --- the layers ---------------------------------------------------------------


class _ConvTranspose(keras.layers.Layer):
    """Shared body of Conv1DTranspose, Conv2DTranspose and Conv3DTranspose; `rank` is the number of spatial axes."""

    rank = None

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        output_padding=None,
        data_format=None,
        dilation_rate=1,
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
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        rank = self.rank
        self.filters = check_filters(filters)
        self.kernel_size = standardize_tuple("kernel_size", kernel_size, rank)
        self.strides = standardize_tuple("strides", strides, rank)
        self.dilation_rate = standardize_tuple("dilation_rate", dilation_rate, rank)
        self.padding = standardize_padding(padding, ("valid", "same"))
        self.output_padding = None
        if output_padding is not None:
            self.output_padding = standardize_tuple("output_padding", output_padding, rank, allow_zero=True)
        self.data_format = standardize_data_format(data_format)
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        set_weight_options(
            self,
            kernel=(kernel_initializer, kernel_regularizer, kernel_constraint),
            bias=(bias_initializer, bias_regularizer, bias_constraint),
        )
        for axis, (p, s) in enumerate(zip(self.output_padding or (), self.strides)):
            if p >= s:
                raise invalid(
                    "output_padding", self.output_padding, f"less than strides={self.strides} on every axis",
                    lead="`output_padding` must be strictly less than `strides` for all dimensions. "
                    f"At dimension {axis}, `output_padding` is {p} but `strides` is {s}. "
                    f"Received: output_padding={self.output_padding}, strides={self.strides}",
                )
        check_strides_with_dilation(self.strides, self.dilation_rate)
        self.input_spec = keras.layers.InputSpec(min_ndim=rank + 2)

        self._fused_activation, self._activation_after = activations.fused_and_after(self.activation)
        layout = Layout(rank, self.data_format == "channels_first")
        spec = ConvSpec(
            strides=layout.spatial_2d(self.strides),
            dilations=layout.spatial_2d(self.dilation_rate),
            padding=self.padding.upper(),
            groups=1,
            output_padding=None if self.output_padding is None else layout.spatial_2d(self.output_padding, lift=0),
        )
        self._op = conv_transpose_op(layout, spec, self._fused_activation)

    def build(self, input_shape):
        channel_axis = -1 if self.data_format == "channels_last" else 1
        check_input_rank(type(self).__name__, "inputs", input_shape, rank=self.rank + 2)
        input_channels = input_shape[channel_axis]
        if input_channels is None:
            raise ValueError(
                f"The channel dimension of the input to {type(self).__name__} "
                f"must be known, received: input_shape={tuple(input_shape)}"
            )
        self.input_spec = keras.layers.InputSpec(min_ndim=self.rank + 2, axes={channel_axis: input_channels})
        self.kernel = add_weight_with_options(self, "kernel", self.kernel_size + (self.filters, input_channels))
        self.bias = add_weight_with_options(self, "bias", (self.filters,)) if self.use_bias else None

    def call(self, inputs):
        if not inputs.dtype.is_floating:
            # Trap 13 (docs/traps.md): Keras computes integer inputs in the compute dtype.
            inputs = tf.cast(inputs, self.compute_dtype)
        # Trap 1 (docs/traps.md): read the weights here, outside the custom gradient.
        kernel = tf.convert_to_tensor(self.kernel)
        bias = None if self.bias is None else tf.convert_to_tensor(self.bias)
        outputs = self._op(inputs, kernel, bias, None, None)  # no LoRA adapters
        if self._activation_after is not None:
            return activations.apply(self._activation_after, outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        channels_last = self.data_format == "channels_last"
        spatial = input_shape[1:-1] if channels_last else input_shape[2:]
        output_padding = self.output_padding or (None,) * self.rank
        sizes = tuple(
            transposed_output_size(n, k, s, d, self.padding, p)
            for n, k, s, d, p in zip(spatial, self.kernel_size, self.strides, self.dilation_rate, output_padding)
        )
        if channels_last:
            return (input_shape[0],) + sizes + (self.filters,)
        return (input_shape[0], self.filters) + sizes

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "output_padding": self.output_padding,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            **weight_options_config(self, "kernel", "bias", activity_regularizer=True),
        }


_CONV_TRANSPOSE_DOC = """{rank}-D transposed convolution layer with a hand-derived backward pass.

    Drop-in for `keras.layers.Conv{rank}DTranspose`: same arguments,
    defaults, weights (`kernel` of shape `kernel_size + (filters,
    input_channels)`, then `bias` of shape `(filters,)`) and outputs.{runs_as}
    The forward is a convolution's input gradient, the backward a
    convolution and its kernel gradient: `conv_transpose_op` (derivation in
    `transposed`). The activation's derivative is fused into the backward,
    except softmax's and sigmoid's, which run after it as Keras's do.
    Keras's transposed convolutions have no groups, LoRA or quantization;
    neither has this.

    Args:
        filters: Positive integer, number of output channels.
        kernel_size: int or tuple of {rank} ints, the window size.
        strides: int or tuple of {rank} ints. `strides > 1` is incompatible
            with `dilation_rate > 1`.
        padding: `"valid"` or `"same"` (case-insensitive).
        {arguments}
        dilation_rate: int or tuple of {rank} ints.
        activation: Activation name or `keras.activations` function (see
            `keras_bp.activations.SUPPORTED`). `None` means linear.
        use_bias: Whether to add a bias vector.
        kernel_initializer, bias_initializer: Initializers.
        kernel_regularizer, bias_regularizer, activity_regularizer: Regularizers.
        kernel_constraint, bias_constraint: Constraints.

    Input shape:
        `(batch, {spatial}, channels)` for channels_last,
        `(batch, channels, {spatial})` for channels_first.

    Output shape:
        `(batch, {new_spatial}, filters)`
        or `(batch, filters, {new_spatial})`; each new length, with
        k_e = dilation_rate * (kernel_size - 1) + 1:
        `"valid"`: `(n - 1) * strides + k_e + output_padding` (without
        `output_padding`: `(n - 1) * strides + max(k_e, strides)`);
        `"same"`: `(n - 1) * strides + k_e % 2 + output_padding` (without:
        `n * strides`).
    """

_OUTPUT_PADDING_DOC = """output_padding: int or tuple of {rank} ints >= 0, each less than
            the stride on its axis: extra rows at the end of the output.
            `None` (default) infers the output's size (see below)."""

_DATA_FORMAT_DOC = """data_format: `"channels_last"` (default from `keras.config`) or
            `"channels_first"`."""

_RUNS_AS = {
    1: "\n    It runs as a 2-D one of height 1.",
    2: "",
    3: "\n    It runs on NDHWC tensors.",
}


def _conv_transpose_doc(rank):
    spatial, new_spatial = spatial_names(rank), spatial_names(rank, "new_")
    output_padding = _OUTPUT_PADDING_DOC.format(rank=rank)
    # Keras's Conv3DTranspose takes data_format before output_padding; the others after.
    first, second = (_DATA_FORMAT_DOC, output_padding) if rank == 3 else (output_padding, _DATA_FORMAT_DOC)
    return _CONV_TRANSPOSE_DOC.format(
        rank=rank, runs_as=_RUNS_AS[rank], arguments=f"{first}\n        {second}", spatial=spatial,
        new_spatial=new_spatial,
    )


@keras.saving.register_keras_serializable(package="keras_bp")
class Conv1DTranspose(_ConvTranspose):
    __doc__ = _conv_transpose_doc(1)
    rank = 1


@keras.saving.register_keras_serializable(package="keras_bp")
class Conv2DTranspose(_ConvTranspose):
    __doc__ = _conv_transpose_doc(2)
    rank = 2

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", output_padding=None, data_format=None,
                 dilation_rate=(1, 1), activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 **kwargs):
        super().__init__(
            filters, kernel_size, strides, padding, output_padding, data_format, dilation_rate,
            activation=activation, use_bias=use_bias, kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer, kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint, **kwargs,
        )


@keras.saving.register_keras_serializable(package="keras_bp")
class Conv3DTranspose(_ConvTranspose):
    __doc__ = _conv_transpose_doc(3)
    rank = 3

    # Keras's order: data_format before output_padding (Conv1D/2DTranspose have them the other way round).
    def __init__(self, filters, kernel_size, strides=(1, 1, 1), padding="valid", data_format=None,
                 output_padding=None, dilation_rate=(1, 1, 1), activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 **kwargs):
        super().__init__(
            filters, kernel_size, strides, padding, output_padding, data_format, dilation_rate,
            activation=activation, use_bias=use_bias, kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer, kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint, **kwargs,
        )
