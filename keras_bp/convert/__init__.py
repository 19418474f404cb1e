"""convert(model): swap each Keras layer that has a keras_bp counterpart for it, at any depth.

`keras_bp.convert` is the function (keras_bp/__init__.py rebinds the name);
this package holds it and its report.
"""

from keras_bp.convert._converter import convert
from keras_bp.convert._report import ConversionReport

__all__ = ["convert", "ConversionReport"]
