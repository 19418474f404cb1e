"""KernelLayer: the base of the layers computing y = activation(op(x, kernel, bias))."""

import keras
import tensorflow as tf

from keras_bp import activations
from keras_bp.layers._weight_options import add_weight_with_options, set_weight_options, weight_options_config


class KernelLayer(keras.layers.Layer):
    """What Dense, Conv1D and Conv2D share: activation, kernel, bias, their options, `call`.

    A subclass passes the activation and weight options to `__init__`, sets
    `self._op` to its manual-gradient op `(x, kernel, bias or None) -> y`
    with `self._fused_activation` fused in, and calls `_add_kernel_and_bias`
    in `build`. Softmax and sigmoid run after the op as
    `self._activation_after` (see `keras_bp.activations.fused_and_after`).
    """

    def __init__(
        self, activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
        activity_regularizer, kernel_constraint, bias_constraint, **kwargs,
    ):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        set_weight_options(
            self,
            kernel=(kernel_initializer, kernel_regularizer, kernel_constraint),
            bias=(bias_initializer, bias_regularizer, bias_constraint),
        )
        self._fused_activation, self._activation_after = activations.fused_and_after(self.activation)

    def _add_kernel_and_bias(self, kernel_shape, bias_shape):
        """Adds `kernel` and (when `use_bias`) `bias`, else sets `bias` to None.

        Same names, order, initializers, regularizers and constraints as
        Keras's Dense and Conv layers, so weights transfer both ways.
        """
        self.kernel = add_weight_with_options(self, "kernel", kernel_shape)
        self.bias = add_weight_with_options(self, "bias", bias_shape) if self.use_bias else None

    def call(self, inputs):
        # Trap 1 (docs/traps.md): read the weights here, outside the custom gradient.
        kernel = tf.convert_to_tensor(self.kernel)
        bias = None if self.bias is None else tf.convert_to_tensor(self.bias)
        outputs = self._op(inputs, kernel, bias)
        if self._activation_after is not None:
            return activations.apply(self._activation_after, outputs)
        return outputs

    def _kernel_options_config(self):
        """The activation and weight options of `get_config`, in Keras's order."""
        return {
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            **weight_options_config(self, "kernel", "bias"),
        }
