"""One harness for every layer family: each registered layer case runs through the same checks.

Each family lists its layers as `LayerCase`s in a `tests/cases_<family>.py`
module (a `CASES` list); `tests/test_layer_harness.py` runs every case through
the same checks: parity with the Keras counterpart on copied weights, manual
against autodiff, float64 finite differences, eager GradientTape, `fit` with
and without XLA, `.keras` save and load, and mixed precision.
"""

import dataclasses
import importlib
import pathlib
from typing import Callable, Optional

import keras
import numpy as np
import tensorflow as tf

import keras_bp


@dataclasses.dataclass
class LayerCase:
    """One layer configuration, with small shapes.

    Attributes:
        id: pytest id.
        make: builds our (keras_bp) layer, unbuilt.
        keras_make: builds the Keras counterpart with the same arguments (or None).
        input_shape: the input's shape, batch included.
        make_inputs: for integer inputs, several inputs or masks: a function of a
            `np.random.RandomState` returning the list of positional inputs.
        call_kwargs: extra call arguments, e.g. `{"training": True}`.
        rtol: float32 parity tolerance against Keras.
        fit: whether to run the fit, save/load and mixed-precision checks.
        list_input: the layer takes its inputs as one list (the merge layers).
    """

    id: str
    make: Callable[[], keras.layers.Layer]
    keras_make: Optional[Callable[[], keras.layers.Layer]]
    input_shape: tuple
    make_inputs: Optional[Callable[[np.random.RandomState], list]] = None
    call_kwargs: dict = dataclasses.field(default_factory=dict)
    rtol: float = 1e-5
    fit: bool = True
    list_input: bool = False

    def inputs(self, seed=0):
        rng = np.random.RandomState(seed)
        if self.make_inputs is not None:
            return list(self.make_inputs(rng))
        return [rng.standard_normal(self.input_shape).astype("float32")]


class KerasReference:
    """A Keras layer called the way a case's comparison needs; delegates the rest.

    channels_last: the layer is the channels_last twin of a channels_first
        layer of ours: the input is transposed to channels_last before the
        call and the output back after it, so outputs and input gradients
        line up with ours. (Keras's channels_first convolution has no CPU
        kernel outside XLA, and Keras 3.15 adds the bias along the last axis
        when a channels_first output's last spatial size equals `filters`;
        see tests/test_conv.py.)
    jit: the call runs inside a `tf.function(jit_compile=True)`, forward and
        backward (Keras's grouped convolution runs on CPU only under XLA).
    """

    def __init__(self, layer, channels_last=False, jit=False):
        self.layer = layer
        self.channels_last = channels_last
        self._call = tf.function(self._plain_call, jit_compile=True) if jit else self._plain_call

    def _plain_call(self, x, **kwargs):
        if not self.channels_last:
            return self.layer(x, **kwargs)
        rank = len(x.shape)
        to_last = (0,) + tuple(range(2, rank)) + (1,)
        to_first = (0, rank - 1) + tuple(range(1, rank - 1))
        return tf.transpose(self.layer(tf.transpose(x, to_last), **kwargs), to_first)

    def __call__(self, x, **kwargs):
        return self._call(x, **kwargs)

    def __getattr__(self, name):
        return getattr(self.layer, name)


def paired_case(name, class_name, input_shape, fit, call_kwargs=None, via_last=False, reference_jit=False, **kwargs):
    """A case whose two layers are `class_name(**kwargs)` from keras_bp and from Keras.

    via_last: Keras's layer is the channels_last twin of our channels_first
    one (see `KerasReference`); reference_jit: Keras's layer runs under XLA.
    """
    their_kwargs = {**kwargs, "data_format": "channels_last"} if via_last else kwargs
    if via_last or reference_jit:
        def keras_make():
            return KerasReference(getattr(keras.layers, class_name)(**their_kwargs),
                                  channels_last=via_last, jit=reference_jit)
    else:
        def keras_make():
            return getattr(keras.layers, class_name)(**kwargs)
    return LayerCase(
        id=name,
        make=lambda: getattr(keras_bp.layers, class_name)(**kwargs),
        keras_make=keras_make,
        input_shape=input_shape,
        call_kwargs=call_kwargs or {},
        fit=fit,
    )


def all_cases():
    """Every `CASES` entry of every tests/cases_*.py module."""
    cases = []
    for path in sorted(pathlib.Path(__file__).parent.glob("cases_*.py")):
        module = importlib.import_module(f"tests.{path.stem}")
        cases.extend(module.CASES)
    return cases


def call(layer, inputs, list_input=False, **kwargs):
    """The layer on the inputs: positionally, or as one list for a merge layer."""
    return layer(list(inputs), **kwargs) if list_input else layer(*inputs, **kwargs)


def gradients(layer, inputs, upstream_seed=1, call_kwargs=None, list_input=False):
    """Outputs, and gradients of sum <u, y> wrt the float inputs and every trainable weight."""
    call_kwargs = call_kwargs or {}
    tensors = [tf.convert_to_tensor(x) for x in inputs]
    float_inputs = [t for t in tensors if t.dtype.is_floating]
    with tf.GradientTape() as tape:
        for t in float_inputs:
            tape.watch(t)
        outputs = tf.nest.flatten(call(layer, tensors, list_input, **call_kwargs))
        rng = np.random.RandomState(upstream_seed)
        loss = tf.add_n(
            [tf.reduce_sum(tf.cast(y, tf.float32) * rng.standard_normal(tuple(y.shape)).astype("float32"))
             for y in outputs]
        )
    grads = tape.gradient(loss, float_inputs + list(layer.trainable_weights))
    return outputs, grads


def dense(g):
    if isinstance(g, tf.IndexedSlices):
        g = tf.convert_to_tensor(g)
    return None if g is None else np.asarray(g)


def assert_close(actual, expected, rtol, atol=None, what=""):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    atol = rtol * scale if atol is None else atol
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


def fit_model(case):
    """A functional model: the case's layer on the case's inputs, then a Dense head."""
    inputs = case.inputs()
    symbolic = [keras.Input(shape=x.shape[1:], batch_size=None, dtype=str(x.dtype)) for x in inputs]
    layer = case.make()
    y = call(layer, symbolic, case.list_input, **{k: v for k, v in case.call_kwargs.items() if k != "training"})
    y = tf.nest.flatten(y)[0] if isinstance(y, (list, tuple)) else y
    if len(y.shape) > 2:
        y = keras_bp.layers.Flatten()(y)
    output = keras_bp.layers.Dense(2)(y)
    return keras.Model(symbolic, output), layer
