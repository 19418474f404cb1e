"""The GRU layer, a drop-in for `keras.layers.GRU`."""

import keras

from keras_bp import activations
from keras_bp.layers.recurrent.base import SHARED_ARGS_DOC, BaseRNN, check_use_cudnn, shared_arguments
from keras_bp.layers.recurrent.gru_cell import GRUCell


@keras.saving.register_keras_serializable(package="keras_bp")
class GRU(BaseRNN):
    """Gated Recurrent Unit (Cho et al. 2014) trained by hand-written BPTT.

    Drop-in for `keras.layers.GRU`: same arguments, weights `kernel`
    (input_dim, 3 units), `recurrent_kernel` (units, 3 units), `bias` in
    Keras's gate order z, r, h, shaped (2, 3 units) with `reset_after=True`
    (input and recurrent biases) and (3 units,) without, and outputs. Never
    uses cuDNN. The step and its backward are in `GRUCell` (gru_cell.py), the
    time loop in bptt.py.

    Args:
        units: Positive integer, dimensionality of the output space.
        activation: Activation of the candidate (default "tanh").
        recurrent_activation: Activation of the gates (default "sigmoid").
        reset_after: Apply the reset gate after the recurrent product (True,
            Keras's default and cuDNN's convention) or before it.
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
        reset_after=True,
        use_cudnn="auto",
        **kwargs,
    ):
        super().__init__(**shared_arguments(locals()))
        self.use_cudnn = check_use_cudnn(use_cudnn)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.reset_after = bool(reset_after)
        self.cell = GRUCell(self.activation, self.recurrent_activation, self.reset_after)

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def get_config(self):
        config = super().get_config()
        config["recurrent_activation"] = activations.serialize(self.recurrent_activation)
        config["reset_after"] = self.reset_after
        config["use_cudnn"] = self.use_cudnn
        return config


GRU.__doc__ += "\n    Args (shared):" + SHARED_ARGS_DOC
