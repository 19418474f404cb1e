"""The monitor's probe: the training loss's gradient and the step the optimizer would take, traced once.

In one `tf.function`, on the monitor's batch, exactly as `train_step` does:

    loss  = model's training loss (compute_loss, training=True), times the
            optimizer's loss scale (scale_loss: 1 unless loss scaling)
    g     = dloss/dw                       per trainable variable
    w'    = optimizer.apply(g) on w        the optimizer's own update rule,
                                           with its own state (moments,
                                           iterations, schedules)
    dw    = w' - w

then every value the pass wrote is put back: the weights, the optimizer's
variables (iterations included), and the model's non-trainable state
(BatchNormalization statistics, seed generators, metric accumulators), so
training continues bit for bit as without the monitor. Per variable, in
float64 (the gradient unscaled by the loss scale):

    column 0  sum g^2            1  max |g|        2  non-finite entries of g
    column 3  sum w^2            4  sum dw^2

and, through keras_bp.health.capture, per layer call the non-finite count of
its outputs and, for ReLU-family layers, which units are alive.
"""

from typing import List, NamedTuple, Optional

import keras
import numpy as np
import tensorflow as tf

from keras_bp._state import model_state, restore, snapshot
from keras_bp.audit import _keras
from keras_bp.health import capture

__all__ = ["HealthProbe", "ProbeResult"]

SUM_G2, MAX_G, NONFINITE_G, SUM_W2, SUM_DW2 = range(5)


class ProbeResult(NamedTuple):
    """One call of the probe, as NumPy values (gradients left where they live)."""

    loss: float  # the training loss, unscaled
    sums: np.ndarray  # [variables, 5] float64: the columns of the module docstring
    input_nonfinite: int  # NaN/Inf entries in the batch's inputs
    call_nonfinite: np.ndarray  # [layer calls] int64, in the order the calls returned
    dead: np.ndarray  # [ReLU-family layers] dead units
    gradients: Optional[List[tf.Tensor]]  # the gradients, when asked for (histograms)


class HealthProbe:
    """A model's probe, traced at construction.

    Args:
        model: the model `fit` trains (built and compiled, its optimizer built).
        spec: the monitor batch's `element_spec`.
        gradients: whether each call returns the gradients too (for histograms).

    Attributes:
        variables: the trainable variables, in the order of `sums`' rows.
        calls: the name of the layer of each `call_nonfinite` entry.
        relu_layers: the ReLU-family layers' names, in the order of `dead`,
            and `units`: their number of units.
        traces: how many times the function was traced (once).
    """

    def __init__(self, model, spec, gradients):
        self._model = model
        self._optimizer = model.optimizer
        if not self._optimizer.built:
            self._optimizer.build(model.trainable_variables)
        self.variables = list(model.trainable_variables)
        self._state = model_state(model)
        self._optimizer_state = list(self._optimizer.variables)
        self._layers = _keras.layers(model, include_self=True)
        self._with_gradients = gradients
        self.calls, self.relu_layers, self.units = [], [], []
        self.traces = 0
        self.function = tf.function(
            self._probe,
            input_signature=[spec],
            jit_compile=bool(model.jit_compile),
            # Like Keras's own train function: plain tracing, no AutoGraph.
            autograph=False,
        ).get_concrete_function()

    def __call__(self, batch):
        out = self.function(batch)
        return ProbeResult(
            loss=float(out[0].numpy()),
            sums=out[1].numpy(),
            input_nonfinite=int(out[2].numpy()),
            call_nonfinite=out[3].numpy(),
            dead=out[4].numpy(),
            gradients=list(out[5]) if self._with_gradients else None,
        )

    def _probe(self, batch):
        """Traced once: the gradient, the optimizer's step on it, everything put back."""
        self.traces += 1
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
        state = snapshot(self._state)
        weights = snapshot(self.variables)
        optimizer_state = snapshot(self._optimizer_state)
        with capture.capturing(self._layers) as seen:
            with tf.GradientTape() as tape:
                y_pred = _keras.training_outputs(self._model, x)
                loss = _keras.training_loss(self._model, x, y, y_pred, sample_weight)
                scaled = self._optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, self.variables)
        # The optimizer's own step, as train_step takes it (None gradients
        # included: apply skips them as training does).
        self._optimizer.apply(grads, self.variables)
        steps = [
            tf.cast(v.value, tf.float64) - tf.cast(w, tf.float64) for v, (_, w) in zip(self.variables, weights)
        ]
        restore(weights)
        restore(optimizer_state)
        restore(state)
        # NOTE: the loss scale (1 without loss scaling) is read after the
        # optimizer's state is put back: a dynamic scale may have moved.
        unscale = 1.0 / tf.cast(self._optimizer.scale_loss(tf.constant(1.0, tf.float32)), tf.float64)
        rows, dense = [], []
        for v, g, dw, (_, w) in zip(self.variables, grads, steps, weights):
            if g is None:
                g = tf.zeros(v.shape, tf.float64)
            g = tf.cast(tf.convert_to_tensor(g), tf.float64) * unscale  # IndexedSlices become dense
            dense.append(g)
            w = tf.cast(w, tf.float64)
            rows.append(
                tf.stack(
                    [
                        tf.reduce_sum(g * g),
                        tf.reduce_max(tf.abs(g)) if g.shape.num_elements() else tf.constant(0.0, tf.float64),
                        tf.reduce_sum(tf.cast(tf.logical_not(tf.math.is_finite(g)), tf.float64)),
                        tf.reduce_sum(w * w),
                        tf.reduce_sum(dw * dw),
                    ]
                )
            )
        self.calls = [c.layer for c in seen.calls]
        relu = {}
        for c in seen.calls:
            if c.alive is not None:
                # A layer called more than once: a unit is alive if any call moved it.
                relu[c.layer] = c.alive if c.layer not in relu else relu[c.layer] | c.alive
        self.relu_layers = list(relu)
        self.units = [int(alive.shape[0]) for alive in relu.values()]
        dead = [tf.reduce_sum(tf.cast(tf.logical_not(alive), tf.int64)) for alive in relu.values()]
        input_nonfinite = tf.constant(0, tf.int64)
        for tensor in tf.nest.flatten(x):
            if isinstance(tensor, tf.Tensor) and tensor.dtype.is_floating:
                input_nonfinite += tf.reduce_sum(tf.cast(tf.logical_not(tf.math.is_finite(tensor)), tf.int64))
        return (
            tf.cast(loss, tf.float64),
            tf.stack(rows),
            input_nonfinite,
            _stack_int([c.nonfinite for c in seen.calls]),
            _stack_int(dead),
            dense if self._with_gradients else [],
        )


def _stack_int(values):
    return tf.stack(values) if values else tf.zeros([0], tf.int64)
