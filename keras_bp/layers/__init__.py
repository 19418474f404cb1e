"""Drop-in replacements for keras.layers with hand-derived backward passes."""

from keras_bp.layers.activation import ELU, Activation, LeakyReLU, ReLU, Softmax
from keras_bp.layers.dense import Dense
from keras_bp.layers.dropout import Dropout
from keras_bp.layers.embedding import Embedding
from keras_bp.layers.recurrent import GRU, LSTM, SimpleRNN
from keras_bp.layers.reshaping import Flatten, Reshape

__all__ = [
    "Activation",
    "Dense",
    "Dropout",
    "ELU",
    "Embedding",
    "Flatten",
    "GRU",
    "LSTM",
    "LeakyReLU",
    "ReLU",
    "Reshape",
    "SimpleRNN",
    "Softmax",
]
