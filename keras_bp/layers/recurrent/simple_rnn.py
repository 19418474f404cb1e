"""The SimpleRNN layer, a drop-in for `keras.layers.SimpleRNN`."""

import keras

from keras_bp.layers.recurrent.base import SHARED_ARGS_DOC, BaseRNN, shared_arguments
from keras_bp.layers.recurrent.simple_rnn_cell import SimpleRNNCell


@keras.saving.register_keras_serializable(package="keras_bp")
class SimpleRNN(BaseRNN):
    """Fully connected RNN, `h_t = activation(x_t W + b + h_{t-1} U)`, trained by hand-written BPTT.

    Drop-in for `keras.layers.SimpleRNN`: same arguments, weights `kernel`
    (input_dim, units), `recurrent_kernel` (units, units), `bias` (units,),
    and outputs. The step and its backward are in `SimpleRNNCell`
    (simple_rnn_cell.py), the time loop in bptt.py.

    Args:
        units: Positive integer, dimensionality of the output space.
        activation: Activation name (default "tanh"; None means linear).
    """

    _drops_at_rate_one = True

    def __init__(
        self,
        units,
        activation="tanh",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        seed=None,
        **kwargs,
    ):
        super().__init__(**shared_arguments(locals()))
        self.cell = SimpleRNNCell(self.activation)


SimpleRNN.__doc__ += "\n    Args (shared):" + SHARED_ARGS_DOC
