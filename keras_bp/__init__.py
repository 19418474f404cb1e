"""keras_bp: Keras 3 layers, losses and optimizers with hand-derived backward passes.

Public names are listed here by hand; everything else is private to its module.
"""

import os as _os


def _wrong_backend(name):
    return ImportError(
        "keras_bp needs the TensorFlow backend of Keras, but Keras is set to "
        f"'{name}'. Set the environment variable KERAS_BACKEND=tensorflow "
        "before importing keras (for example `export KERAS_BACKEND=tensorflow`)."
    )


# Checked before importing keras: another backend may fail to import at all.
if _os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
    raise _wrong_backend(_os.environ["KERAS_BACKEND"])

import keras as _keras  # noqa: E402

if _keras.backend.backend() != "tensorflow":  # set in ~/.keras/keras.json
    raise _wrong_backend(_keras.backend.backend())

from keras_bp.core import autodiff, autodiff_enabled, manual_gradient
from keras_bp.gradcheck import GradientCheckError, GradientCheckResult, check_gradients
from keras_bp import activations
from keras_bp import callbacks
from keras_bp.callbacks import GradientHealthWarning, GradientMonitor
from keras_bp import distribute
from keras_bp import layers
from keras_bp import losses
from keras_bp import optimizers
from keras_bp.convert import ConversionReport, convert

__version__ = "0.1.0"

__all__ = [
    "GradientCheckError",
    "GradientCheckResult",
    "GradientHealthWarning",
    "GradientMonitor",
    "activations",
    "autodiff",
    "autodiff_enabled",
    "callbacks",
    "check_gradients",
    "ConversionReport",
    "convert",
    "distribute",
    "layers",
    "losses",
    "manual_gradient",
    "optimizers",
]
