"""Every registered layer case through the same checks (see tests/harness.py)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_bp
from keras_bp._state import restore, snapshot
from tests.harness import all_cases, assert_close, call, dense, fit_model, gradients

CASES = all_cases()
FIT_CASES = [case for case in CASES if case.fit]
PARITY_CASES = [case for case in CASES if case.keras_make is not None]


def ids(cases):
    return [case.id for case in cases]


def _built(make, case):
    layer = make()
    call(layer, [tf.convert_to_tensor(x) for x in case.inputs()], case.list_input, **case.call_kwargs)
    return layer


class _ListCall(keras.layers.Layer):
    """A layer that takes one list (a merge, an attention layer), called positionally with the case's arguments.

    check_gradients calls a layer positionally and rebuilds it in float64
    from its config: this one passes its inputs on as a list, with the
    case's call arguments (masks, `use_causal_mask`, ...), tracks the inner
    layer's weights and state (a dropout seed, restored before every
    evaluation), and rebuilds the inner layer in the dtype asked for.
    """

    def __init__(self, layer, call_kwargs, **kwargs):
        super().__init__(name=f"{layer.name}_list_call", dtype=layer.dtype_policy)
        self.inner = layer
        self.call_kwargs = call_kwargs
        self.built = True  # nothing of its own: the inner layer builds itself when called

    def call(self, *inputs, training=None):
        options = self.call_kwargs if training is None else {**self.call_kwargs, "training": training}
        return self.inner(list(inputs), **options)

    def get_config(self):
        return {"inner": self.inner, "call_kwargs": self.call_kwargs, "dtype": self.dtype_policy.name}

    @classmethod
    def from_config(cls, config):
        inner = config["inner"]
        twin = type(inner).from_config({**inner.get_config(), "dtype": config["dtype"]})
        return cls(twin, config["call_kwargs"])


def _gradient_check_target(layer, case):
    """What check_gradients checks: the layer, or for a layer that takes one list, `_ListCall` around it."""
    if not case.list_input:
        return layer
    return _ListCall(layer, {k: v for k, v in case.call_kwargs.items() if k != "training"})


def _random_like(rng, value, name):
    if value.dtype.kind != "f":
        return value
    # Variances and standard deviations (renorm's) must be positive.
    low, high = (0.5, 1.5) if "variance" in name or "stddev" in name else (-0.5, 0.5)
    return rng.uniform(low, high, value.shape).astype(value.dtype)


def _state(layer):
    return snapshot(layer.non_trainable_variables)


def _updated_state(layer):
    return [v for v in layer.non_trainable_variables if "seed_generator" not in v.path]


@pytest.mark.parametrize("case", PARITY_CASES, ids=ids(PARITY_CASES))
def test_parity_with_keras_both_ways(case):
    ours, theirs = _built(case.make, case), _built(case.keras_make, case)
    assert [(w.name, tuple(w.shape)) for w in ours.weights] == [
        (w.name, tuple(w.shape)) for w in theirs.weights
    ], "weight names, shapes and order must match Keras's"
    inputs = case.inputs(seed=2)
    rng = np.random.RandomState(3)
    for source, destination in ((theirs, ours), (ours, theirs)):
        source.set_weights([_random_like(rng, w, v.name) for v, w in zip(source.weights, source.get_weights())])
        destination.set_weights(source.get_weights())
        states = (_state(ours), _state(theirs))
        our_out, our_grads = gradients(ours, inputs, call_kwargs=case.call_kwargs, list_input=case.list_input)
        their_out, their_grads = gradients(theirs, inputs, call_kwargs=case.call_kwargs, list_input=case.list_input)
        # State the call updates (BatchNormalization's moving statistics,
        # a stateful RNN's states) moves exactly as Keras's. Random state is
        # left out: the outputs already compare the masks drawn, and Keras
        # draws (and discards) dropout masks at inference too, ours does not.
        for a, b in zip(_updated_state(ours), _updated_state(theirs)):
            assert_close(a.numpy(), b.numpy(), case.rtol, what=f"{case.id}: {a.path}")
        restore(states[0]), restore(states[1])
        for a, b in zip(our_out, their_out):
            assert_close(a, b, case.rtol, what=f"{case.id}: outputs")
        assert len(our_grads) == len(their_grads)
        for i, (a, b) in enumerate(zip(our_grads, their_grads)):
            assert (a is None) == (b is None), f"{case.id}: gradient {i} presence differs"
            if a is not None:
                assert_close(dense(a), dense(b), case.rtol, what=f"{case.id}: gradient {i}")


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_manual_matches_autodiff(case):
    layer = _built(case.make, case)
    inputs = case.inputs(seed=4)
    state = _state(layer)
    _, manual = gradients(layer, inputs, call_kwargs=case.call_kwargs, list_input=case.list_input)
    restore(state)
    with keras_bp.autodiff():
        _, reference = gradients(layer, inputs, call_kwargs=case.call_kwargs, list_input=case.list_input)
    restore(state)
    for i, (a, b) in enumerate(zip(manual, reference)):
        assert (a is None) == (b is None), f"gradient {i} presence differs"
        if a is not None:
            assert_close(dense(a), dense(b), 1e-5, what=f"{case.id}: gradient {i}")


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_float64_check_gradients(case):
    # NOTE: seeded, so the weights (and where a ReLU's kink falls) do not depend on which tests ran before.
    keras.utils.set_random_seed(0)
    layer = _built(case.make, case)
    options = {"training": case.call_kwargs["training"]} if "training" in case.call_kwargs else {}
    result = keras_bp.check_gradients(_gradient_check_target(layer, case), *case.inputs(seed=5), **options)
    assert result.passed, str(result)


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_eager_tape_reaches_every_weight(case):
    # Trap 1 and trap 6: eagerly, under a plain GradientTape, each trainable
    # weight gets a gradient (no `variables=` error, no None).
    layer = case.make()
    _, grads = gradients(layer, case.inputs(), call_kwargs=case.call_kwargs, list_input=case.list_input)
    n_inputs = len(grads) - len(layer.trainable_weights)
    for weight, g in zip(layer.trainable_weights, grads[n_inputs:]):
        assert g is not None, f"{weight.path} got no gradient"
        assert np.all(np.isfinite(dense(g)))


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize("case", FIT_CASES, ids=ids(FIT_CASES))
def test_fit_trains(case, jit_compile):
    keras.utils.set_random_seed(0)
    model, layer = fit_model(case)
    inputs = case.inputs(seed=6)
    targets = np.random.RandomState(7).standard_normal((inputs[0].shape[0], 2)).astype("float32")
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=keras_bp.losses.MeanSquaredError(),
                  jit_compile=jit_compile)
    before = [w.numpy().copy() for w in layer.trainable_weights]
    history = model.fit(inputs, targets, epochs=3, batch_size=len(targets), verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0], losses
    for w, old in zip(layer.trainable_weights, before):
        assert not np.array_equal(w.numpy(), old), f"{w.path} did not change"


@pytest.mark.parametrize("case", FIT_CASES, ids=ids(FIT_CASES))
def test_keras_file_save_and_load(case, tmp_path):
    model, layer = fit_model(case)
    inputs = case.inputs(seed=8)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.get_layer(layer.name)) is type(layer)
    assert loaded.get_layer(layer.name).get_config() == layer.get_config()
    np.testing.assert_array_equal(loaded.predict(inputs, verbose=0), model.predict(inputs, verbose=0))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("case", FIT_CASES, ids=ids(FIT_CASES))
def test_mixed_precision(case, policy, mixed_precision):
    mixed_precision(policy)
    layer = _built(case.make, case)
    state = _state(layer)
    inputs = case.inputs()
    outputs, grads = gradients(layer, inputs, call_kwargs=case.call_kwargs, list_input=case.list_input)
    compute = policy.split("_")[1]
    for y in outputs:
        if y.dtype.is_floating:
            assert y.dtype.name == compute
    n_inputs = len(grads) - len(layer.trainable_weights)
    for weight, g in zip(layer.trainable_weights, grads[n_inputs:]):
        assert g is not None and g.dtype.name == weight.dtype == "float32", weight.path
        assert np.all(np.isfinite(dense(g)))
    # The same numbers as Keras's layer under the same policy (same random
    # masks: Keras draws them in the compute dtype), else as our float32 layer.
    if case.keras_make is None:
        keras.mixed_precision.set_global_policy("float32")
    reference = _built(case.keras_make or case.make, case)
    reference.set_weights(layer.get_weights())
    for (_, value), r in zip(state, reference.non_trainable_variables):
        r.assign(value)
    ref_outputs, _ = gradients(reference, inputs, call_kwargs=case.call_kwargs, list_input=case.list_input)
    for y, r in zip(outputs, ref_outputs):
        assert_close(np.asarray(tf.cast(y, tf.float32)), np.asarray(tf.cast(r, tf.float32)), 5e-2,
                     what=f"{case.id}: {policy} output")
