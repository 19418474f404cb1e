"""The audit's data: the batch each audit takes, from arrays or a tf.data.Dataset."""

import keras
import numpy as np
import tensorflow as tf

__all__ = ["AuditData"]


class AuditData:
    """The audit batch source: a fixed tuple of arrays or a cycling tf.data.Dataset.

    `owner` is the callback's name, as the errors say it (GradientAudit,
    GradientMonitor: both take their data this way).
    """

    def __init__(self, data, owner="GradientAudit"):
        self._owner = owner
        if isinstance(data, tf.data.Dataset):
            self._dataset = data
            self._iterator = None
            spec = data.element_spec
            if not isinstance(spec, tuple) or len(spec) not in (2, 3):
                raise ValueError(
                    f"{owner}'s data must be an (x, y) or (x, y, sample_weight) "
                    f"tuple or a tf.data.Dataset of such tuples, received a Dataset "
                    f"with element_spec={spec!r}"
                )
            self.spec = spec
            self._batch = None
            return
        if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
            raise ValueError(
                f"{owner}'s data must be an (x, y) or (x, y, sample_weight) tuple "
                f"of arrays, or a tf.data.Dataset, received: {type(data).__name__}"
                + (f" of length {len(data)}" if isinstance(data, (tuple, list)) else "")
            )
        self._dataset = None
        self._batch = tuple(tf.nest.map_structure(_to_tensor, tuple(data)))
        self.spec = tf.nest.map_structure(tf.TensorSpec.from_tensor, self._batch)

    def next_batch(self):
        if self._dataset is None:
            return self._batch
        if self._iterator is None:
            self._iterator = iter(self._dataset)
        try:
            return next(self._iterator)
        except StopIteration:
            self._iterator = iter(self._dataset)
            try:
                return next(self._iterator)
            except StopIteration:
                raise ValueError(f"{self._owner}'s dataset is empty.") from None


def _to_tensor(array):
    # Like fit's data adapters: float64 NumPy data becomes floatx.
    if isinstance(array, np.ndarray) and array.dtype.kind == "f":
        return tf.convert_to_tensor(array, dtype=keras.backend.floatx())
    return tf.convert_to_tensor(array)
