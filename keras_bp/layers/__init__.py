"""Drop-in replacements for keras.layers with hand-derived backward passes."""

from keras_bp.layers.activation import ELU, Activation, LeakyReLU, PReLU, ReLU, Softmax
from keras_bp.layers.conv import Conv1D, Conv2D
from keras_bp.layers.dense import Dense
from keras_bp.layers.dropout import Dropout, SpatialDropout1D, SpatialDropout2D, SpatialDropout3D
from keras_bp.layers.embedding import Embedding
from keras_bp.layers.group_normalization import GroupNormalization
from keras_bp.layers.noise import GaussianDropout, GaussianNoise
from keras_bp.layers.normalization import BatchNormalization, LayerNormalization
from keras_bp.layers.pooling import (
    AveragePooling1D,
    AveragePooling2D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    MaxPooling1D,
    MaxPooling2D,
)
from keras_bp.layers.recurrent import GRU, LSTM, SimpleRNN
from keras_bp.layers.reshaping import Flatten, Reshape
from keras_bp.layers.unit_normalization import UnitNormalization

__all__ = [
    "Activation",
    "AveragePooling1D",
    "AveragePooling2D",
    "BatchNormalization",
    "Conv1D",
    "Conv2D",
    "Dense",
    "Dropout",
    "ELU",
    "Embedding",
    "Flatten",
    "GRU",
    "GaussianDropout",
    "GaussianNoise",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "GroupNormalization",
    "LSTM",
    "LayerNormalization",
    "LeakyReLU",
    "MaxPooling1D",
    "MaxPooling2D",
    "PReLU",
    "ReLU",
    "Reshape",
    "SimpleRNN",
    "Softmax",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "UnitNormalization",
]
