"""Drop-in replacements for keras.layers with hand-derived backward passes."""

from keras_bp.layers.dense import Dense
from keras_bp.layers.recurrent import GRU, LSTM, SimpleRNN

__all__ = ["Dense", "GRU", "LSTM", "SimpleRNN"]
