"""RepeatVector: n copies of the input along a new axis; the backward sums the copies' gradients.

    y[b, r, f] = x[b, f]                for r = 0 .. n - 1     (batch, n, features)
    dL/dx[b, f] = sum_r dy[b, r, f]                            (batch, features)
"""

import functools

import keras
import tensorflow as tf

from keras_bp._validation import invalid
from keras_bp.core import manual_gradient
from keras_bp.layers._stateless import build_at_init


@functools.lru_cache(maxsize=None)
def _repeat_op(n):
    def forward(x):
        return tf.repeat(x[:, None, :], n, axis=1), None

    def backward(_, dy):
        return tf.reduce_sum(dy, axis=1)

    return manual_gradient(forward, backward, name="repeat_vector")


@keras.saving.register_keras_serializable(package="keras_bp")
class RepeatVector(keras.layers.Layer):
    """Repeats the input n times along a new axis 1 (drop-in for `keras.layers.RepeatVector`).

    Args:
        n: Integer, the number of copies.

    Input shape:
        `(batch_size, features)`.

    Output shape:
        `(batch_size, n, features)`.
    """

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(n, int) or isinstance(n, bool):
            # Keras raises TypeError here.
            lead = f"Expected an integer value for `n`, got {type(n)}."
            raise TypeError(str(invalid("n", n, "a positive integer", lead)))
        if n <= 0:
            raise invalid("n", n, "a positive integer", lead=f"Argument `n` should be a positive integer. Received: n={n}")
        self.n = n
        self.input_spec = keras.layers.InputSpec(ndim=2)
        build_at_init(self)

    def call(self, inputs):
        return _repeat_op(self.n)(inputs)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n, input_shape[1])

    def get_config(self):
        return {**super().get_config(), "n": self.n}
