"""Layer outputs seen during one traced forward pass: non-finite counts per call, live units of ReLU-family layers.

Keras 3 has no forward hooks. While the monitor's function is traced (once),
every layer's `call` is wrapped on the instance: the wrapper calls the
original and measures its output, in the traced graph, then the instance is
left as it was. Nothing runs at training time: the train function never
sees the wrappers.

Per layer call, in the order the calls return (so a layer inside a block is
listed before the block, and the first non-finite output in that order is
where non-finite values first appear going forward):

    nonfinite   count of NaN/Inf entries in its floating-point outputs

For a ReLU-family layer (`relu_units_axis` below), per unit u (the channel
axis: last, or 1 for `data_format="channels_first"`):

    alive[u]    any(y[..., u, ...] != 0)  over the batch and every other axis

A unit that is not alive output 0 for the whole batch: a dead unit.
"""

import contextlib
from typing import List, NamedTuple

import keras
import tensorflow as tf

from keras_bp.activations import ActivationPair

__all__ = ["Capture", "LayerCall", "capturing", "relu_units_axis"]

# Activations whose output is exactly 0 for every input below a threshold: a
# unit whose pre-activation is below it for every example outputs 0 and
# passes back no gradient (it is "dead"). Leaky ReLU, ELU, GELU, SiLU and
# the rest are never exactly 0 on an interval, so their units cannot die in
# this sense and are not counted.
_RELU_FAMILY = ("relu", "relu6")


class LayerCall(NamedTuple):
    """One layer call's measurements, as tensors of the traced graph."""

    layer: str  # the layer's name
    nonfinite: tf.Tensor  # int64 scalar
    alive: object  # bool [units] for a ReLU-family layer, else None


class Capture:
    """What one traced forward recorded, filled in while it runs."""

    def __init__(self):
        self.calls: List[LayerCall] = []

    def record(self, layer, outputs):
        count = tf.constant(0, tf.int64)
        for tensor in tf.nest.flatten(outputs):
            if isinstance(tensor, tf.Tensor) and tensor.dtype.is_floating:
                finite = tf.math.is_finite(tensor)
                count += tf.reduce_sum(tf.cast(tf.logical_not(finite), tf.int64))
        alive = None
        axis = relu_units_axis(layer)
        first = tf.nest.flatten(outputs)[0] if tf.nest.flatten(outputs) else None
        if axis is not None and isinstance(first, tf.Tensor) and first.shape.rank and first.shape.rank >= 2:
            axis = axis % first.shape.rank
            others = [i for i in range(first.shape.rank) if i != axis]
            alive = tf.reduce_any(tf.not_equal(first, 0), axis=others)
        self.calls.append(LayerCall(layer.name, count, alive))


def relu_units_axis(layer):
    """The units axis of a ReLU-family layer's output, or None for any other layer.

    ReLU family: a keras or keras_bp layer whose activation is `relu` (with
    no negative slope; `max_value` and `threshold` allowed) or `relu6`: a
    Dense or convolution with `activation="relu"`, `Activation("relu")`,
    `ReLU()`. The units are the last axis, or axis 1 for a layer with
    `data_format="channels_first"`.
    """
    if not _relu_family(layer):
        return None
    return 1 if getattr(layer, "data_format", None) == "channels_first" else -1


def _relu_family(layer):
    if isinstance(layer, keras.layers.ReLU):
        return not layer.negative_slope
    # keras_bp layers hold an `ActivationPair` (`.pair` for activation
    # layers, `.activation` for the others), Keras's layers a function.
    activation = getattr(layer, "pair", None) or getattr(layer, "activation", None)
    if isinstance(activation, ActivationPair):
        name, options = activation.name, dict(activation.config)
    else:
        name, options = getattr(activation, "__name__", None), {}
    # keras_bp's ReLU(negative_slope=a) is a leaky ReLU under the name "relu".
    return name in _RELU_FAMILY and not options.get("negative_slope") and not getattr(layer, "negative_slope", 0)


@contextlib.contextmanager
def capturing(layers):
    """Wraps each layer's `call` to record into a new `Capture` (yielded); unwraps on exit.

    Only for tracing: the wrappers add ops to the graph being traced.
    """
    capture = Capture()
    saved = []
    try:
        for layer in layers:
            own = layer.__dict__.get("call", _MISSING)
            saved.append((layer, own))
            # NOTE: set in the instance's __dict__, past Keras's __setattr__
            # (which tracks what layers are given); `Operation.__call__`
            # looks `self.call` up on the instance.
            layer.__dict__["call"] = _recording(layer, layer.call, capture)
        yield capture
    finally:
        for layer, own in saved:
            if own is _MISSING:
                layer.__dict__.pop("call", None)
            else:
                layer.__dict__["call"] = own


_MISSING = object()


def _recording(layer, call, capture):
    def call_and_record(*args, **kwargs):
        outputs = call(*args, **kwargs)
        capture.record(layer, outputs)
        return outputs

    return call_and_record
