"""The classic tiny network, 1 input -> 3 sigmoid hidden units -> 1 sigmoid output,
with every partial derivative written out by the chain rule.

Network (j = 1, 2, 3 indexes the hidden units):

    z1j = w1j * x + b1j          hidden pre-activation
    hj  = sigmoid(z1j)           hidden output
    z2  = sum_j w2j * hj + b2    output pre-activation
    o   = sigmoid(z2)            output
    E   = 1/2 (y - o)^2          error

Backward, one factor per arrow of the chain rule:

    dE/do    = o - y
    do/dz2   = o (1 - o)                      so  delta2 = (o - y) o (1 - o)
    dE/dw2j  = delta2 * hj
    dE/db2   = delta2
    dE/dhj   = delta2 * w2j
    dhj/dz1j = hj (1 - hj)                    so  delta1j = delta2 * w2j * hj (1 - hj)
    dE/dw1j  = delta1j * x
    dE/db1j  = delta1j

The hidden weights' gradient carries w2j * hj (1 - hj): shortcut derivations
that drop the hidden sigmoid's derivative get it wrong. The script prints each
partial beside TensorFlow's autodiff value, then trains the network with plain
gradient descent (w <- w - learning_rate * dE/dw) until the error is below a
target, printing the error curve.

Run: python examples/tiny_network.py [--x 1.0 --y 0.2 --learning-rate 2.0 --target 1e-6]

`--learning-rate` and `--seed` are examples/_cli.py's, as in the other
examples; there is no data to load and no `fit`, so no other shared flag applies.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_bp  # noqa: E402

import _cli  # noqa: E402


def forward(params, x):
    w1, b1, w2, b2 = params
    z1 = w1 * x + b1
    h = tf.sigmoid(z1)
    z2 = tf.reduce_sum(w2 * h) + b2
    o = tf.sigmoid(z2)
    return h, o


def manual_gradients(params, x, y):
    """Every partial derivative by the chain rule, as in the module docstring."""
    w1, b1, w2, b2 = params
    h, o = forward(params, x)
    dE_do = o - y
    do_dz2 = o * (1 - o)
    delta2 = dE_do * do_dz2
    dE_dw2 = delta2 * h
    dE_db2 = delta2
    dE_dh = delta2 * w2
    dh_dz1 = h * (1 - h)
    delta1 = dE_dh * dh_dz1
    dE_dw1 = delta1 * x
    dE_db1 = delta1
    return [dE_dw1, dE_db1, dE_dw2, dE_db2], o


def error(o, y):
    return 0.5 * (y - o) ** 2


def autodiff_gradients(params, x, y):
    variables = [tf.Variable(p) for p in params]
    with tf.GradientTape() as tape:
        _, o = forward(variables, x)
        e = error(o, y)
    return tape.gradient(e, variables)


def parse_args(argv=None):
    parser = _cli.new_parser(__doc__)
    parser.add_argument("--x", type=float, default=1.0, help="the input; default: 1.0")
    parser.add_argument("--y", type=float, default=0.2, help="the target output; default: 0.2")
    _cli.add_learning_rate(parser, 2.0)
    parser.add_argument("--target", type=float, default=1e-6, help="stop when E is below this; default: 1e-06")
    parser.add_argument("--max-steps", type=int, default=10000, help="default: 10000")
    _cli.add_seed(parser, 0)
    args = _cli.parse(parser, argv)
    if not 0 < args.y < 1:
        parser.error(f"--y must be in (0, 1), the range of a sigmoid output, received: {args.y}")
    return args


def main(argv=None):
    args = parse_args(argv)
    rng = np.random.RandomState(args.seed)
    params = [
        tf.constant(rng.uniform(-1, 1, 3), tf.float64),  # w1j
        tf.constant(rng.uniform(-1, 1, 3), tf.float64),  # b1j
        tf.constant(rng.uniform(-1, 1, 3), tf.float64),  # w2j
        tf.constant(rng.uniform(-1, 1), tf.float64),  # b2
    ]
    x = tf.constant(args.x, tf.float64)
    y = tf.constant(args.y, tf.float64)

    manual, o = manual_gradients(params, x, y)
    reference = autodiff_gradients(params, x, y)
    print(f"x = {args.x}, y = {args.y}, o = {float(o):.6f}, E = {float(error(o, y)):.6f}\n")
    print(f"{'partial':<10} {'chain rule':>14} {'autodiff':>14} {'|difference|':>13}")
    names = [("dE/dw1", 3), ("dE/db1", 3), ("dE/dw2", 3), ("dE/db2", 0)]
    worst = 0.0
    for (name, n), g, r in zip(names, manual, reference):
        for j, (gj, rj) in enumerate(zip(np.atleast_1d(g.numpy()), np.atleast_1d(r.numpy()))):
            label = f"{name}{j + 1}" if n else name
            worst = max(worst, abs(gj - rj))
            print(f"{label:<10} {gj:>14.8f} {rj:>14.8f} {abs(gj - rj):>13.2e}")
    print(f"\nlargest difference between chain rule and autodiff: {worst:.2e}\n")

    # The same derivation as a keras_bp op, checked by keras_bp.check_gradients
    # against autodiff and float64 finite differences.
    def network_forward(w1, b1, w2, b2):
        _, o = forward([w1, b1, w2, b2], x)
        return error(o, y), (w1, b1, w2, b2)

    def network_backward(saved, dE):
        grads, _ = manual_gradients(list(saved), x, y)
        return [dE * g for g in grads]

    network = keras_bp.manual_gradient(network_forward, network_backward, name="tiny_network")
    result = keras_bp.check_gradients(network, *params)
    print(f"keras_bp.check_gradients: {'passed' if result.passed else 'FAILED'}, "
          f"max relative error {result.max_rel_error:.2e}\n")

    print("training with plain gradient descent: w <- w - learning_rate * dE/dw")
    for step in range(args.max_steps + 1):
        grads, o = manual_gradients(params, x, y)
        e = float(error(o, y))
        if step % 5 == 0 or e < args.target:
            print(f"step {step:5d}  E = {e:.8f}")
        if e < args.target:
            break
        params = [p - args.learning_rate * g for p, g in zip(params, grads)]
    status = "reached" if e < args.target else "did not reach"
    print(f"\n{status} E < {args.target} after {step} steps: o = {float(o):.6f}")
    return 0 if e < args.target and result.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
