"""Helpers every keras_bp optimizer shares beyond `keras.optimizers.Optimizer`; private to `keras_bp.optimizers`.

The Keras 2 `lr=` spelling, dense gradients, the dtype of per-step scalars.
Argument checks are `keras_bp._validation`'s.
"""

import functools
import warnings

import tensorflow as tf


def accepts_keras2_lr(init):
    """Lets `__init__` take the Keras 2 spelling `lr=` for `learning_rate=`.

    Keras 3 raises on `lr=`, but the Keras 2 tutorials many users start from use
    it. The wrapper sees which arguments the caller really passed, so it can tell
    `SGD(lr=0.1)` (warn, then use 0.1) from `SGD(0.1, lr=0.1)` (ambiguous: raise),
    which a default value in the signature could not.
    """

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        if "lr" in kwargs:
            lr = kwargs.pop("lr")
            if args or "learning_rate" in kwargs:
                learning_rate = args[0] if args else kwargs["learning_rate"]
                raise ValueError(
                    "Pass the learning rate once, as `learning_rate` (`lr` is its "
                    f"Keras 2 name). Received: learning_rate={learning_rate!r}, "
                    f"lr={lr!r}"
                )
            warnings.warn(
                f"`lr` is deprecated; the argument is called `learning_rate` in "
                f"Keras 3. Use {type(self).__name__}(learning_rate={lr!r}).",
                DeprecationWarning,
                stacklevel=2,
            )
            kwargs["learning_rate"] = lr
        init(self, *args, **kwargs)

    return __init__


def dense_gradient(gradient, dtype):
    """The gradient as a dense tensor of `dtype`.

    A `tf.IndexedSlices` (an Embedding lookup's gradient) is summed into a dense
    tensor first. NOTE: Keras instead runs its update on the slices, so a row that
    appears twice in a batch gets g1^2 + g2^2 added to its second moment instead
    of (g1 + g2)^2, and the result differs from the dense gradient's. Densifying
    keeps sparse == dense, and equals Keras whenever the indices are unique.
    """
    if isinstance(gradient, tf.IndexedSlices):
        gradient = tf.convert_to_tensor(gradient)
    return tf.cast(gradient, dtype)


def scalar_dtype(dtype):
    """The dtype for per-step scalars (bias corrections, momentum schedules).

    The weight's own dtype, except float32 for 16-bit weights. NOTE: Keras casts
    `beta_2 = 0.999` to the weight's dtype; in bfloat16 that rounds to 1.0, so
    `1 - beta_2^t` is 0 and Keras's Adam, AdamW and Nadam never move a bfloat16
    weight. Scalars computed in float32 and cast once avoid that, and change
    nothing for float32 and float64 weights.
    """
    dtype = tf.as_dtype(dtype)
    return tf.float32 if dtype.size < 4 else dtype
