"""keras_bp.distribute: the fix of Keras's multi-worker `fit` (keras#20585), its gate, and two workers on 127.0.0.1.

The cluster tests start real worker processes under MultiWorkerMirroredStrategy
in a network namespace whose only interface is loopback (TensorFlow's gRPC
servers listen on every interface; the namespace keeps them on 127.0.0.1),
with the launcher of examples/multi_worker.py. Run as a program, this file is
the tiny model's launcher (`--cluster DIR`) and worker (`--worker NAME DIR`).
"""

import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
# The published Keras versions whose trainer was read and has both faults (keras_bp/distribute.py).
KERAS_WITH_BOTH_FAULTS = ("3.6.0", "3.9.2", "3.12.0", "3.14.0", "3.15.1")
CLUSTER_TIMEOUT = 240  # seconds, for each whole cluster run


def _launcher():
    """examples/multi_worker.py as a module: its process launcher and network namespace helpers."""
    spec = importlib.util.spec_from_file_location("multi_worker", EXAMPLES / "multi_worker.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.pop("TF_CONFIG", None)
    return env


def _private_network():
    prefix = _launcher().private_network_command()
    assert prefix is not None, (
        "the cluster tests need a network namespace of their own (Linux `unshare --net --map-root-user`): "
        "TensorFlow's servers listen on every interface, and these tests keep them on loopback"
    )
    return prefix


# --- The fix and its gate, in this process ------------------------------------------


@pytest.fixture
def distribute():
    import keras_bp

    keras_bp.distribute.disable_multi_worker_fit()
    yield keras_bp.distribute
    keras_bp.distribute.disable_multi_worker_fit()


def _keras_functions():
    from keras.src.backend.tensorflow import trainer

    return trainer.TensorFlowTrainer._maybe_symbolic_build, trainer.reduce_per_replica


def test_installed_keras_is_diagnosed_from_its_source(distribute):
    import keras

    bugs = distribute.multi_worker_fit_bugs()
    assert set(bugs) <= {"symbolic_build", "scalar_mean"}
    if keras.__version__ in KERAS_WITH_BOTH_FAULTS:
        assert bugs == ("symbolic_build", "scalar_mean")


def test_enable_is_explicit_idempotent_and_undone(distribute):
    originals = _keras_functions()
    needed = distribute.multi_worker_fit_bugs()
    assert distribute.enable_multi_worker_fit() == needed
    fixed = _keras_functions()
    for name, original, now in zip(("symbolic_build", "scalar_mean"), originals, fixed):
        assert (now is not original) == (name in needed)
    assert distribute.multi_worker_fit_bugs() == needed  # still judged by Keras's own source
    assert distribute.enable_multi_worker_fit() == needed
    assert _keras_functions() == fixed  # not wrapped twice
    assert distribute.disable_multi_worker_fit() == needed
    assert _keras_functions() == originals
    assert distribute.disable_multi_worker_fit() == ()


def _fixed_reduce_per_replica(values, strategy, reduction):
    """A stand-in for a Keras whose reduction is fixed: the faulty line is gone."""
    return strategy.reduce("MEAN", values, axis=None)


def test_no_op_for_a_keras_without_the_faults(distribute, monkeypatch):
    import types

    fixed_keras = types.SimpleNamespace(reduce_per_replica=_fixed_reduce_per_replica)
    monkeypatch.setitem(distribute._TARGETS, "scalar_mean", (fixed_keras, "reduce_per_replica"))
    monkeypatch.setitem(distribute._TARGETS, "symbolic_build", (fixed_keras, "missing_method"))
    assert distribute.multi_worker_fit_bugs() == ()
    assert distribute.enable_multi_worker_fit() == ()
    assert fixed_keras.reduce_per_replica is _fixed_reduce_per_replica


def _train_tiny(strategy):
    import keras
    import tensorflow as tf

    import keras_bp

    keras.utils.set_random_seed(3)
    x = np.random.RandomState(0).randn(64, 6).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    with strategy.scope():
        model = keras.Sequential([keras.Input((6,)), keras_bp.layers.Dense(4, activation="tanh"),
                                  keras_bp.layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer=keras_bp.optimizers.Adam(0.01), loss=keras_bp.losses.BinaryCrossentropy(),
                      metrics=["accuracy"])
    history = model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(16), epochs=2, verbose=0,
                        shuffle=False)
    return model.get_weights(), history.history, model.evaluate(x, y, verbose=0), model.predict(x, verbose=0)


def test_fixed_functions_leave_one_process_bit_for_bit(distribute):
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])  # the symbolic build runs under any strategy
    before = _train_tiny(strategy)
    assert distribute.enable_multi_worker_fit() == distribute.multi_worker_fit_bugs()
    after = _train_tiny(strategy)
    for a, b in zip(before[0], after[0]):
        np.testing.assert_array_equal(a, b)
    assert before[1] == after[1] and before[2] == after[2]
    np.testing.assert_array_equal(before[3], after[3])


# --- Two workers of tiny models: keras_bp's LSTM and Adam, and Keras's own layers ----


def _tiny_data():
    rng = np.random.RandomState(0)
    x = rng.randn(160, 4, 3).astype("float32")
    y = (x[:, :, 0].sum(axis=1) > 0).astype("int64") + (x[:, -1, 1] > 0.5)
    return (x[:128], y[:128]), (x[128:], y[128:])


def _tiny_model(kind):
    """"lstm": keras_bp's LSTM, Dense, loss and Adam; "keras": a small MLP from Keras's own classes."""
    import keras

    import keras_bp

    keras.utils.set_random_seed(1)
    if kind == "lstm":
        lib, layers = keras_bp, [keras_bp.layers.LSTM(5)]
    else:
        lib, layers = keras, [keras.layers.Flatten(), keras.layers.Dense(8, activation="relu")]
    model = keras.Sequential([keras.Input((4, 3)), *layers, lib.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=lib.optimizers.Adam(0.01), loss=lib.losses.SparseCategoricalCrossentropy(),
                  metrics=["accuracy"])
    return model


def _worker(name, results_dir):
    """One process of the tiny cluster run (a worker when TF_CONFIG is set, else the one-process run)."""
    import tensorflow as tf

    from keras.src.backend.tensorflow import trainer

    import keras_bp
    from keras_bp import distribute

    multi_worker = "TF_CONFIG" in os.environ
    strategy = tf.distribute.MultiWorkerMirroredStrategy() if multi_worker else tf.distribute.get_strategy()
    (x, y), (x_test, y_test) = _tiny_data()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA

    def pipeline(*arrays):
        return tf.data.Dataset.from_tensor_slices(arrays).batch(32, drop_remainder=True).with_options(options)

    results = {
        "untouched_on_import": all(f.__module__ == trainer.__name__ and not hasattr(f, "__wrapped__")
                                   for f in _keras_functions()),
        "bugs": list(distribute.multi_worker_fit_bugs()),
        "stock_errors": {},
    }
    if multi_worker:
        # Keras as it is, then with the first fix alone: each fault shows as its own error.
        for stage, fixes in (("stock", ()), ("symbolic_build_fixed", ("symbolic_build",))):
            distribute._enable(fixes)
            with strategy.scope():
                model = _tiny_model("keras")  # the faults are Keras's: any model shows them
            try:
                model.fit(pipeline(x, y), epochs=1, verbose=0)
                results["stock_errors"][stage] = None
            except ValueError as error:
                results["stock_errors"][stage] = str(error)[:300]
        results["fixes"] = list(distribute.enable_multi_worker_fit())

    arrays = {}
    for source in ("lstm", "keras"):
        with strategy.scope():
            model = _tiny_model(source)
        # The audit where there are manual gradients to check (Keras's layers agree trivially).
        audits = [keras_bp.callbacks.GradientAudit((x[:16], y[:16]), every=3, verbose=0)] if source == "lstm" else []
        history = model.fit(pipeline(x, y), epochs=2, callbacks=audits, verbose=0, shuffle=False)
        results[source] = {
            "steps": int(model.optimizer.iterations.numpy()),
            "loss_history": history.history["loss"],
            "evaluate": model.evaluate(pipeline(x_test, y_test), verbose=0),
            "audits": [bool(r.passed) for audit in audits for r in audit.records],
        }
        arrays[f"{source}_predict"] = model.predict(pipeline(x_test), verbose=0)
        for k, w in enumerate(model.get_weights()):
            arrays[f"{source}_weight_{k}"] = w
    np.savez(os.path.join(results_dir, f"{name}.npz"), **arrays)
    with open(os.path.join(results_dir, f"{name}.json"), "w") as f:
        json.dump(results, f)
    if multi_worker:
        _launcher().barrier(strategy, results_dir)


def _cluster(results_dir, workers=2):
    """Inside the private namespace: starts the workers and the one-process run; returns the exit status."""
    launcher = _launcher()
    launcher.bring_up_loopback()
    assert launcher.only_loopback()
    ports = launcher.free_ports(workers)
    me = [sys.executable, os.path.abspath(__file__), "--worker"]
    commands = [(f"worker{i}", me + [f"worker{i}", results_dir],
                 dict(_env(), TF_CONFIG=json.dumps(launcher.tf_config(ports, i)))) for i in range(workers)]
    commands.append(("single", me + ["single", results_dir], _env()))
    status = launcher.run_processes(commands, CLUSTER_TIMEOUT - 30, results_dir)
    print(json.dumps(status))
    return 0 if all(code == 0 for code in status.values()) else 1


def _logs(results_dir):
    return "\n".join(f"--- {p.name}\n" + p.read_text(errors="replace")[-3000:]
                     for p in sorted(pathlib.Path(results_dir).glob("*.log")))


def test_two_workers_train_evaluate_predict_and_audit_a_tiny_lstm(tmp_path):
    command = _private_network() + [sys.executable, os.path.abspath(__file__), "--cluster", str(tmp_path)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=CLUSTER_TIMEOUT, env=_env())
    assert out.returncode == 0, out.stdout[-1000:] + out.stderr[-2000:] + _logs(tmp_path)

    numbers = {n: json.loads((tmp_path / f"{n}.json").read_text()) for n in ("worker0", "worker1", "single")}
    arrays = {n: dict(np.load(tmp_path / f"{n}.npz")) for n in numbers}
    for n in numbers:
        assert numbers[n]["untouched_on_import"], n  # switched on by the user only
    for n in ("worker0", "worker1"):
        # The gate and the behaviour agree: each fault the source shows is an error in Keras's own fit.
        errors = numbers[n]["stock_errors"]
        bugs = numbers[n]["bugs"]
        assert numbers[n]["fixes"] == bugs
        if "symbolic_build" in bugs:
            assert "PerReplica" in errors["stock"], errors
        if "scalar_mean" in bugs:
            assert "Invalid reduction dimension" in errors["symbolic_build_fixed"], errors
        if not bugs:
            assert errors == {"stock": None, "symbolic_build_fixed": None}

    for source in ("lstm", "keras"):
        single = numbers["single"][source]
        audits = 3 if source == "lstm" else 0
        assert single["steps"] == 8 and len(single["audits"]) == audits and all(single["audits"])
        weights = sorted(k for k in arrays["single"] if k.startswith(f"{source}_weight_"))
        for n in ("worker0", "worker1"):
            mine = numbers[n][source]
            assert mine["steps"] == 8, (n, source)
            assert len(mine["audits"]) == audits and all(mine["audits"]), (n, source, mine["audits"])
            for k in weights:
                np.testing.assert_array_equal(arrays[n][k], arrays["worker0"][k])  # identical across workers
                np.testing.assert_allclose(arrays[n][k], arrays["single"][k], rtol=0, atol=1e-6)
            assert mine["evaluate"] == numbers["worker0"][source]["evaluate"]
            np.testing.assert_allclose(mine["evaluate"], single["evaluate"], rtol=0, atol=1e-6)
            np.testing.assert_allclose(mine["loss_history"], single["loss_history"], rtol=0, atol=1e-6)
            # Each worker gets every prediction, in the data's order.
            assert arrays[n][f"{source}_predict"].shape == (32, 3)
            np.testing.assert_allclose(arrays[n][f"{source}_predict"], arrays["single"][f"{source}_predict"],
                                       rtol=0, atol=1e-6)


# --- The example ---------------------------------------------------------------------


def test_multi_worker_example_two_workers(tmp_path):
    _private_network()
    command = [sys.executable, str(EXAMPLES / "multi_worker.py"), "--workers", "2", "--epochs", "1",
               "--limit", "256", "--audit-every", "3", "--timeout", str(CLUSTER_TIMEOUT - 60),
               "--results", str(tmp_path)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=CLUSTER_TIMEOUT, env=_env())
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:] + _logs(tmp_path)
    last = out.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"multi-worker: 2 workers, max weight difference between workers (\S+), "
                         r"from one process (\S+)", last)
    assert match, last
    assert float(match.group(1)) == 0.0 and float(match.group(2)) < 1e-6, last
    assert "(a network namespace with loopback only)" in out.stdout
    for name in ("worker0", "worker1", "single"):
        numbers = json.loads((tmp_path / f"{name}.json").read_text())
        assert numbers["steps"] == 8 and numbers["audits"] == 3 and numbers["audits_passed"] == 3, numbers
        assert numbers["replicas"] == (1 if name == "single" else 2)
    workers = [json.loads((tmp_path / f"worker{i}.json").read_text()) for i in range(2)]
    assert workers[0]["loss"] == workers[1]["loss"] and workers[0]["accuracy"] == workers[1]["accuracy"]


def test_multi_worker_example_refuses_a_batch_it_cannot_split(capsys):
    with pytest.raises(SystemExit):
        _launcher().parse_args(["--workers", "3", "--batch-size", "32"])
    err = capsys.readouterr().err
    assert "--batch-size must be a multiple of --workers" in err and "--workers 3" in err


if __name__ == "__main__":
    if sys.argv[1] == "--cluster":
        raise SystemExit(_cluster(sys.argv[2]))
    if sys.argv[1] == "--worker":
        _launcher()._exit_with_parent_or_deadline(os.getppid(), CLUSTER_TIMEOUT)
        _worker(sys.argv[2], sys.argv[3])
        sys.stdout.flush()
        os._exit(0)  # an interpreter exit can wait on TensorFlow's gRPC threads; the results are written
