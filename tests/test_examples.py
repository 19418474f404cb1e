"""The examples run end to end (small settings)."""

import importlib.util
import pathlib

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_network_matches_autodiff_and_trains(capsys):
    tiny = load_example("tiny_network")
    assert tiny.main(["--target", "1e-4"]) == 0
    out = capsys.readouterr().out
    assert "dE/dw11" in out and "dE/db2" in out
    assert "keras_bp.check_gradients: passed" in out
    assert "reached E < 0.0001" in out
    worst = float(out.split("largest difference between chain rule and autodiff: ")[1].split()[0])
    assert worst < 1e-12


def test_tiny_network_hidden_gradient_has_the_sigmoid_factor():
    import tensorflow as tf

    tiny = load_example("tiny_network")
    params = [tf.constant([0.3, -0.2, 0.5], tf.float64), tf.constant([0.1, 0.0, -0.1], tf.float64),
              tf.constant([0.7, -0.4, 0.2], tf.float64), tf.constant(0.05, tf.float64)]
    x, y = tf.constant(0.8, tf.float64), tf.constant(0.3, tf.float64)
    manual, _ = tiny.manual_gradients(params, x, y)
    reference = tiny.autodiff_gradients(params, x, y)
    for g, r in zip(manual, reference):
        assert float(tf.reduce_max(tf.abs(g - r))) < 1e-12


def _run(script, *args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True,
                          timeout=600)


def test_mnist_example_end_to_end_on_the_offline_digits(tmp_path):
    out = _run("mnist.py", "--epochs", "1", "--limit", "400", "--audit-every", "5", "--verbose", "0",
               "--save", str(tmp_path / "mnist.keras"), "--plot", str(tmp_path / "curves.png"))
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("data: ")
    assert lines[-1].startswith("test accuracy: ") and 0.0 <= float(lines[-1].split()[-1]) <= 1.0
    assert "GradientAudit:" in out.stdout and "0 with mismatches" in out.stdout
    assert (tmp_path / "mnist.keras").exists() and (tmp_path / "curves.png").exists()


def test_mnist_example_reports_a_bad_data_dir_without_traceback(tmp_path):
    out = _run("mnist.py", "--data-dir", str(tmp_path / "missing"))
    assert out.returncode == 2 and "error:" in out.stderr and "Traceback" not in out.stderr


def test_autoencoder_and_lstm_examples_end_to_end(tmp_path):
    out = _run("autoencoder.py", "--epochs", "1", "--limit", "300", "--verbose", "0",
               "--png", str(tmp_path / "rec.png"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1].startswith("test reconstruction error")
    assert (tmp_path / "rec.png").exists()
    out = _run("lstm_mnist.py", "--epochs", "1", "--limit", "300")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1].startswith("test accuracy: ")


def test_classifier_learning_rate_is_checked_and_decays_to_zero(capsys):
    import sys

    import pytest

    sys.path.insert(0, str(EXAMPLES))
    try:
        train = load_example("_train")
    finally:
        sys.path.remove(str(EXAMPLES))
    with pytest.raises(SystemExit):
        train.parse_args("doc", ["--learning-rate", "0"], 12)
    assert "--learning-rate" in capsys.readouterr().err
    assert train.parse_args("doc", [], 12).learning_rate == 2e-3
    for source in ("keras_bp", "keras"):
        optimizer = train.make_optimizer(source, 2e-3, decay_steps=10)
        assert abs(float(optimizer.learning_rate) - 2e-3) < 1e-9
        optimizer.iterations.assign(5)
        assert abs(float(optimizer.learning_rate) - 1e-3) < 1e-9  # half way down the cosine
        optimizer.iterations.assign(10)
        assert float(optimizer.learning_rate) == 0.0
