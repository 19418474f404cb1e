"""KernelLayer: the base of the layers computing y = activation(op(x, kernel, bias)), LoRA adapters optional."""

import tensorflow as tf

from keras_bp import activations
from keras_bp.layers._lora import LoraLayer
from keras_bp.layers._quantization import NoQuantization
from keras_bp.layers._weight_options import add_weight_with_options, set_weight_options, weight_options_config


class KernelLayer(LoraLayer, NoQuantization):
    """What Dense, Conv1D and Conv2D share: activation, kernel, bias, their options, LoRA, `call`.

    A subclass passes the activation, weight and LoRA options to `__init__`,
    implements `_make_ops` (setting `self._op`, its manual-gradient op
    `(x, kernel, bias, lora_a, lora_b) -> y` with `self._fused_activation`
    fused in and `self._lora_scale` in its closure; None for an absent bias
    or adapters) and calls it at the end of its `__init__`, and calls
    `_add_kernel_and_bias` in `build`. Softmax and sigmoid run after the op
    as `self._activation_after` (see `keras_bp.activations.fused_and_after`).
    """

    _lora_weight = "kernel"
    _lora_noun = "kernel"

    def __init__(
        self, activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
        activity_regularizer, kernel_constraint, bias_constraint, lora_rank, lora_alpha, **kwargs,
    ):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self._refuse_quantized_policy()
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        set_weight_options(
            self,
            kernel=(kernel_initializer, kernel_regularizer, kernel_constraint),
            bias=(bias_initializer, bias_regularizer, bias_constraint),
        )
        self._init_lora(lora_rank, lora_alpha)
        self._fused_activation, self._activation_after = activations.fused_and_after(self.activation)

    @property
    def kernel(self):
        """The kernel the layer applies: W, or W + (lora_alpha / lora_rank) A B with LoRA on (as Keras's)."""
        return self._lora_merged()

    def _add_kernel_and_bias(self, kernel_shape, bias_shape, **kernel_options):
        """Adds `kernel` and (when `use_bias`) `bias`, else sets `bias` to None; then LoRA's adapters if asked.

        Same names, order, initializers, regularizers and constraints as
        Keras's Dense and Conv layers, so weights transfer both ways;
        `kernel_options` go to the kernel's `add_weight` (EinsumDense's
        initializer, its fan along the equation's axes).
        """
        self._refuse_quantized_policy()  # a policy may be set between __init__ and build
        self._kernel = add_weight_with_options(self, "kernel", kernel_shape, **kernel_options)
        self.bias = add_weight_with_options(self, "bias", bias_shape) if self.use_bias else None
        self.built = True
        self._build_lora()

    def call(self, inputs):
        if not inputs.dtype.is_floating:
            # Trap 13 (docs/traps.md): Keras computes integer inputs in the compute dtype.
            inputs = tf.cast(inputs, self.compute_dtype)
        # Trap 1 (docs/traps.md): read the weights here, outside the custom gradient.
        kernel = tf.convert_to_tensor(self._kernel)
        bias = None if self.bias is None else tf.convert_to_tensor(self.bias)
        # The adapters are float32 (float64 in a float64 layer); the math runs in the kernel's dtype.
        lora_a, lora_b = (
            None if v is None else tf.cast(tf.convert_to_tensor(v), kernel.dtype) for v in self._lora_adapters()
        )
        outputs = self._apply_op(inputs, kernel, bias, lora_a, lora_b)
        if self._activation_after is not None:
            return activations.apply(self._activation_after, outputs)
        return outputs

    def _apply_op(self, inputs, kernel, bias, lora_a, lora_b):
        """The layer's op on its inputs (Dense also takes sparse ones)."""
        return self._op(inputs, kernel, bias, lora_a, lora_b)

    def _kernel_options_config(self):
        """The activation and weight options of `get_config`, in Keras's order."""
        return {
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            **weight_options_config(self, "kernel", "bias"),
        }
