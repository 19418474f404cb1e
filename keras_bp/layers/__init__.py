"""Drop-in replacements for keras.layers with hand-derived backward passes."""

from keras_bp.layers.dense import Dense

__all__ = ["Dense"]
