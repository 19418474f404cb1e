"""The argument checks under their old import path, for `keras_bp.layers.recurrent`.

The checks live in `keras_bp._validation`; this module only re-exports the
ones recurrent.py imports, until it imports them from there.
"""

from keras_bp._validation import check_input_rank, check_positive_int
from keras_bp._validation import check_unit_interval as check_rate

__all__ = ["check_input_rank", "check_positive_int", "check_rate"]
