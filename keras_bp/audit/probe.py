"""The audit's probe: both gradient passes of the training loss, traced once.

In one `tf.function`, the gradient of the model's training loss
(`compute_loss`, regularization losses included) with respect to every
trainable variable, twice:

    g_manual = dL/dw  as training computes it (the manual backward passes)
    g_ref    = dL/dw  traced inside `keras_bp.autodiff()`: TensorFlow's
               autodiff of the same forward math

then, on an accelerator, their per-variable sums (keras_bp.audit.statistics;
only they come back), and with `directions` the finite-difference slopes
(keras_bp.audit.directions). When every variable is in host memory the sums
are taken in NumPy instead (fewer ops to trace).

No side effects: every non-trainable variable (BatchNormalization moving
statistics, the state of Dropout's seed generator, metric accumulators) is
saved before each pass and assigned back after it, so both passes see the
same random masks and training continues exactly as without the audit.
"""

from typing import List, NamedTuple, Optional

import keras
import numpy as np
import tensorflow as tf

from keras_bp._state import restore, snapshot
from keras_bp.audit import _keras, directions
from keras_bp.audit.float64 import float64_compute
from keras_bp.audit.statistics import _compare_all
from keras_bp.core import autodiff

__all__ = ["Gradients", "Probe", "ProbeResult"]


class ProbeResult(NamedTuple):
    """What one call of the probe returns."""

    loss: np.float64  # the training loss, unscaled
    manual: List[tf.Tensor]  # g_manual per variable, in float64 (left where it lives)
    reference: List[tf.Tensor]  # g_ref likewise
    sums: Optional[np.ndarray]  # `_compare_all`'s [n, 4]; None where the statistics are taken on the host
    maxes: Optional[np.ndarray]  # `_compare_all`'s [n, 2]; likewise
    slopes: Optional[directions.Slopes]  # as NumPy arrays; None without directions

    def host_gradients(self):
        """(manual, reference) as lists of NumPy arrays."""
        return [g.numpy() for g in self.manual], [g.numpy() for g in self.reference]


class Gradients(NamedTuple):
    """Both passes' gradients, one tensor per variable."""

    manual: List[tf.Tensor]
    reference: List[tf.Tensor]


class Probe:
    """A model's probe, traced at construction.

    Args:
        model: the audited model.
        variables: its trainable variables.
        state: the variables a forward pass may write (restored after each pass).
        spec: the audit batch's `element_spec`.
        directions: how many random directions `slopes` checks (0: none).
        eps: their step sizes.

    Attributes:
        function: the traced concrete function.
        traces: how many times it was traced (once).
        host_statistics: whether the statistics are taken on the host.
    """

    def __init__(self, model, variables, state, spec, directions, eps):
        self._model = model
        self._variables = variables
        self._state = state
        self._spec = spec
        self._directions = directions
        self._eps = eps
        self.traces = 0
        # Where the statistics are taken: with every variable in host memory
        # the gradients are read as they are and summed in NumPy, which keeps
        # about a third of the ops out of the function (less to trace and to
        # optimize at the first audit); on an accelerator they are summed
        # where they live and only the sums come back.
        self.host_statistics = all(_on_host(v) for v in variables)
        # Traced here, once; calling the concrete function skips the
        # signature matching of each call (a third of a small audit's time).
        self.function = tf.function(
            self._probe,
            input_signature=[spec, tf.TensorSpec([2], tf.int64)],
            jit_compile=bool(model.jit_compile),
            # Like Keras's own train function: plain tracing, no AutoGraph.
            autograph=False,
        ).get_concrete_function()

    def __call__(self, batch, seed):
        """The `ProbeResult` on `batch`, the directions drawn from `seed` (two integers)."""
        out = self.function(batch, tf.constant(seed))
        return out._replace(
            loss=out.loss.numpy(),
            sums=None if out.sums is None else out.sums.numpy(),
            maxes=None if out.maxes is None else out.maxes.numpy(),
            slopes=None if out.slopes is None else directions.Slopes(*(s.numpy() for s in out.slopes)),
        )

    def trace_float64(self):
        """Traces both passes with every computation in float64: a concrete function of a batch returning `Gradients`.

        Raises whatever the model raises where it cannot run in float64.
        """
        with float64_compute(self._model):
            return tf.function(
                self._gradients,
                input_signature=[self._spec],
                jit_compile=bool(self._model.jit_compile),
                autograph=False,
            ).get_concrete_function()

    def _probe(self, batch, seed):
        """Traced once: both gradients, their statistics and the direction checks."""
        self.traces += 1
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
        loss, manual, reference, state = self._two_passes(x, y, sample_weight)
        sums = maxes = slopes = None
        if not self.host_statistics:
            statistics = _compare_all(manual, reference)
            sums, maxes = statistics["sums"], statistics["maxes"]
        if self._directions:
            slopes = directions.slopes(
                lambda: self._loss(x, y, sample_weight),
                self._variables, state, manual, reference, seed, self._directions, self._eps,
            )
        # The gradients themselves come back too: the host statistics read
        # them, and so does the rare audit that finds non-finite entries (on
        # an accelerator they stay in device memory unless read).
        return ProbeResult(tf.cast(loss, tf.float64), manual, reference, sums, maxes, slopes)

    def _gradients(self, batch):
        """Traced inside `float64_compute`: both passes."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
        _, manual, reference, _ = self._two_passes(x, y, sample_weight)
        return Gradients(manual, reference)

    def _two_passes(self, x, y, sample_weight):
        """(loss, manual gradients, reference gradients, the state both started from)."""
        state = snapshot(self._state)
        loss, manual = self._loss_and_gradients(x, y, sample_weight)
        restore(state)
        # The autodiff switch is read at trace time: this pass is traced with
        # every manual-gradient op running its forward only.
        with autodiff():
            _, reference = self._loss_and_gradients(x, y, sample_weight)
        restore(state)
        return loss, manual, reference, state

    def _loss_and_gradients(self, x, y, sample_weight):
        with tf.GradientTape() as tape:
            loss = self._loss(x, y, sample_weight)
        # Unscaled loss in both passes: loss scaling is the optimizer's business,
        # and leaving it out keeps the two passes comparable.
        grads = tape.gradient(loss, self._variables)
        dense = []
        for v, g in zip(self._variables, grads):
            if g is None:
                dense.append(tf.zeros(v.shape, tf.float64))
            else:
                # IndexedSlices (embeddings) become dense here.
                dense.append(tf.cast(tf.convert_to_tensor(g), tf.float64))
        return loss, dense

    def _loss(self, x, y, sample_weight):
        y_pred = _keras.training_outputs(self._model, x)
        loss = _keras.training_loss(self._model, x, y, y_pred, sample_weight)
        return tf.cast(loss, tf.float32)


def _on_host(variable):
    """Whether a (Keras or tf) variable's value lives in host (CPU) memory."""
    value = variable.value if isinstance(variable, keras.Variable) else variable
    return tf.DeviceSpec.from_string(value.device or "").device_type == "CPU"
