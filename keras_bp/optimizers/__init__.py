"""Optimizers whose update rules are written out by hand.

Each is a `keras.optimizers.Optimizer` with the same arguments and defaults as
its Keras namesake; its docstring gives the update rule it implements.
"""

from keras_bp.optimizers.adadelta import Adadelta
from keras_bp.optimizers.adagrad import Adagrad
from keras_bp.optimizers.adam import Adam, AdamW
from keras_bp.optimizers.nadam import Nadam
from keras_bp.optimizers.rmsprop import RMSprop
from keras_bp.optimizers.sgd import SGD

__all__ = ["SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "Nadam"]
