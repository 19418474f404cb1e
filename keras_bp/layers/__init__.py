"""Drop-in replacements for keras.layers with hand-derived backward passes."""

from keras_bp.layers.conv import Conv1D, Conv2D
from keras_bp.layers.dense import Dense
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

__all__ = [
    "AveragePooling1D",
    "AveragePooling2D",
    "BatchNormalization",
    "Conv1D",
    "Conv2D",
    "Dense",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "LayerNormalization",
    "MaxPooling1D",
    "MaxPooling2D",
]
