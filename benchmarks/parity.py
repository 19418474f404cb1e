"""The largest difference from Keras over every registered layer case and every loss case.

    python benchmarks/parity.py

For each case of the shared harness (tests/cases_*.py: core, convolutional
and recurrent layers) with a Keras counterpart, and each loss case of
tests/test_losses.py: outputs and gradients (float32, copied weights), the
largest absolute difference and the largest difference relative to the
largest magnitude of the Keras value.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def _diff(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(float(np.max(np.abs(b))), 1e-30) if b.size else 1.0
    err = float(np.max(np.abs(a - b))) if a.size else 0.0
    return err, err / scale


def harness_rows():
    from tests.harness import all_cases, dense, gradients

    for case in all_cases():
        if case.keras_make is None:
            continue
        ours, theirs = case.make(), case.keras_make()
        inputs = [tf.convert_to_tensor(x) for x in case.inputs(seed=2)]
        for layer in (ours, theirs):
            layer(*inputs, **case.call_kwargs)
        ours.set_weights(theirs.get_weights())
        for v, w in zip(ours.non_trainable_variables, theirs.non_trainable_variables):
            v.assign(w)
        y1, g1 = gradients(ours, inputs, call_kwargs=case.call_kwargs)
        y2, g2 = gradients(theirs, inputs, call_kwargs=case.call_kwargs)
        worst = max([_diff(a, b) for a, b in zip(y1, y2)] +
                    [_diff(dense(a), dense(b)) for a, b in zip(g1, g2) if a is not None], key=lambda d: d[1])
        yield case.id, worst


def loss_rows():
    import keras

    import keras_bp
    from tests.test_losses import CASES, REDUCTIONS, WEIGHTS, _value_and_grad

    for case_id, name, kwargs, y_true, y_pred in CASES:
        for reduction in REDUCTIONS:
            ours = getattr(keras_bp.losses, name)(reduction=reduction, **kwargs)
            theirs = getattr(keras.losses, name)(reduction=reduction, **kwargs)
            v1, g1 = _value_and_grad(ours, y_true, y_pred, WEIGHTS)
            v2, g2 = _value_and_grad(theirs, y_true, y_pred, WEIGHTS)
            yield f"{case_id}-{reduction}", max(_diff(v1, v2), _diff(g1, g2), key=lambda d: d[1])


def main():
    rows = list(harness_rows()) + list(loss_rows())
    rows.sort(key=lambda row: -row[1][1])
    print(f"{len(rows)} cases; the ten largest differences from Keras (outputs and gradients, float32):")
    for name, (err, rel) in rows[:10]:
        print(f"  {name:<50} max abs {err:.3g}   relative to max |Keras| {rel:.3g}")


if __name__ == "__main__":
    main()
