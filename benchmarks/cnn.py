"""Training-step time and peak memory of the CNN example: keras_bp layers over Keras's layers.

    python benchmarks/cnn.py            # full: both jit_compile modes, 7 rounds
    python benchmarks/cnn.py --quick    # a few seconds' worth: jit_compile=False, 3 rounds

Time: the network of examples/cnn_mnist.py is built twice, once from keras_bp
layers and once from keras.layers, with the same weights, optimizer (Keras's
Adam, so only the layers differ) and batch. In one process, rounds alternate
between the two models; each round times `--steps` calls of
`train_on_batch` after warm-up, and the script prints the median step time of
each and their ratio (keras_bp / Keras; below 1 means keras_bp is faster).

Memory: each model is trained for `--steps` steps in a fresh subprocess, and
the script prints the peak resident set size of that process
(getrusage ru_maxrss), and its growth over the RSS measured just before
training (which isolates the training step's activations, gradients and
optimizer state from the TensorFlow runtime both processes share). It
measures host memory: on a CPU that is where TensorFlow's tensors live.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import ROOT, alternating_medians, child_memory, report_child_memory, time_train_steps  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "examples"))
SOURCES = ("keras_bp", "keras")


def build(source, jit_compile, seed=0):
    """The example's network from keras_bp or keras.layers, with Keras's Adam (only the layers differ)."""
    import keras

    from cnn_mnist import build_model

    keras.utils.set_random_seed(seed)
    model = build_model(source)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  jit_compile=jit_compile)
    return model


def batch(batch_size, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(batch_size, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, size=(batch_size,))
    return x, y


def benchmark_time(jit_compile, rounds, steps, batch_size):
    models = {source: build(source, jit_compile) for source in SOURCES}
    models["keras_bp"].set_weights(models["keras"].get_weights())
    x, y = batch(batch_size)
    return alternating_medians(models, x, y, rounds, steps)


def memory_child(source, jit_compile, steps, batch_size):
    """Runs in a fresh process: train one model, report peak and growth of RSS in KiB."""
    model = build(source, jit_compile)
    x, y = batch(batch_size)
    report_child_memory(lambda: time_train_steps(model, x, y, steps))


def benchmark_memory(jit_compile, steps, batch_size):
    return {
        source: child_memory(__file__, ["--memory-child", source, "--jit-compile", str(jit_compile).lower(),
                                        "--steps", str(steps), "--batch-size", str(batch_size)])
        for source in SOURCES
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="jit_compile=False only, 3 rounds of 5 steps")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20, help="training steps per timed round")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--jit-compile", choices=("false", "true", "both"), default="both")
    parser.add_argument("--memory-child", choices=SOURCES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_child:
        memory_child(args.memory_child, args.jit_compile == "true", args.steps, args.batch_size)
        return
    if args.quick:
        args.rounds, args.steps, args.jit_compile = 3, 5, "false"
    modes = {"false": [False], "true": [True], "both": [False, True]}[args.jit_compile]

    print(f"CNN example network, batch {args.batch_size}, {args.rounds} alternating rounds of {args.steps} steps")
    print(f"{'jit_compile':<12} {'keras_bp ms/step':>17} {'Keras ms/step':>14} {'ratio':>6}")
    for jit in modes:
        t = benchmark_time(jit, args.rounds, args.steps, args.batch_size)
        print(f"{str(jit):<12} {t['keras_bp'] * 1e3:>17.2f} {t['keras'] * 1e3:>14.2f} {t['keras_bp'] / t['keras']:>6.3f}")
    print()
    print(f"{'jit_compile':<12} {'memory':<24} {'keras_bp MiB':>13} {'Keras MiB':>10} {'ratio':>6}")
    for jit in modes:
        m = benchmark_memory(jit, args.steps, args.batch_size)
        for key, label in (("peak_kib", "peak RSS"), ("growth_kib", "RSS growth in training")):
            ours, theirs = m["keras_bp"][key] / 1024, m["keras"][key] / 1024
            print(f"{str(jit):<12} {label:<24} {ours:>13.1f} {theirs:>10.1f} {ours / theirs:>6.3f}")


if __name__ == "__main__":
    main()
