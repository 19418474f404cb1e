"""Each layer of the CNN example alone: forward and backward time, keras_bp over Keras.

    python benchmarks/cnn_layers.py          # jit_compile=False
    python benchmarks/cnn_layers.py --jit    # each step compiled with XLA

For each layer of examples/cnn_mnist.py, at the shape it sees with batch
128, one `tf.function` computes the layer's output on a fixed input and the
gradients of the sum of its squares with respect to the input (except for
the first layer, whose input is the data) and the weights. keras_bp's layer
and Keras's, with the same weights, alternate in rounds of `--calls` calls;
the script prints the median time of each and their ratio (below 1:
keras_bp is faster). This is where `benchmarks/cnn.py`'s whole-step ratio
comes from, layer by layer.
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import layer_gradient_step, seconds_per_call  # noqa: E402

# (name, layer from a module of layers, input shape)
LAYERS = (
    ("Conv2D(32, relu)", lambda L: L.Conv2D(32, (3, 3), activation="relu"), (128, 28, 28, 1)),
    ("MaxPooling2D", lambda L: L.MaxPooling2D((2, 2)), (128, 26, 26, 32)),
    ("Conv2D(64, relu)", lambda L: L.Conv2D(64, (3, 3), activation="relu"), (128, 13, 13, 32)),
    ("MaxPooling2D", lambda L: L.MaxPooling2D((2, 2)), (128, 11, 11, 64)),
    ("Flatten", lambda L: L.Flatten(), (128, 5, 5, 64)),
    ("Dense(128, relu)", lambda L: L.Dense(128, activation="relu"), (128, 1600)),
    ("Dropout(0.5)", lambda L: L.Dropout(0.5), (128, 128)),
    ("Dense(10, softmax)", lambda L: L.Dense(10, activation="softmax"), (128, 128)),
)


def main(jit=False, rounds=9, calls=20):
    import keras
    import tensorflow as tf

    import keras_bp

    rows = []
    for i, (name, make, shape) in enumerate(LAYERS):
        keras.utils.set_random_seed(i)
        x = tf.random.uniform(shape)
        layers = {"keras_bp": make(keras_bp.layers), "keras": make(keras.layers)}
        steps = {}
        for source, layer in layers.items():
            steps[source] = layer_gradient_step(layer, x, jit, input_gradient=i > 0)
        layers["keras_bp"].set_weights(layers["keras"].get_weights())
        for step in steps.values():
            step()  # trace
        times = {source: [] for source in steps}
        for r in range(rounds):
            for source in steps if r % 2 == 0 else list(steps)[::-1]:
                times[source].append(seconds_per_call(steps[source], calls)[0])
        bp, k = statistics.median(times["keras_bp"]), statistics.median(times["keras"])
        rows.append((name, shape, bp, k))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jit", action="store_true", help="compile each step with XLA")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    print(f"jit_compile={args.jit}; median of {args.rounds} alternating rounds of {args.calls} calls")
    print(f"{'layer':20s} {'input':18s} {'keras_bp ms':>11s} {'Keras ms':>9s} {'ratio':>6s}")
    for name, shape, bp, k in main(args.jit, args.rounds, args.calls):
        print(f"{name:20s} {str(shape):18s} {bp * 1e3:11.2f} {k * 1e3:9.2f} {bp / k:6.3f}")
