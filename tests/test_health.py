"""GradientMonitor: planted pathologies caught and named, healthy runs silent, no side effects, outputs."""

import csv
import math
import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_bp
from keras_bp._state import snapshot
from keras_bp.callbacks import GradientHealthWarning, GradientMonitor

LIBRARIES = [keras, keras_bp]
LIBRARY_IDS = ["keras", "keras_bp"]


def _data(n=64, features=8, seed=0, scale=1.0):
    rng = np.random.RandomState(seed)
    x = (scale * rng.randn(n, features)).astype("float32")
    y = rng.randn(n, 1).astype("float32")
    return x, y


def _model(layers, features=8, optimizer=None):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((features,))] + layers)
    model.compile(optimizer or keras.optimizers.SGD(0.01), "mse")
    return model


def _fit(model, monitor, x, y, epochs=2, batch_size=32, **kwargs):
    return model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=False, callbacks=[monitor], verbose=0,
                     **kwargs)


def _silent_fit(model, x, y, **kwargs):
    """Fits with every warning an error: a healthy model gives none."""
    monitor = GradientMonitor((x[:32], y[:32]), every=1, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _fit(model, monitor, x, y, **kwargs)
    assert monitor.records and all(r.healthy for r in monitor.records), str(monitor.records[-1])
    return monitor


# --- The four planted pathologies, and the same models fixed -----------------


def _stack(lib, activation, depth=10, **options):
    return [lib.layers.Dense(16, activation=activation, name="first" if i == 0 else f"hidden_{i}", **options)
            for i in range(depth)] + [lib.layers.Dense(1, name="head")]


@pytest.mark.parametrize("lib", LIBRARIES, ids=LIBRARY_IDS)
def test_deep_sigmoid_stack_vanishes_and_tanh_does_not(lib):
    x, y = _data()
    model = _model(_stack(lib, "sigmoid"))
    monitor = GradientMonitor((x[:32], y[:32]), every=1, verbose=0)
    with pytest.warns(GradientHealthWarning, match=r"vanishing gradients: layer 'first' \(the first with weights\)"):
        _fit(model, monitor, x, y)
    vanishing = [d for d in monitor.records[0].diagnoses if d.kind == "vanishing"]
    assert vanishing and vanishing[0].layer == "first" and vanishing[0].value < 1e-4
    assert monitor.records[0].first_to_last == vanishing[0].value
    # Fixed: a non-saturating slope at 0 (tanh), the same depth and initializer.
    _silent_fit(_model(_stack(lib, "tanh")), x, y)


def test_oversized_learning_rate_explodes_and_a_sane_one_does_not():
    x, y = _data(scale=3.0)  # the loss's curvature ~18: SGD(1.0) multiplies the error by ~17 a step
    model = _model([keras.layers.Dense(1, name="linear")], optimizer=keras.optimizers.SGD(1.0))
    monitor = GradientMonitor((x[:32], y[:32]), every=1, verbose=0)
    with pytest.warns(GradientHealthWarning, match=r"exploding gradients: layer 'linear' has gradient norm .* > max_grad_norm=1000"):
        _fit(model, monitor, x, y, epochs=3)
    assert all(math.isfinite(r.grad_norm) for r in monitor.records)
    # Without the bound, the growth over recent checks finds it.
    model = _model([keras.layers.Dense(1, name="linear")], optimizer=keras.optimizers.SGD(1.0))
    monitor = GradientMonitor((x[:32], y[:32]), every=1, max_grad_norm=None, max_update_ratio=None, verbose=0)
    with pytest.warns(GradientHealthWarning, match=r"exploding gradients: the gradient norm grew .* times \(> growth_factor=100\) from step \d+ to step \d+, most at layer 'linear'"):
        _fit(model, monitor, x, y, epochs=3)
    _silent_fit(_model([keras.layers.Dense(1, name="linear")], optimizer=keras.optimizers.SGD(0.003)), x, y, epochs=3)


@pytest.mark.parametrize("lib", LIBRARIES, ids=LIBRARY_IDS)
def test_relu_layer_with_a_large_negative_bias_has_dead_units(lib):
    x, y = _data()

    def layers(bias):
        return [lib.layers.Dense(16, activation="relu", bias_initializer=keras.initializers.Constant(bias),
                                 name="hidden"),
                lib.layers.Dense(1, name="head")]

    monitor = GradientMonitor((x[:32], y[:32]), every=1, verbose=0)
    with pytest.warns(GradientHealthWarning, match=r"dead units: 100% of the units of layer 'hidden' are 0 for the whole batch"):
        _fit(_model(layers(-10.0)), monitor, x, y)
    assert monitor.records[-1].dead_units == {"hidden": 1.0}
    # Fixed: the usual zero bias.
    monitor = _silent_fit(_model(layers(0.0)), x, y)
    assert monitor.records[-1].dead_units["hidden"] < 0.5


@pytest.mark.parametrize("lib", LIBRARIES, ids=LIBRARY_IDS)
def test_dead_units_of_activation_layers_and_which_activations_count(lib):
    x, y = _data()
    model = _model([
        lib.layers.Dense(16, bias_initializer=keras.initializers.Constant(-10.0), name="linear"),
        lib.layers.ReLU(name="relu"),
        lib.layers.Dense(8, activation="relu6", name="six"),
        lib.layers.Activation("relu", name="act"),
        lib.layers.LeakyReLU(name="leaky"),
        lib.layers.ReLU(negative_slope=0.1, name="sloped"),
        lib.layers.Dense(8, activation="elu", name="elu"),
        lib.layers.Dense(1, name="head"),
    ])
    monitor = GradientMonitor((x[:32], y[:32]), every=1, verbose=0)
    with pytest.warns(GradientHealthWarning, match=r"dead units: 100% of the units of layer '(relu|six|act)'"):
        _fit(model, monitor, x, y, epochs=1)
    # relu's output is 0 everywhere, so six's and act's are too; leaky, sloped and ELU are never counted.
    assert monitor.records[0].dead_units == {"relu": 1.0, "six": 1.0, "act": 1.0}


class _Log(keras.layers.Layer):
    """log(x): NaN for negative inputs (planted); `fixed` takes log(1 + |x|)."""

    def __init__(self, fixed=False, **kwargs):
        super().__init__(**kwargs)
        self.fixed = fixed

    def call(self, x):
        return keras.ops.log(1.0 + keras.ops.abs(x)) if self.fixed else keras.ops.log(x)


@pytest.mark.parametrize("lib", LIBRARIES, ids=LIBRARY_IDS)
def test_a_layer_producing_nan_is_named(lib):
    x, y = _data()

    def layers(fixed):
        return [lib.layers.Dense(16, name="before"), _Log(fixed, name="log"), lib.layers.Dense(8, name="after"),
                lib.layers.Dense(1, name="head")]

    monitor = GradientMonitor((x[:32], y[:32]), every=1, verbose=0)
    with pytest.warns(GradientHealthWarning, match=r"non-finite: layer 'log' is the first to produce NaN/Inf outputs"):
        _fit(_model(layers(False)), monitor, x, y)
    record = monitor.records[0]
    assert [d.kind for d in record.diagnoses] == ["non-finite"]  # the other numbers mean nothing then
    assert record.nonfinite_outputs == "log"
    _silent_fit(_model(layers(True)), x, y)


def _scale_forward(x, w):
    return x * w, (x, w)


def _scale_backward(planted, saved, dy):
    x, w = saved
    dx, dw = dy * w, tf.reduce_sum(dy * x, axis=0)
    if planted:
        dx, dw = dx * np.nan, dw * np.nan
    return dx, dw


class _Scale(keras.layers.Layer):
    """y = x * w, a manual-gradient layer; `planted` makes its backward return NaN."""

    def __init__(self, planted=False, **kwargs):
        super().__init__(**kwargs)
        self._op = keras_bp.manual_gradient(_scale_forward, lambda saved, dy: _scale_backward(planted, saved, dy))

    def build(self, input_shape):
        self.w = self.add_weight(name="w", shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return self._op(x, tf.convert_to_tensor(self.w))


def test_a_backward_producing_nan_is_named_going_backward():
    x, y = _data()

    def layers(planted):
        return [keras_bp.layers.Dense(16, activation="tanh", name="before"), _Scale(planted, name="scale"),
                keras_bp.layers.Dense(1, name="head")]

    monitor = GradientMonitor((x[:32], y[:32]), every=1, verbose=0)
    with pytest.warns(GradientHealthWarning, match=r"non-finite: layer 'scale' is the first with NaN/Inf gradients going backward"):
        _fit(_model(layers(True)), monitor, x, y, epochs=1)
    first = monitor.records[0]
    assert first.layer("head").nonfinite == 0 and first.layer("scale").nonfinite == 16
    assert first.layer("before").nonfinite > 0 and first.nonfinite_outputs is None
    _silent_fit(_model(layers(False)), x, y)


def test_nan_in_the_batch_is_named_and_warnings_come_once_per_kind_and_layer():
    x, y = _data()
    bad = x[:32].copy()
    bad[0, 0] = np.nan
    monitor = GradientMonitor((bad, y[:32]), every=1, verbose=0)
    with pytest.warns(GradientHealthWarning, match="the monitor's input batch holds 1 NaN/Inf entries") as caught:
        _fit(_model([keras.layers.Dense(4), keras.layers.Dense(1)]), monitor, x, y)
    assert len(monitor.records) == 5 and all(r.diagnoses[0].layer is None for r in monitor.records)
    assert len([w for w in caught if issubclass(w.category, GradientHealthWarning)]) == 1


def test_thresholds_are_the_users():
    x, y = _data()
    # The tanh stack's first/last ratio is ~0.1 to 1: healthy by default, vanishing at 10.
    monitor = GradientMonitor((x[:32], y[:32]), every=1, vanishing_ratio=10.0, min_update_ratio=None,
                              max_update_ratio=None, verbose=0)
    with pytest.warns(GradientHealthWarning, match="< vanishing_ratio=10"):
        _fit(_model(_stack(keras, "tanh", depth=3)), monitor, x, y, epochs=1)
    # The low side of the update ratio is off unless asked for.
    monitor = GradientMonitor((x[:32], y[:32]), every=1, min_update_ratio=0.05, verbose=0)
    with pytest.warns(GradientHealthWarning, match=r"by .* of their norm \(< min_update_ratio=0.05; usually ~1e-3\)"):
        _fit(_model(_stack(keras, "tanh", depth=3)), monitor, x, y, epochs=1)
    # And off: the sigmoid stack passes silently with every diagnosis off.
    monitor = GradientMonitor((x[:32], y[:32]), every=1, vanishing_ratio=None, max_grad_norm=None,
                              growth_factor=None, dead_fraction=None, min_update_ratio=None,
                              max_update_ratio=None, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _fit(_model(_stack(keras, "sigmoid")), monitor, x, y, epochs=1)
    assert monitor.records[-1].first_to_last < 1e-4


def _example(name):
    import importlib.util
    import pathlib
    import sys

    examples = pathlib.Path(__file__).resolve().parent.parent / "examples"
    sys.path.insert(0, str(examples))
    try:
        spec = importlib.util.spec_from_file_location(f"{name}_example", examples / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(examples))
    return module


def test_the_mnist_examples_model_is_healthy_over_a_run():
    mnist = _example("mnist")
    data = _example("_data")
    (x, y), _, _ = data.load_mnist_or_exit(None)
    x, y = data.flat_one_hot(x[:1600], y[:1600])
    for optimizer, learning_rate in (("SGD", 0.01), ("Adam", 1e-3)):
        keras.utils.set_random_seed(0)
        model = mnist.build_model(optimizer, learning_rate)
        monitor = GradientMonitor((x[:32], y[:32]), every=10, verbose=0)
        with warnings.catch_warnings():
            warnings.simplefilter("error", GradientHealthWarning)
            model.fit(x, y, batch_size=32, epochs=2, callbacks=[monitor], verbose=0)
        assert len(monitor.records) == 11 and all(r.healthy for r in monitor.records)


# --- No side effects; the update ratio is the optimizer's own ----------------


def _snapshot(model):
    return [value for _, value in snapshot(list(model.variables) + list(model.optimizer.variables))]


@pytest.mark.parametrize("policy, jit_compile", [("float32", False), ("mixed_float16", True)])
def test_training_is_bit_identical_with_and_without_the_monitor(tmp_path, mixed_precision, policy, jit_compile):
    rng = np.random.RandomState(3)
    x = rng.randn(64, 6).astype("float32")
    y = keras.utils.to_categorical(rng.randint(0, 3, 64), 3).astype("float32")

    def run(monitor, policy=policy):
        mixed_precision(policy)
        keras.utils.set_random_seed(11)
        model = keras.Sequential([
            keras.Input((6,)),
            keras_bp.layers.Dense(12, activation="relu"),
            keras.layers.BatchNormalization(),
            keras_bp.layers.Dropout(0.3),
            keras.layers.Dropout(0.2),
            keras_bp.layers.Dense(3),
            keras.layers.Activation("softmax", dtype="float32"),
        ])
        # Under mixed_float16 Keras wraps Adam in a LossScaleOptimizer: its
        # scale and counters are optimizer variables the monitor puts back too.
        model.compile(keras.optimizers.Adam(0.01), "categorical_crossentropy", jit_compile=jit_compile)
        history = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, callbacks=[monitor] if monitor else [],
                            verbose=0)
        return _snapshot(model), history.history["loss"]

    plain, plain_loss = run(None)
    monitor = GradientMonitor((x[:20], y[:20]), every=1, log_dir=str(tmp_path), verbose=0)
    watched, watched_loss = run(monitor)
    assert len(monitor.records) == 9
    assert len(plain) == len(watched)
    for a, b in zip(plain, watched):
        np.testing.assert_array_equal(a, b)
    assert plain_loss == watched_loss
    if policy != "float32":
        # The gradients are reported unscaled (the loss scale starts at 2^15).
        # Only near float32's: float16 draws other dropout masks from the same seed.
        reference = GradientMonitor((x[:20], y[:20]), every=100, verbose=0)
        run(reference, "float32")
        assert 0.5 < monitor.records[0].grad_norm / reference.records[0].grad_norm < 2.0


@pytest.mark.parametrize(
    "optimizer",
    [lambda: keras.optimizers.SGD(0.05, momentum=0.9), lambda: keras.optimizers.Adam(0.01),
     lambda: keras_bp.optimizers.Adam(0.01)],
    ids=["SGD-momentum", "Adam", "keras_bp-Adam"],
)
def test_update_ratio_is_the_step_the_next_real_step_takes(optimizer):
    x, y = _data(n=16)
    model = _model([keras_bp.layers.Dense(4, activation="tanh"), keras.layers.Dense(1)], optimizer=optimizer())
    weights = []
    keep = keras.callbacks.LambdaCallback(
        on_train_begin=lambda logs: weights.append([v.numpy() for v in model.trainable_variables]),
        on_train_batch_end=lambda batch, logs: weights.append([v.numpy() for v in model.trainable_variables]),
    )
    # The monitor's batch is the training batch: the step it measures at step k is the one fit takes next.
    monitor = GradientMonitor((x, y), every=1, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GradientHealthWarning)  # a tiny model's update ratios are large
        model.fit(x, y, batch_size=16, epochs=4, shuffle=False, callbacks=[keep, monitor], verbose=0)
    assert [r.step for r in monitor.records] == [0, 1, 2, 3, 4]
    for record, before, after in zip(monitor.records, weights, weights[1:]):
        for variable, w0, w1 in zip(record.variables, before, after):
            taken = np.linalg.norm((w1.astype(np.float64) - w0).ravel())
            norm = np.linalg.norm(w0.astype(np.float64).ravel())
            assert taken > 0
            np.testing.assert_allclose(variable.update_norm, taken, rtol=1e-5)
            assert variable.weight_norm == pytest.approx(norm, rel=1e-12)
            if norm > 0:
                np.testing.assert_allclose(variable.update_ratio, taken / norm, rtol=1e-5)
            else:  # a zero-initialized bias at step 0
                assert record.step == 0 and math.isnan(variable.update_ratio)
        for layer in record.layers:
            own = [i for i, v in enumerate(record.variables) if v.layer == layer.name]
            taken = np.sqrt(sum(np.sum((after[i].astype(np.float64) - before[i]) ** 2) for i in own))
            norm = np.sqrt(sum(np.sum(before[i].astype(np.float64) ** 2) for i in own))
            np.testing.assert_allclose(layer.update_ratio, taken / norm, rtol=1e-5)


# --- Where it goes --------------------------------------------------------------


def test_logs_history_and_csv_get_the_summary_keys(tmp_path):
    x, y = _data()
    model = _model([keras_bp.layers.Dense(8, activation="relu"), keras_bp.layers.Dense(1)])
    batch_logs = []
    spy = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: batch_logs.append(dict(logs)))
    csv_path = tmp_path / "log.csv"
    monitor = GradientMonitor((x[:32], y[:32]), every=3, verbose=0)
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0,
                        callbacks=[monitor, keras.callbacks.CSVLogger(str(csv_path)), spy])
    for key in ("grad_norm", "grad_first_to_last", "grad_health_warnings"):
        assert len(history.history[key]) == 2
    assert history.history["grad_health_warnings"] == [0, 0]
    assert history.history["grad_norm"][-1] == monitor.records[-1].grad_norm
    with open(csv_path) as f:
        assert "grad_norm" in next(csv.DictReader(f))
    assert [i for i, logs in enumerate(batch_logs) if "grad_norm" in logs] == [2, 5]


def test_tensorboard_event_files_hold_histograms_and_scalars(tmp_path):
    from tensorboard.backend.event_processing import event_accumulator

    x, y = _data()
    model = _model([keras_bp.layers.Dense(8, activation="relu", name="hidden"), keras.layers.Dense(1, name="head")])
    monitor = GradientMonitor((x[:32], y[:32]), every=1, log_dir=str(tmp_path), verbose=0)
    _fit(model, monitor, x, y)
    events = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={event_accumulator.TENSORS: 0})
    events.Reload()
    histograms = set(events.PluginTagToContent("histograms"))
    assert {"gradient_health/hidden/kernel/gradient", "gradient_health/hidden/bias/gradient",
            "gradient_health/head/kernel/gradient", "gradient_health/head/bias/gradient"} == histograms
    scalars = set(events.PluginTagToContent("scalars"))
    assert {"gradient_health/grad_norm", "gradient_health/warnings", "gradient_health/hidden/grad_norm",
            "gradient_health/hidden/update_ratio", "gradient_health/hidden/dead_fraction"} <= scalars
    kernel = events.Tensors("gradient_health/hidden/kernel/gradient")
    assert [e.step for e in kernel] == [0, 1, 2, 3, 4]
    buckets = tf.make_ndarray(kernel[-1].tensor_proto)  # (left, right, count) rows
    assert buckets.shape[1] == 3 and buckets[:, 2].sum() == 8 * 8
    # The histogram spans the gradient's entries: its largest |g| is at an edge.
    largest = monitor.records[-1].variables[0].max_abs_grad
    assert max(abs(buckets[0, 0]), abs(buckets[-1, 1])) == pytest.approx(largest, rel=1e-5)
    norms = [float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors("gradient_health/grad_norm")]
    assert norms == pytest.approx([r.grad_norm for r in monitor.records], rel=1e-6)


def test_plot_records_and_summary(tmp_path):
    x, y = _data()
    model = _model(_stack(keras_bp, "sigmoid", depth=4))
    monitor = GradientMonitor((x[:32], y[:32]), every=2, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GradientHealthWarning)
        _fit(model, monitor, x, y)
    path = monitor.plot(str(tmp_path / "flow.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(path) > 10_000
    assert [layer.name for layer in monitor.records[-1].layers] == ["first", "hidden_1", "hidden_2", "hidden_3", "head"]
    assert "GradientMonitor: 3 checks (steps 0..4)" in monitor.summary()
    table = str(monitor.records[-1])
    assert "grad norm" in table and "first" in table
    with pytest.raises(ValueError, match="no checks have run yet"):
        GradientMonitor((x, y)).plot(str(tmp_path / "none.png"))


def test_subclassed_model_and_dataset_data():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras_bp.layers.Dense(16, activation="relu", name="hidden",
                                                bias_initializer=keras.initializers.Constant(-10.0))
            self.head = keras.layers.Dense(1, name="head")

        def call(self, x):
            return self.head(self.hidden(x))

    x, y = _data()
    keras.utils.set_random_seed(0)
    model = Net()
    model.compile(keras.optimizers.SGD(0.01), "mse")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    monitor = GradientMonitor(data, every=1, verbose=0)
    with pytest.warns(GradientHealthWarning, match="dead units: 100% of the units of layer 'hidden'"):
        _fit(model, monitor, x, y, epochs=1)
    assert monitor._trace_count == 1 and len(monitor.records) == 3
    # A second fit reuses the trace; warnings come again, once, in each fit.
    with pytest.warns(GradientHealthWarning, match="dead units"):
        _fit(model, monitor, x, y, epochs=1)
    assert monitor._trace_count == 1 and len(monitor.records) == 6


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(every=0), "every must be a positive integer, received: every=0"),
        (dict(vanishing_ratio=-1.0), "vanishing_ratio must be None or a finite number > 0, received: vanishing_ratio=-1.0"),
        (dict(max_grad_norm="big"), "max_grad_norm must be None or a finite number > 0, received: max_grad_norm='big'"),
        (dict(growth_factor=1.0), "growth_factor must be None or a finite number > 1, received: growth_factor=1.0"),
        (dict(growth_window=0), "growth_window must be a positive integer, received: growth_window=0"),
        (dict(dead_fraction=1.5), r"dead_fraction must be None or a number in \[0, 1\), received: dead_fraction=1.5"),
        (dict(min_update_ratio=0.0), "min_update_ratio must be None or a finite number > 0, received: min_update_ratio=0.0"),
        (dict(min_update_ratio=0.5, max_update_ratio=0.1),
         "min_update_ratio must be below max_update_ratio, received: min_update_ratio=0.5, max_update_ratio=0.1"),
        (dict(histograms="yes"), "histograms must be True or False, received: histograms='yes'"),
        (dict(verbose=3), r"verbose must be one of \(0, 1, 2\), received: verbose=3"),
    ],
)
def test_bad_arguments_name_the_argument_and_value(kwargs, message):
    x, y = _data()
    with pytest.raises(ValueError, match=message):
        GradientMonitor((x, y), **kwargs)


def test_bad_data_names_the_monitor():
    with pytest.raises(ValueError, match="GradientMonitor's data must be an"):
        GradientMonitor(np.zeros((4, 2)))


def test_log_dir_without_tensorboard_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorboard", None)
    x, y = _data()
    with pytest.raises(ImportError, match=r"keras-bp\[tensorboard\]"):
        GradientMonitor((x, y), log_dir="unused")


def test_the_mnist_example_writes_the_gradient_flow_picture(tmp_path, capsys):
    mnist = _example("mnist")
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientHealthWarning)
        assert mnist.main(["--epochs", "1", "--limit", "400", "--audit-every", "5", "--verbose", "0",
                           "--plot", str(tmp_path / "curves.png")]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "curves.png").exists() and (tmp_path / "curves_gradient_health.png").exists()
    assert "GradientMonitor: 3 checks (steps 0..10), 0 with problems" in out
