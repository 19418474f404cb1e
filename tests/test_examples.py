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
