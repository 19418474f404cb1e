"""NoQuantization: the refusal of Keras's quantization API by layers whose backward is hand-derived.

Keras's Dense, Conv and Embedding can be quantized (`layer.quantize("int8")`,
or a dtype policy such as `"int8_from_float32"`), after which they run
integer or float8 kernels with Keras's own gradients. keras_bp's counterparts
exist for their hand-derived backward passes, which quantized inference does
not use; they refuse every way in, with one message, instead of training or
predicting with weights they do not hold.

Keras dispatches as follows, and each entry is covered: `quantize()` (its
wrapper first checks that the layer is built and the mode valid, with Keras's
errors), a quantized dtype policy given to `__init__` or set before `build`
(checked in `__init__` and `build`), one set on a built layer (the setter
calls `quantize`), `quantized_build` and `quantized_call`. An invalid mode
keeps Keras's own "Invalid quantization mode" error.
"""

import keras

# NOTE: Keras 3.15 exports no list of its quantization modes; this is where Layer reads it.
from keras.src import dtype_policies


class NoQuantization(keras.layers.Layer):
    """Mixin: every quantization entry point raises `NotImplementedError`, naming Keras's layer."""

    def _refuse_quantized_policy(self):
        """Raises if the layer's dtype policy is a quantized one (int8, int4, float8, ...)."""
        if self.quantization_mode is not None:
            raise self._quantization_refused(self.quantization_mode, f"dtype={self.dtype_policy.name!r}")

    def _quantization_refused(self, mode, received):
        cls = type(self).__name__
        return NotImplementedError(
            f"keras_bp.layers.{cls} does not support quantization (mode {mode!r}), received: {received}. "
            f"Its backward pass is hand-derived for float weights; use keras.layers.{cls} "
            "for quantized inference (keras_bp's and Keras's weights transfer both ways)."
        )

    def quantize(self, mode=None, type_check=True, config=None):
        raise self._quantization_refused(mode, f"quantize(mode={mode!r})")

    def quantized_build(self, shape, mode, config=None):
        if mode not in dtype_policies.QUANTIZATION_MODES:
            raise self._quantization_mode_error(mode)
        raise self._quantization_refused(mode, f"quantized_build(mode={mode!r})")

    def quantized_call(self, *args, **kwargs):
        mode = self.quantization_mode
        if mode not in dtype_policies.QUANTIZATION_MODES:
            raise self._quantization_mode_error(mode)
        raise self._quantization_refused(mode, f"dtype={self.dtype_policy.name!r}")
