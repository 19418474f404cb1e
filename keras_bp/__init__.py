"""keras_bp: Keras 3 layers, losses and optimizers with hand-derived backward passes.

Public names are listed here by hand; everything else is private to its module.
"""

import keras as _keras

if _keras.backend.backend() != "tensorflow":
    raise ImportError(
        "keras_bp needs the TensorFlow backend of Keras, but Keras is using "
        f"'{_keras.backend.backend()}'. Set the environment variable "
        "KERAS_BACKEND=tensorflow before importing keras (for example "
        "`export KERAS_BACKEND=tensorflow`)."
    )

from keras_bp.core import autodiff, autodiff_enabled, manual_gradient
from keras_bp.gradcheck import GradientCheckError, GradientCheckResult, check_gradients
from keras_bp import activations
from keras_bp import layers
from keras_bp import losses
from keras_bp import optimizers

__version__ = "0.1.0"

__all__ = [
    "GradientCheckError",
    "GradientCheckResult",
    "activations",
    "autodiff",
    "autodiff_enabled",
    "check_gradients",
    "layers",
    "losses",
    "manual_gradient",
    "optimizers",
]
