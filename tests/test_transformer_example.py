"""examples/transformer.py: runs end to end (a few steps), every parameter behind a manual backward, twin of Keras's."""

import numpy as np

from keras_bp.convert._report import count_manual_parameters
from tests.test_examples import _load_private, _run


def _build(source):
    return _load_private("transformer").build_model(source)


def test_transformer_example_end_to_end_on_the_offline_digits():
    out = _run("transformer.py", "--epochs", "1", "--limit", "256", "--batch-size", "64", "--verbose", "0")
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[-1].startswith("test accuracy: ") and 0.0 <= float(lines[-1].split()[-1]) <= 1.0
    assert "GradientAudit:" in out.stdout and "0 with mismatches" in out.stdout


def test_every_parameter_is_manual_and_keras_twin_has_the_same_weights():
    ours, theirs = _build("keras_bp"), _build("keras")
    manual, trainable = count_manual_parameters(ours)
    assert manual == trainable > 0
    assert count_manual_parameters(theirs) == (0, trainable)
    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    ours.set_weights(theirs.get_weights())
    x = np.random.RandomState(0).uniform(size=(2, 28, 28)).astype("float32")
    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-5, atol=1e-6)

