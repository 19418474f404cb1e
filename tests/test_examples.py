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
               "--plot", str(tmp_path / "rec.png"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1].startswith("test reconstruction error")
    assert (tmp_path / "rec.png").exists()
    out = _run("lstm_mnist.py", "--epochs", "1", "--limit", "300", "--plot", str(tmp_path / "curves.png"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1].startswith("test accuracy: ")
    assert (tmp_path / "curves.png").exists()  # curves without validation data


def _load_private(name):
    import sys

    sys.path.insert(0, str(EXAMPLES))
    try:
        return load_example(name)
    finally:
        sys.path.remove(str(EXAMPLES))


# Each example's flags from examples/_cli.py: the shared ones that apply to it.
SHARED_FLAGS = ["--data-dir", "--epochs", "--batch-size", "--learning-rate", "--limit", "--seed", "--layers",
                "--jit-compile", "--plot", "--verbose"]
FLAGS = {
    "mnist": SHARED_FLAGS,
    "cnn_mnist": SHARED_FLAGS,
    "lstm_mnist": SHARED_FLAGS,
    "autoencoder": [flag for flag in SHARED_FLAGS if flag != "--layers"],
    "tiny_network": ["--learning-rate", "--seed"],
}


def _parse(name, argv):
    if name in ("cnn_mnist", "lstm_mnist"):
        return _load_private("_train").parse_args(load_example(name).__doc__, argv, 12)
    return load_example(name).parse_args(argv)


def test_examples_share_one_set_of_flag_names(capsys):
    import pytest

    for name, flags in FLAGS.items():
        with pytest.raises(SystemExit):
            _parse(name, ["--help"])
        usage = capsys.readouterr().out
        for flag in SHARED_FLAGS:
            assert (f"[{flag}" in usage) == (flag in flags), (name, flag)
        for old in ("--library", "--jit ", "--jit]", "--png"):
            assert old not in usage, (name, old)


def test_examples_keep_their_defaults_and_read_jit_compile():
    mnist = _parse("mnist", [])
    assert (mnist.epochs, mnist.batch_size, mnist.learning_rate, mnist.seed) == (10, 32, 0.01, 0)
    assert (mnist.layers, mnist.jit_compile, mnist.plot) == ("keras_bp", False, None)
    cnn = _parse("cnn_mnist", [])
    assert (cnn.epochs, cnn.batch_size, cnn.learning_rate, cnn.seed) == (12, 128, 2e-3, 1)
    assert (cnn.layers, cnn.jit_compile, cnn.plot) == ("keras_bp", "auto", None)
    autoencoder = _parse("autoencoder", [])
    assert (autoencoder.epochs, autoencoder.batch_size, autoencoder.seed) == (10, 64, 0)
    assert (autoencoder.jit_compile, autoencoder.plot) == ("auto", "reconstructions.png")
    assert _parse("tiny_network", []).seed == 0
    for text, value in (("auto", "auto"), ("true", True), ("false", False)):
        assert _parse("mnist", ["--jit-compile", text]).jit_compile is value
    assert _parse("mnist", ["--layers", "keras"]).layers == "keras"


def test_examples_reject_bad_values_naming_the_flag(capsys):
    import pytest

    for name, argv in (("mnist", ["--limit", "5"]), ("autoencoder", ["--epochs", "0"]),
                       ("tiny_network", ["--learning-rate", "-1"]), ("mnist", ["--jit-compile", "yes"])):
        with pytest.raises(SystemExit):
            _parse(name, argv)
        err = capsys.readouterr().err
        assert f"argument {argv[0]}" in err and argv[1] in err, err


def test_classifier_learning_rate_is_checked_and_decays_to_zero(capsys):
    import pytest

    train = _load_private("_train")
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
