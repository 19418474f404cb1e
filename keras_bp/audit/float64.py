"""Runs a Keras model's training loss (its forward pass included) in float64, in place.

The audit's exact check traces the model's loss and gradients a second time
with every floating-point computation in float64, without copying the model:
inside `float64_compute(model)` each layer's dtype policy computes in float64
while its variables keep their own dtype (the way mixed precision computes in
float16 with float32 variables), so a variable is read as its exact float64
value and its gradient comes back in the variable's dtype: the float64
gradient rounded once. The compiled losses compute in float64 too, and
`keras.config.floatx()` is float64 meanwhile (Keras casts add_loss and
regularization terms to it).

The switch is read when layers and losses are called, which for a
`tf.function` is when it is traced: trace inside the context, call anywhere.

NOTE: random ops draw in their input's dtype, and a float64 uniform is not
the float32 one from the same seed: dropout masks in a float64 trace differ
from those of the float32 passes (both float64 passes still share theirs).
"""

import contextlib

import keras

from keras_bp.audit import _keras

__all__ = ["float64_compute"]


def _is_float_policy(policy):
    # Integer layers (lookups) keep theirs; quantized policies are not ours to change.
    return (
        type(policy) is keras.dtype_policies.DTypePolicy
        and keras.backend.is_float_dtype(policy.compute_dtype)
    )


@contextlib.contextmanager
def float64_compute(model):
    """Inside: `model`'s layers and compiled losses compute in float64."""
    layers = _keras.layers(model, include_self=True)
    policies = [layer.dtype_policy for layer in layers]
    losses = _keras.loss_objects(model)
    loss_dtypes = [loss.dtype for loss in losses]
    floatx = keras.config.floatx()
    try:
        for layer, policy in zip(layers, policies):
            if _is_float_policy(policy):
                _keras.set_dtype_policy(layer, _keras.float64_policy(policy.variable_dtype))
        for loss in losses:
            # Keras's Loss converts y_true and y_pred to `dtype` in __call__.
            _keras.set_loss_dtype(loss, "float64")
        keras.config.set_floatx("float64")
        yield
    finally:
        keras.config.set_floatx(floatx)
        for layer, policy in zip(layers, policies):
            _keras.set_dtype_policy(layer, policy)
        for loss, dtype in zip(losses, loss_dtypes):
            _keras.set_loss_dtype(loss, dtype)
