"""The LSTM layer, a drop-in for `keras.layers.LSTM`."""

import keras

from keras_bp import activations
from keras_bp.layers.recurrent.base import SHARED_ARGS_DOC, BaseRNN, check_use_cudnn, shared_arguments
from keras_bp.layers.recurrent.lstm_cell import LSTMCell


@keras.saving.register_keras_serializable(package="keras_bp")
class LSTM(BaseRNN):
    """Long Short-Term Memory layer (Hochreiter 1997) trained by hand-written BPTT.

    Drop-in for `keras.layers.LSTM`: same arguments, weights `kernel`
    (input_dim, 4 units), `recurrent_kernel` (units, 4 units), `bias`
    (4 units,) in Keras's gate order i, f, c, o, and outputs. Never uses cuDNN
    (`use_cudnn` is accepted and ignored). The step and its backward are in
    `LSTMCell` (lstm_cell.py), the time loop in bptt.py.

    Args:
        units: Positive integer, dimensionality of the output space.
        activation: Activation of the candidate and the cell output (default "tanh").
        recurrent_activation: Activation of the gates (default "sigmoid").
        unit_forget_bias: Add 1 to the forget gate's bias at initialization.
    """

    def __init__(
        self,
        units,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        unit_forget_bias=True,
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        use_cudnn="auto",
        **kwargs,
    ):
        super().__init__(**shared_arguments(locals()))
        self.use_cudnn = check_use_cudnn(use_cudnn)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.unit_forget_bias = bool(unit_forget_bias)
        self.cell = LSTMCell(self.activation, self.recurrent_activation)

    def _bias_initializer(self):
        if not self.unit_forget_bias:
            return self.bias_initializer

        # Keras's unit_forget_bias: the forget block (i, f, c, o) starts at one.
        def initializer(_, *args, **kwargs):
            n = self.units
            return keras.ops.concatenate(
                [
                    self.bias_initializer((n,), *args, **kwargs),
                    keras.initializers.get("ones")((n,), *args, **kwargs),
                    self.bias_initializer((2 * n,), *args, **kwargs),
                ]
            )

        return initializer

    def get_config(self):
        config = super().get_config()
        config["recurrent_activation"] = activations.serialize(self.recurrent_activation)
        config["unit_forget_bias"] = self.unit_forget_bias
        config["use_cudnn"] = self.use_cudnn
        return config


LSTM.__doc__ += "\n    Args (shared):" + SHARED_ARGS_DOC
