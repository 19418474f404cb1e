"""TensorBoard output of the monitor: scalars per check and per layer, gradient histograms per variable.

Tags, at each check's optimizer step:

    gradient_health/grad_norm, /first_to_last, /warnings      scalars
    gradient_health/<layer>/grad_norm, /update_ratio          scalars, per layer with weights
    gradient_health/<layer>/dead_fraction                     scalar, per ReLU-family layer
    gradient_health/<variable path>/gradient                  histogram, per trainable variable

Written with `tf.summary`, whose scalar and histogram ops come with the
`tensorboard` package (`pip install keras-bp[tensorboard]`).
"""

import importlib
import math

import tensorflow as tf

__all__ = ["HealthWriter", "require_tensorboard"]

PREFIX = "gradient_health"


def require_tensorboard():
    """Raises an ImportError that names the extra when the tensorboard package is missing."""
    try:
        importlib.import_module("tensorboard")
    except ImportError as error:
        raise ImportError(
            "GradientMonitor(log_dir=...) writes TensorBoard summaries with tf.summary, which "
            "needs the tensorboard package: pip install 'keras-bp[tensorboard]' (or pip install tensorboard)."
        ) from error


class HealthWriter:
    """A summary writer for one `fit`: `write(record, gradients)` at each check, `close()` at the end."""

    def __init__(self, log_dir):
        self._writer = tf.summary.create_file_writer(log_dir)

    def write(self, record, gradients=None):
        scalars = {
            f"{PREFIX}/grad_norm": record.grad_norm,
            f"{PREFIX}/first_to_last": record.first_to_last,
            f"{PREFIX}/warnings": len(record.diagnoses),
        }
        for layer in record.layers:
            scalars[f"{PREFIX}/{layer.name}/grad_norm"] = layer.grad_norm
            scalars[f"{PREFIX}/{layer.name}/update_ratio"] = layer.update_ratio
        for name, fraction in record.dead_units.items():
            scalars[f"{PREFIX}/{name}/dead_fraction"] = fraction
        with self._writer.as_default(step=record.step):
            for tag, value in scalars.items():
                if not math.isnan(value):
                    tf.summary.scalar(tag, value)
            for variable, gradient in zip(record.variables, gradients or []):
                tf.summary.histogram(f"{PREFIX}/{variable.path}/gradient", gradient)
        self._writer.flush()

    def close(self):
        self._writer.close()
