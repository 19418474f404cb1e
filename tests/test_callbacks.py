"""Tests for keras_bp.callbacks.GradientAudit."""

import csv
import os
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_bp
from keras_bp._state import snapshot
from keras_bp.callbacks import GradientAudit, GradientAuditError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- A user-style manual-gradient layer with plantable bugs -------------------


def _tanh_dense_forward(x, kernel, bias):
    y = tf.tanh(x @ kernel + bias)
    return y, (x, kernel, y)


def _tanh_dense_backward(bug, saved, dy):
    """y = tanh(x W + b): dz = dy (1 - y^2), dx = dz W^T, dW = x^T dz, db = sum dz."""
    x, kernel, y = saved
    if bug == "missing_term":
        dz = dy  # the "- y^2" term of tanh' is missing
    else:
        dz = dy * (1.0 - y * y)
    dx = dz @ tf.transpose(kernel)
    dkernel = tf.transpose(x) @ dz
    dbias = tf.reduce_sum(dz, axis=0)
    if bug == "sign":
        dkernel = -dkernel
    elif bug == "scaled":
        dkernel = 1.01 * dkernel
    elif bug == "one_element":
        dbias = dbias + dz[0]  # the first example's term counted twice
    elif bug == "half_input":
        dx = 0.5 * dx
    elif bug == "nan":
        dkernel = dkernel + np.nan
    return dx, dkernel, dbias


class TanhDense(keras.layers.Layer):
    """What a user writes with keras_bp.manual_gradient; `bug` plants a mistake."""

    def __init__(self, units, bug=None, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.bug = bug
        self._op = keras_bp.manual_gradient(
            _tanh_dense_forward,
            lambda saved, dy: _tanh_dense_backward(bug, saved, dy),
        )

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel", shape=(input_shape[-1], self.units), initializer="glorot_uniform"
        )
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="random_normal")

    def call(self, x):
        return self._op(x, tf.convert_to_tensor(self.kernel), tf.convert_to_tensor(self.bias))


def _data(n=64, features=6, classes=3, seed=0):
    rng = np.random.RandomState(seed)
    x = rng.randn(n, features).astype("float32")
    y = keras.utils.to_categorical(rng.randint(0, classes, n), classes).astype("float32")
    return x, y


def _planted_model(bug, jit_compile=False):
    """first (keras_bp) -> planted (user layer) -> last (keras_bp), softmax cross-entropy."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((6,))
    h = keras_bp.layers.Dense(8, activation="tanh", name="first")(inputs)
    h = TanhDense(5, bug=bug, name="planted")(h)
    outputs = keras_bp.layers.Dense(3, activation="softmax", name="last")(h)
    model = keras.Model(inputs, outputs)
    model.compile(
        keras.optimizers.SGD(0.05),
        keras_bp.losses.CategoricalCrossentropy(),
        jit_compile=jit_compile,
    )
    return model


def _fit(model, audit, x, y, **kwargs):
    kwargs.setdefault("batch_size", 16)
    kwargs.setdefault("epochs", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(x, y, callbacks=[audit], verbose=0, **kwargs)


# Which variables each bug corrupts, and which layer the audit must point at.
PLANTED = {
    "sign": (["planted/kernel"], "planted"),
    "scaled": (["planted/kernel"], "planted"),
    "one_element": (["planted/bias"], "planted"),
    "missing_term": (
        ["planted/kernel", "planted/bias", "first/kernel", "first/bias"],
        "planted",
    ),
    # A halved input gradient leaves the planted layer's own weights right
    # and corrupts only the layer before it: the audit points at "first" and
    # names "planted" as the other suspect.
    "half_input": (["first/kernel", "first/bias"], "first"),
}


@pytest.mark.parametrize("bug", sorted(PLANTED))
def test_planted_bug_is_flagged_and_located(bug):
    x, y = _data()
    model = _planted_model(bug)
    audit = GradientAudit((x[:32], y[:32]), every=1000, on_mismatch="warn", verbose=0)
    with pytest.warns(UserWarning, match="MISMATCH"):
        model.fit(x, y, batch_size=16, epochs=1, callbacks=[audit], verbose=0)
    record = audit.records[0]
    expected, culprit = PLANTED[bug]
    assert not record.passed
    assert sorted(record.failed_variables) == sorted(expected)
    # The correct layer after the bug (closer to the loss) is never blamed.
    assert not any(p.startswith("last/") for p in record.failed_variables)
    assert record.culprit == culprit
    if bug == "half_input":
        assert record.culprit_next == "planted"
    table = str(record)
    for path in expected:
        assert path in table
    assert f"likely culprit: the " in table and f"backward of layer '{culprit}'" in table
    # Only bugs confined to the planted layer's weight gradients leave the
    # layer before it ("first") in agreement.
    assert record.earlier_layers_agree == (bug in ("sign", "scaled", "one_element"))


def test_record_statistics_for_scaled_gradient():
    x, y = _data()
    model = _planted_model("scaled")
    audit = GradientAudit((x[:32], y[:32]), every=1000, verbose=0, on_mismatch="stop")
    _fit(model, audit, x, y)
    stats = {v.path: v for v in audit.records[0].variables}
    kernel = stats["planted/kernel"]
    # dW_manual = 1.01 dW_ref: relative error 0.01, cosine 1.
    np.testing.assert_allclose(kernel.rel_error, 0.01, rtol=1e-3)
    np.testing.assert_allclose(kernel.cosine, 1.0, atol=1e-6)
    assert kernel.layer == "planted" and kernel.shape == (8, 5)
    assert stats["last/kernel"].rel_error < 1e-5
    assert audit.records[0].max_rel_error == pytest.approx(kernel.rel_error)


def _dropout_model(kind="sequential", mixed=False):
    keras.utils.set_random_seed(7)
    if kind == "sequential":
        model = keras.Sequential(
            [
                keras.Input((6,)),
                keras_bp.layers.Dense(16, activation="relu"),
                keras_bp.layers.Dropout(0.4),
                (keras.layers.Dense if mixed else keras_bp.layers.Dense)(8, activation="tanh"),
                keras.layers.Dropout(0.2),
                keras_bp.layers.Dense(3, activation="softmax", kernel_regularizer="l2"),
            ]
        )
    elif kind == "subclassed":
        model = SubclassedNet()
    return model


class SubclassedNet(keras.Model):
    def __init__(self, bug=None):
        super().__init__()
        self.hidden = keras_bp.layers.Dense(12, activation="relu", name="hidden")
        self.drop = keras_bp.layers.Dropout(0.3)
        self.user = TanhDense(6, bug=bug, name="user")
        self.out = keras.layers.Dense(3, activation="softmax", name="out")

    def call(self, x, training=False):
        return self.out(self.user(self.drop(self.hidden(x), training=training)))


def test_no_false_alarms_over_full_runs_with_dropout():
    x, y = _data(n=64)
    for kind, mixed in (("sequential", False), ("sequential", True), ("subclassed", False)):
        model = _dropout_model(kind, mixed)
        model.compile(keras_bp.optimizers.SGD(0.1, momentum=0.9), keras_bp.losses.CategoricalCrossentropy())
        audit = GradientAudit((x[:32], y[:32]), every=2, directions=2, verbose=0, on_mismatch="raise")
        _fit(model, audit, x, y, epochs=3)
        assert len(audit.records) == 1 + 3 * 4 // 2
        assert all(r.passed for r in audit.records), [str(r) for r in audit.records if not r.passed]
        assert audit._trace_count == 1


def test_subclassed_model_names_and_culprit():
    x, y = _data()
    keras.utils.set_random_seed(1)
    model = SubclassedNet(bug="sign")
    model.compile(keras.optimizers.SGD(0.1), "categorical_crossentropy")
    audit = GradientAudit((x[:16], y[:16]), verbose=0, on_mismatch="stop")
    _fit(model, audit, x, y)
    record = audit.records[0]
    assert record.failed_variables == ["user/kernel"]
    assert record.culprit == "user" and record.culprit_next == "out"
    paths = [v.path for v in record.variables]
    assert paths == ["hidden/kernel", "hidden/bias", "user/kernel", "user/bias", "out/kernel", "out/bias"]


def _snapshot(model):
    return [value for _, value in snapshot(list(model.variables) + list(model.optimizer.variables))]


def test_training_is_bit_identical_with_and_without_the_audit():
    x, y = _data(n=64)

    def run(with_audit):
        keras.utils.set_random_seed(11)
        model = keras.Sequential(
            [
                keras.Input((6,)),
                keras_bp.layers.Dense(12, activation="relu"),
                keras.layers.BatchNormalization(),
                keras_bp.layers.Dropout(0.3),
                keras.layers.Dropout(0.2),
                keras_bp.layers.Dense(3, activation="softmax"),
            ]
        )
        model.compile(keras.optimizers.Adam(0.01), "categorical_crossentropy", jit_compile=False)
        cbs = [GradientAudit((x[:20], y[:20]), every=2, directions=1, verbose=0)] if with_audit else []
        model.fit(x, y, batch_size=16, epochs=2, shuffle=False, callbacks=cbs, verbose=0)
        return _snapshot(model), model.evaluate(x, y, verbose=0)

    plain, plain_loss = run(False)
    audited, audited_loss = run(True)
    assert len(plain) == len(audited)
    for a, b in zip(plain, audited):
        np.testing.assert_array_equal(a, b)
    assert plain_loss == audited_loss


def test_traced_once_for_arrays_and_cycling_dataset():
    x, y = _data(n=64)
    # 20 examples in batches of 8: the last batch has 4, yet one trace serves all.
    dataset = tf.data.Dataset.from_tensor_slices((x[:20], y[:20], np.ones(20, "float32"))).batch(8)
    model = _planted_model(None)
    audit = GradientAudit(dataset, every=1, verbose=0, on_mismatch="raise")
    _fit(model, audit, x, y, batch_size=8)
    assert len(audit.records) == 9  # step 0 and each of the 8 steps: the dataset cycled
    assert audit._trace_count == 1
    assert all(r.passed for r in audit.records)
    assert [r.step for r in audit.records] == list(range(9))
    # A second fit of the same model reuses the traced function.
    _fit(model, audit, x[:16], y[:16], batch_size=8)
    assert audit._trace_count == 1 and [r.step for r in audit.records[9:]] == [8, 9, 10]


def test_on_mismatch_raise_stops_fit_naming_the_variables():
    x, y = _data()
    model = _planted_model("sign")
    audit = GradientAudit((x[:16], y[:16]), on_mismatch="raise", verbose=0)
    with pytest.raises(GradientAuditError, match="planted/kernel") as info:
        model.fit(x, y, batch_size=16, epochs=2, callbacks=[audit], verbose=0)
    assert isinstance(info.value, keras_bp.GradientCheckError)
    assert int(model.optimizer.iterations.numpy()) == 0


def test_on_mismatch_stop_sets_stop_training(capsys):
    x, y = _data()
    model = _planted_model("scaled")
    audit = GradientAudit((x[:16], y[:16]), every=2, on_mismatch="stop", verbose=1)
    history = _fit(model, audit, x, y, epochs=3)
    # Keras checks stop_training at the end of each epoch.
    assert len(history.history["loss"]) == 1
    assert model.stop_training
    out = capsys.readouterr().out
    assert "stopping training" in out and "planted/kernel" in out


def test_on_mismatch_warn_keeps_training_and_logs():
    x, y = _data()
    model = _planted_model("scaled")
    audit = GradientAudit((x[:16], y[:16]), every=2, on_mismatch="warn", verbose=0)
    with pytest.warns(UserWarning, match="planted/kernel"):
        history = model.fit(x, y, batch_size=16, epochs=2, callbacks=[audit], verbose=0)
    assert len(history.history["loss"]) == 2
    assert history.history["audit_failed"] == [1, 1]
    assert all(v > 5e-3 for v in history.history["audit_max_rel_error"])
    assert [r.step for r in audit.records] == [0, 2, 4, 6, 8]


def test_logs_history_csv_and_tensorboard(tmp_path):
    x, y = _data()
    model = _planted_model(None)
    audit = GradientAudit((x[:16], y[:16]), every=3, verbose=0, log_dir=str(tmp_path / "tb"))
    csv_path = tmp_path / "log.csv"
    batch_logs = []
    spy = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: batch_logs.append(dict(logs)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = model.fit(
            x, y, batch_size=16, epochs=2, verbose=0,
            callbacks=[audit, keras.callbacks.CSVLogger(str(csv_path)), spy],
        )
    assert history.history["audit_failed"] == [0, 0]
    assert all(v < 1e-4 for v in history.history["audit_max_rel_error"])
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert "audit_max_rel_error" in rows[0] and len(rows) == 2
    # Batch logs (the progress bar's) carry the audit at audited steps only: 3 and 6.
    audited = [i for i, logs in enumerate(batch_logs) if "audit_failed" in logs]
    assert audited == [2, 5]
    events = [f for _, _, files in os.walk(tmp_path / "tb") for f in files]
    assert any(f.startswith("events.out.tfevents") for f in events)
    tags = set()
    for root, _, files in os.walk(tmp_path / "tb"):
        for f in files:
            for event in tf.compat.v1.train.summary_iterator(os.path.join(root, f)):
                tags.update(v.tag for v in event.summary.value)
    assert {"audit/max_rel_error", "audit/failed_variables", "audit/planted/max_rel_error"} <= tags


def test_steps_per_execution_counts_optimizer_steps():
    x, y = _data(n=128)
    model = _planted_model(None)
    model.compile(keras.optimizers.SGD(0.05), "categorical_crossentropy", steps_per_execution=2)
    audit = GradientAudit((x[:16], y[:16]), every=3, verbose=0, on_mismatch="raise")
    _fit(model, audit, x, y)  # 8 steps in 4 executions: batch ends at steps 2, 4, 6, 8
    assert [r.step for r in audit.records] == [0, 4, 6]


def _reference_statistics(m, r):
    """The audit's statistics over the entries finite in both, written plainly."""
    m, r = np.ravel(m).astype(np.float64), np.ravel(r).astype(np.float64)
    both = np.isfinite(m) & np.isfinite(r)
    m, r = m[both], r[both]
    d = m - r
    norm = np.linalg.norm
    rel = norm(d) / norm(r) if norm(r) > 0 else (np.inf if norm(d) > 0 else 0.0)
    if norm(m) * norm(r) > 0:
        cosine = m @ r / (norm(m) * norm(r))
    else:
        cosine = 1.0 if norm(m) == norm(r) == 0 else 0.0
    largest = lambda t: np.abs(t).max(initial=0.0)  # noqa: E731
    return largest(d), rel, cosine, largest(r)


@pytest.mark.parametrize("case", ["finite", "nonfinite"])
def test_statistics_in_graph_and_on_host_match_a_plain_computation(case):
    from keras_bp.callbacks import _compare_all, _host_sums, _statistics, _statistics_masked

    rng = np.random.RandomState(0)
    shapes = [(4, 3), (5,), (0,), (2, 2), (3,)]
    manual = [rng.randn(*s) for s in shapes]
    reference = [g * 1.01 for g in manual]
    reference[1] = rng.randn(5)  # unrelated: cosine far from 1
    manual[3] = np.zeros((2, 2))
    reference[3] = np.zeros((2, 2))  # both zero: rel 0, cosine 1
    reference[4] = np.zeros(3)  # zero reference, nonzero manual: rel inf
    if case == "nonfinite":
        manual[0][1, 2] = np.nan
        manual[0][0, 0] = np.inf
        reference[0][0, 0] = -np.inf
        reference[1][3] = np.nan
    out = _compare_all([tf.constant(g) for g in manual], [tf.constant(g) for g in reference])
    out = {key: value.numpy() for key, value in out.items()}
    sums, maxes = _host_sums(manual, reference)
    for graph_value, host_value in ((out["sums"], sums), (out["maxes"], maxes)):
        np.testing.assert_allclose(graph_value, host_value, rtol=1e-12, atol=0)
    finite = np.all(np.isfinite(out["sums"])) and np.all(np.isfinite(out["maxes"]))
    # The sums reveal the non-finite entries: the audit's test for the masked path.
    assert finite == (case == "finite")
    assert finite == (np.all(np.isfinite(sums)) and np.all(np.isfinite(maxes)))
    masked, counts = _statistics_masked(manual, reference)
    results = [masked] + ([_statistics(out["sums"], out["maxes"]), _statistics(sums, maxes)] if finite else [])
    for statistics in results:
        for i in range(len(shapes)):
            expected = _reference_statistics(manual[i], reference[i])
            np.testing.assert_allclose([s[i] for s in statistics], expected, rtol=1e-12, atol=0)
    expected_counts = np.zeros((len(shapes), 3), np.int64)
    if case == "nonfinite":
        expected_counts[0] = [2, 1, 1]  # only the NaN at [1, 2] is finite in one of them
        expected_counts[1] = [0, 1, 1]
    np.testing.assert_array_equal(counts, expected_counts)


@pytest.mark.parametrize("bug", ["scaled", "nan"])
def test_statistics_in_the_function_and_on_the_host_give_the_same_records(bug, monkeypatch):
    # Variables in host memory: the sums are taken in NumPy. On an
    # accelerator: inside the audit's function. Both ways, the same record.
    import keras_bp.audit.probe as probe

    x, y = _data()
    records = {}
    for on_host in (True, False):
        monkeypatch.setattr(probe, "_on_host", lambda variable, on_host=on_host: on_host)
        audit = GradientAudit((x[:16], y[:16]), verbose=0, on_mismatch="stop")
        _fit(_planted_model(bug), audit, x, y)
        assert (audit._function.structured_outputs.sums is not None) != on_host
        records[on_host] = audit.records[0]
    host, graph = records[True], records[False]
    assert host.failed_variables == graph.failed_variables == ["planted/kernel"]
    for h, g in zip(host.variables, graph.variables):
        assert (h.manual_nonfinite, h.reference_nonfinite) == (g.manual_nonfinite, g.reference_nonfinite)
        np.testing.assert_allclose(
            [h.max_abs_error, h.rel_error, h.cosine], [g.max_abs_error, g.rel_error, g.cosine], rtol=1e-9
        )


def test_variables_on_the_cpu_are_in_host_memory():
    from keras_bp.callbacks import _on_host

    layer = keras_bp.layers.Dense(2)
    layer.build((None, 3))
    assert _on_host(layer.kernel) and _on_host(layer.kernel.value)


def test_jit_compile_counts_nonfinite_and_spares_correct_layers():
    # trap 8: check_numerics is blind under XLA; the audit's plain reductions are not.
    x, y = _data()
    model = _planted_model("nan", jit_compile=True)
    audit = GradientAudit((x[:16], y[:16]), verbose=0, on_mismatch="stop")
    _fit(model, audit, x, y)
    record = audit.records[0]
    stats = {v.path: v for v in record.variables}
    assert stats["planted/kernel"].manual_nonfinite == 8 * 5
    assert stats["planted/kernel"].reference_nonfinite == 0
    assert record.failed_variables == ["planted/kernel"]
    assert stats["first/kernel"].rel_error < 1e-5 and stats["last/kernel"].rel_error < 1e-5


def test_mixed_float16_no_false_alarms_and_bug_still_found(mixed_precision):
    x, y = _data(n=64)
    mixed_precision("mixed_float16")
    model = _dropout_model("sequential", mixed=True)
    model.compile(keras.optimizers.SGD(0.1), "categorical_crossentropy")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    audit = GradientAudit((x[:32], y[:32]), every=1, directions=2, verbose=0, on_mismatch="raise")
    _fit(model, audit, x, y, epochs=2)
    assert len(audit.records) == 9 and all(r.passed for r in audit.records)
    assert audit.records[0].rtol == 5e-2

    model = _planted_model("sign")
    audit = GradientAudit((x[:32], y[:32]), verbose=0, on_mismatch="stop")
    _fit(model, audit, x, y)
    assert audit.records[0].failed_variables == ["planted/kernel"]


def test_directions_catch_a_forward_autodiff_gets_wrong():
    # A forward with tf.stop_gradient fools autodiff and a matching manual
    # backward alike; only the finite differences of the loss see the slope.
    def forward(x, kernel):
        return x @ tf.stop_gradient(kernel), kernel

    def backward(kernel, dy):
        return dy @ tf.transpose(kernel), tf.zeros_like(kernel)

    class Frozen(keras.layers.Layer):
        def build(self, input_shape):
            self.kernel = self.add_weight(name="kernel", shape=(6, 3))
            self._op = keras_bp.manual_gradient(forward, backward)

        def call(self, x):
            return self._op(x, tf.convert_to_tensor(self.kernel))

    x, y = _data()
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((6,)), Frozen(name="frozen"), keras.layers.Softmax()])
    model.compile(keras.optimizers.SGD(0.0), "categorical_crossentropy")
    audit = GradientAudit((x[:32], y[:32]), directions=3, verbose=0, on_mismatch="stop")
    _fit(model, audit, x, y)
    record = audit.records[0]
    # Both gradients are zero (autodiff gives None, the manual backward zeros): they agree.
    assert record.failed_variables == []
    # A random direction may happen to be almost flat; most are not.
    assert record.failed_directions >= 2 and not record.passed
    for d in record.directions:
        assert d.manual == 0.0 and d.reference == 0.0
        assert d.passed == (abs(d.finite_difference) <= d.tolerance)
    assert "direction 0" in str(record)


def test_regularization_loss_is_included():
    x, y = _data()
    keras.utils.set_random_seed(5)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras_bp.layers.Dense(3, activation="softmax", kernel_regularizer=keras.regularizers.L2(0.5)),
        ]
    )
    model.compile(keras.optimizers.SGD(0.0), "categorical_crossentropy")
    audit = GradientAudit((x[:32], y[:32]), verbose=0)
    _fit(model, audit, x, y)
    loss = float(model.evaluate(x[:32], y[:32], batch_size=32, verbose=0))
    assert audit.records[0].loss == pytest.approx(loss, rel=1e-5)
    assert audit.records[0].passed


def test_summary_and_arguments():
    x, y = _data()
    model = _planted_model("sign")
    audit = GradientAudit((x[:16], y[:16]), every=2, verbose=0, on_mismatch="stop")
    _fit(model, audit, x, y)
    summary = audit.summary()
    assert "1 with mismatches" in summary and "planted/kernel" in summary
    assert "likely culprit layer(s): planted" in summary
    assert GradientAudit((x, y)).summary() == "GradientAudit: no audits ran."

    with pytest.raises(ValueError, match="every must be a positive integer, received: every=0"):
        GradientAudit((x, y), every=0)
    with pytest.raises(ValueError, match="directions=-1"):
        GradientAudit((x, y), directions=-1)
    with pytest.raises(ValueError, match="on_mismatch=.ignore."):
        GradientAudit((x, y), on_mismatch="ignore")
    with pytest.raises(ValueError, match="rtol=-1"):
        GradientAudit((x, y), rtol=-1)
    with pytest.raises(ValueError, match="of length 1"):
        GradientAudit((x,))
    with pytest.raises(ValueError, match="element_spec"):
        GradientAudit(tf.data.Dataset.from_tensor_slices(x))


def test_mirrored_strategy_in_subprocess():
    # Logical devices must be configured before TensorFlow starts.
    script = textwrap.dedent(
        """
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras, keras_bp
        from keras_bp.callbacks import GradientAudit
        rng = np.random.RandomState(0)
        x = rng.randn(64, 6).astype("float32")
        y = keras.utils.to_categorical(rng.randint(0, 3, 64), 3)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            model = keras.Sequential([keras.Input((6,)),
                keras_bp.layers.Dense(8, activation="relu"), keras_bp.layers.Dropout(0.3),
                keras_bp.layers.Dense(3, activation="softmax")])
            model.compile(keras.optimizers.SGD(0.1), "categorical_crossentropy")
        audit = GradientAudit((x[:16], y[:16]), every=2, directions=1, verbose=0,
                              on_mismatch="raise")
        model.fit(x, y, batch_size=16, epochs=2, callbacks=[audit], verbose=0)
        assert strategy.num_replicas_in_sync == 2
        assert all(r.passed for r in audit.records), audit.records
        print("AUDITS", len(audit.records), audit._trace_count)
        """
    )
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "AUDITS 5 1" in result.stdout


# --- The verdict on deep, ill-conditioned models --------------------------------


def _deep_bn_model(offset, seed=0):
    """stem -> [a -> b] + [shortcut] -> head: convolutions with biases before BatchNormalization.

    `offset` initializes those biases: every BatchNormalization then
    normalizes values near `offset` with a variance near 1, which costs
    float32 about log10(offset) digits in both passes (the ill-conditioning
    of a deep network at initialization, made small), and leaves each bias
    an exact gradient of zero.
    """
    keras.utils.set_random_seed(seed)
    layers = keras_bp.layers
    bias = keras.initializers.Constant(offset)

    def conv_bn(h, name):
        h = layers.Conv2D(6, 3, padding="same", bias_initializer=bias, name=name)(h)
        return layers.BatchNormalization(name=name + "_bn")(h)

    inputs = keras.Input((6, 6, 3))
    h = layers.Activation("relu", name="stem_relu")(conv_bn(inputs, "stem"))
    branch = conv_bn(layers.Activation("relu")(conv_bn(h, "a")), "b")
    h = layers.Activation("relu")(keras.layers.Add()([branch, conv_bn(h, "shortcut")]))
    h = layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, layers.Dense(4, activation="softmax", name="head")(h))
    model.compile(keras_bp.optimizers.SGD(1e-3), keras_bp.losses.CategoricalCrossentropy())
    return model


def _images(n=8, seed=0):
    rng = np.random.RandomState(seed)
    x = rng.rand(n, 6, 6, 3).astype("float32")
    return x, keras.utils.to_categorical(rng.randint(0, 4, n), 4).astype("float32")


def test_float32_round_off_of_an_ill_conditioned_model_is_no_false_alarm():
    x, y = _images()
    audit = GradientAudit((x[:4], y[:4]), every=1, verbose=0, on_mismatch="raise")
    _fit(_deep_bn_model(1e4), audit, x, y, batch_size=4)
    assert len(audit.records) == 3
    for record in audit.records:
        stats = {v.path: v for v in record.variables}
        # Float32 alone cannot tell these from a bug: 1e-2 and more.
        assert max(stats[p].compute_rel_error for p in ("stem/kernel", "a/kernel", "b_bn/gamma")) > 1e-2
        # Biases before BatchNormalization: exact gradient zero, round-off in both passes.
        assert stats["a/bias"].compute_rel_error > 1.0
        assert record.checked_in_float64 and record.passed
        assert record.max_rel_error < 1e-6
        assert all(v.manual_rounding_error is not None for v in record.variables)
    assert "checked in float64" in str(audit.records[0])


@pytest.mark.parametrize(
    "layer, position, factor, op",
    [("a", 1, 1.01, "_op"), ("a_bn", 1, 1.01, "_train_op"), ("b", 0, 0.99, "_op"), ("a", 0, 0.99, "_op")],
)
def test_one_percent_bugs_are_caught_under_ten_percent_float32_noise(layer, position, factor, op):
    from keras_bp.audit.planted import plant_gradient_bug

    x, y = _images()
    model = _deep_bn_model(1e4)
    plant_gradient_bug(model.get_layer(layer), position=position, factor=factor, op=op)
    audit = GradientAudit((x[:4], y[:4]), every=1000, verbose=0, on_mismatch="stop")
    _fit(model, audit, x[:4], y[:4], batch_size=4)
    record = audit.records[0]
    assert not record.passed and record.checked_in_float64
    failed_layers = {v.layer for v in record.variables if not v.passed}
    if position:
        # The planted weight gradient is wrong, every layer before it is right.
        assert record.culprit == layer and record.earlier_layers_agree
        assert failed_layers == {layer}
        (wrong,) = [v for v in record.variables if not v.passed]
        np.testing.assert_allclose(wrong.rel_error, factor - 1, rtol=1e-4)
    else:
        # A wrong input gradient shows in the layers before it; the layer
        # itself is the other suspect. "a" reads the stem's output, which
        # the shortcut reads too: both are named.
        assert layer not in failed_layers
        expected = {"b": ("a_bn", ["b"]), "a": ("stem_bn", ["a", "shortcut"])}[layer]
        assert (record.culprit, record.next_layers) == expected
        assert record.culprit_next == expected[1][0]
        assert all(f"'{name}'" in str(record) for name in expected[1])


def test_reference_float64_checks_every_audit():
    x, y = _images()
    audit = GradientAudit((x[:4], y[:4]), every=1, verbose=0, reference="float64", on_mismatch="raise")
    _fit(_deep_bn_model(0.0), audit, x, y, batch_size=4)
    assert all(r.checked_in_float64 and r.passed for r in audit.records)
    # Well conditioned: float32 agrees too, and so do the rounding errors.
    assert max(v.compute_rel_error for v in audit.records[0].variables if v.path in ("a/kernel", "head/kernel")) < 1e-4
    with pytest.raises(ValueError, match="reference must be one of .*received: reference='exact'"):
        GradientAudit((x, y), reference="exact")


class Float32Only(keras.layers.Layer):
    """A user layer that computes in float32 whatever its dtype policy says."""

    def call(self, x):
        return x * tf.constant(2.0, tf.float32)


def test_a_model_that_cannot_run_in_float64_keeps_the_compute_verdict():
    x, y = _data()
    keras.utils.set_random_seed(3)
    inputs = keras.Input((6,))
    h = Float32Only()(keras_bp.layers.Dense(8, activation="tanh", name="first")(inputs))
    h = TanhDense(5, bug="scaled", name="planted")(h)
    model = keras.Model(inputs, keras_bp.layers.Dense(3, activation="softmax", name="last")(h))
    model.compile(keras.optimizers.SGD(0.05), keras_bp.losses.CategoricalCrossentropy())
    audit = GradientAudit((x[:16], y[:16]), verbose=0, on_mismatch="stop")
    _fit(model, audit, x, y)
    record = audit.records[0]
    assert record.failed_variables == ["planted/kernel"] and not record.checked_in_float64
    assert "float64 check could not run" in record.note and "float64 check could not run" in str(record)
    model = keras.Model(inputs, model.outputs)
    model.compile(keras.optimizers.SGD(0.05), keras_bp.losses.CategoricalCrossentropy())
    with pytest.raises(ValueError, match="reference='float64'.*cannot run in float64"):
        _fit(model, GradientAudit((x[:16], y[:16]), verbose=0, reference="float64"), x, y)


def _lossy_forward(x, w):
    return x * w, (x, w)


def _lossy_backward(saved, dy):
    x, w = saved
    # Right in exact arithmetic; in float32 the round trip through 1e4 keeps
    # ~3 digits of dy * w (float64 keeps ~12).
    dx = tf.exp(tf.math.log(1e4 + dy * w)) - 1e4
    return dx, tf.reduce_sum(dy * x, axis=0)


class LossyScale(keras.layers.Layer):
    def build(self, input_shape):
        self.w = self.add_weight(name="w", shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return keras_bp.manual_gradient(_lossy_forward, _lossy_backward)(x, tf.convert_to_tensor(self.w))


def test_a_backward_that_loses_float32_accuracy_fails_though_float64_agrees():
    x, y = _data()
    keras.utils.set_random_seed(3)
    inputs = keras.Input((6,))
    h = LossyScale(name="lossy")(keras_bp.layers.Dense(8, activation="tanh", name="first")(inputs))
    model = keras.Model(inputs, keras_bp.layers.Dense(3, activation="softmax", name="last")(h))
    model.compile(keras.optimizers.SGD(0.05), keras_bp.losses.CategoricalCrossentropy())
    audit = GradientAudit((x[:16], y[:16]), verbose=0, on_mismatch="stop")
    _fit(model, audit, x, y)
    record = audit.records[0]
    assert record.checked_in_float64 and record.failed_variables == ["first/kernel", "first/bias"]
    stats = {v.path: v for v in record.variables}
    kernel = stats["first/kernel"]
    # Exact in float64, and far less accurate than autodiff in float32.
    assert kernel.rel_error < 1e-9
    assert kernel.manual_rounding_error > 1000 * kernel.reference_rounding_error
    assert record.culprit == "first" and record.culprit_next == "lossy"


def test_verdict_judges_zero_gradients_against_the_gradient_norm():
    from keras_bp.audit import verdict
    from keras_bp.audit.statistics import compare

    big = np.full(100, 10.0)
    manual = [big, np.array([3e-6, -3e-6]), big * 1.01]
    reference = [big, np.array([1e-6, 2e-6]), big]
    comparison = compare(manual, reference)
    assert comparison.scale == pytest.approx(np.sqrt(2 * 100 * 100.0 + 5e-12))
    # rel error ~2 on the zero-gradient pair, yet 6e-6 is round-off next to S = 141.
    assert comparison.rel_error[1] > 1
    np.testing.assert_array_equal(verdict.within(comparison, 1e-3, 1e-6), [True, True, False])
    # An absolute tolerance that ignores S (atol 0) fails it.
    assert not verdict.within(comparison, 1e-3, 0.0)[1]
    scaled = verdict.scaled_rel_error(comparison, 1e-3, 1e-6)
    assert scaled[1] < 1e-4 and scaled[2] == pytest.approx(0.01)


def test_float64_compute_is_undone_even_when_tracing_fails(mixed_precision):
    from keras_bp.audit.float64 import float64_compute

    mixed_precision("mixed_float16")
    model = _planted_model(None)
    model(tf.zeros((2, 6)))
    before = [(layer.compute_dtype, layer.variable_dtype) for layer in model.layers]
    assert ("float16", "float32") in before
    with pytest.raises(RuntimeError):
        with float64_compute(model):
            assert keras.config.floatx() == "float64"
            assert {layer.compute_dtype for layer in model.layers[1:]} == {"float64"}
            assert {layer.variable_dtype for layer in model.layers[1:]} == {"float32"}
            assert model._compile_loss is None or model._compile_loss.dtype == "float64"
            raise RuntimeError
    assert keras.config.floatx() == "float32"
    assert [(layer.compute_dtype, layer.variable_dtype) for layer in model.layers] == before
