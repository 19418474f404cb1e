"""Every keras_bp layer with weights alone: forward plus backward time, keras_bp over Keras.

    python benchmarks/layers.py                 # 7 alternating rounds of 10 calls per layer
    python benchmarks/layers.py --quick         # 3 rounds of 3 calls
    python benchmarks/layers.py --only Conv2D,LSTM
    python benchmarks/layers.py --jit           # each call compiled with XLA

For each layer, at a small training-sized shape, one `tf.function`
computes the layer's output on a fixed input and the gradients of the sum
of its squares with respect to the input and the weights (benchmarks/
_common.py `layer_gradient_step`). keras_bp's layer and Keras's, with the
same weights, alternate in rounds; each round's ratio is taken, and the
table gives the median of those ratios in wall time and in CPU time (all
threads), with each side's median milliseconds per call. Below 1: keras_bp
is faster. `python benchmarks/run.py` prints these rows in its table.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import alternating_pair_ratios, layer_gradient_step, machine  # noqa: E402


def _float(*shape):
    import tensorflow as tf

    return tf.random.uniform(shape, -1.0, 1.0)


def _tokens(*shape):
    import tensorflow as tf

    return tf.random.uniform(shape, 0, 1000, dtype=tf.int32)


# (label, class name, constructor kwargs, inputs: a function of nothing, as one tensor or a list)
LAYERS = (
    ("Dense(256, relu)", "Dense", dict(units=256, activation="relu"), lambda: _float(128, 512)),
    ("EinsumDense(abc,cd->abd)", "EinsumDense", dict(equation="abc,cd->abd", output_shape=(None, 64), bias_axes="d"),
     lambda: _float(32, 50, 128)),
    ("Embedding(1000, 64)", "Embedding", dict(input_dim=1000, output_dim=64), lambda: _tokens(128, 50)),
    ("Conv1D(64, 5)", "Conv1D", dict(filters=64, kernel_size=5, activation="relu"), lambda: _float(32, 128, 32)),
    ("Conv2D(64, 3)", "Conv2D", dict(filters=64, kernel_size=3, activation="relu"), lambda: _float(32, 28, 28, 32)),
    ("Conv2D(64, 3, groups=4)", "Conv2D", dict(filters=64, kernel_size=3, groups=4), lambda: _float(32, 28, 28, 32)),
    ("Conv3D(16, 3)", "Conv3D", dict(filters=16, kernel_size=3, activation="relu"), lambda: _float(8, 12, 12, 12, 8)),
    ("Conv1DTranspose(32, 3, s2)", "Conv1DTranspose", dict(filters=32, kernel_size=3, strides=2, padding="same"),
     lambda: _float(32, 64, 32)),
    ("Conv2DTranspose(32, 3, s2)", "Conv2DTranspose", dict(filters=32, kernel_size=3, strides=2, padding="same"),
     lambda: _float(32, 14, 14, 32)),
    ("Conv3DTranspose(8, 3, s2)", "Conv3DTranspose", dict(filters=8, kernel_size=3, strides=2, padding="same"),
     lambda: _float(8, 6, 6, 6, 8)),
    ("DepthwiseConv1D(5)", "DepthwiseConv1D", dict(kernel_size=5), lambda: _float(32, 128, 32)),
    ("DepthwiseConv2D(3)", "DepthwiseConv2D", dict(kernel_size=3, activation="relu"), lambda: _float(32, 28, 28, 32)),
    ("SeparableConv1D(64, 5)", "SeparableConv1D", dict(filters=64, kernel_size=5), lambda: _float(32, 128, 32)),
    ("SeparableConv2D(64, 3)", "SeparableConv2D", dict(filters=64, kernel_size=3), lambda: _float(32, 28, 28, 32)),
    ("BatchNormalization", "BatchNormalization", dict(), lambda: _float(32, 28, 28, 32)),
    ("LayerNormalization", "LayerNormalization", dict(), lambda: _float(128, 512)),
    ("GroupNormalization(8)", "GroupNormalization", dict(groups=8), lambda: _float(32, 28, 28, 32)),
    ("PReLU", "PReLU", dict(), lambda: _float(128, 512)),
    ("SimpleRNN(64)", "SimpleRNN", dict(units=64), lambda: _float(32, 28, 28)),
    ("LSTM(64)", "LSTM", dict(units=64), lambda: _float(32, 28, 28)),
    ("GRU(64)", "GRU", dict(units=64), lambda: _float(32, 28, 28)),
    ("MultiHeadAttention(4, 16)", "MultiHeadAttention", dict(num_heads=4, key_dim=16),
     lambda: [_float(16, 64, 64), _float(16, 64, 64)]),
    ("Attention(use_scale)", "Attention", dict(use_scale=True), lambda: [_float(16, 64, 64), _float(16, 64, 64)]),
    ("AdditiveAttention", "AdditiveAttention", dict(), lambda: [_float(16, 64, 64), _float(16, 64, 64)]),
)


class _TwoArguments:
    """Adapts MultiHeadAttention to `layer_gradient_step`'s one-argument call."""

    def __init__(self, layer):
        self.layer = layer

    def __call__(self, inputs, training=None):
        return self.layer(*inputs, training=training)

    @property
    def trainable_weights(self):
        return self.layer.trainable_weights


def rows(jit=False, rounds=7, calls=10, only=None):
    """One dict per layer: label, wall_ratio, cpu_ratio, keras_bp_ms, keras_ms (or missing=True)."""
    import keras

    import keras_bp

    out = []
    for i, (label, class_name, kwargs, make_inputs) in enumerate(LAYERS):
        if only and class_name not in only:
            continue
        if not hasattr(keras_bp.layers, class_name):
            out.append(dict(label=label, missing=True))
            continue
        keras.utils.set_random_seed(i)
        inputs = make_inputs()
        ours, theirs = getattr(keras_bp.layers, class_name)(**kwargs), getattr(keras.layers, class_name)(**kwargs)
        if class_name == "MultiHeadAttention":
            ours, theirs = _TwoArguments(ours), _TwoArguments(theirs)
        input_gradient = class_name != "Embedding"
        steps = {}
        for name, layer in (("keras", theirs), ("keras_bp", ours)):
            steps[name] = layer_gradient_step(layer, inputs, jit, input_gradient)
        inner = lambda layer: getattr(layer, "layer", layer)  # noqa: E731
        inner(ours).set_weights(inner(theirs).get_weights())
        got = alternating_pair_ratios(steps["keras_bp"], steps["keras"], rounds, calls)
        out.append(dict(label=label, wall_ratio=got["wall_ratio"], cpu_ratio=got["cpu_ratio"],
                        keras_bp_ms=got["first_s"] * 1e3, keras_ms=got["second_s"] * 1e3))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 3 calls")
    parser.add_argument("--jit", action="store_true", help="compile each call with XLA")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--only", default="", help="comma-separated class names")
    args = parser.parse_args(argv)
    rounds, calls = (3, 3) if args.quick else (args.rounds, args.calls)
    only = set(filter(None, args.only.split(",")))
    print(f"machine: {machine()}")
    print(f"jit_compile={args.jit}; median of {rounds} alternating pairs of {calls} calls (forward + backward)")
    print(f"{'layer':28s} {'keras_bp ms':>11s} {'Keras ms':>9s} {'wall ratio':>10s} {'CPU ratio':>9s}")
    for row in rows(args.jit, rounds, calls, only):
        if row.get("missing"):
            print(f"{row['label']:28s} (not in keras_bp)")
            continue
        print(f"{row['label']:28s} {row['keras_bp_ms']:11.2f} {row['keras_ms']:9.2f} "
              f"{row['wall_ratio']:10.3f} {row['cpu_ratio']:9.3f}")


if __name__ == "__main__":
    main()
