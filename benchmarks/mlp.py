"""Training-step time and peak memory of the MNIST MLP: keras_bp layers over Keras's layers.

    python benchmarks/mlp.py            # 7 alternating rounds of 50 steps, both jit_compile modes
    python benchmarks/mlp.py --quick    # jit_compile=False, 3 rounds of 20 steps

The network of examples/mnist.py (Dense 64 relu, Dense 10 softmax, batch 32)
is built from keras_bp layers and from keras.layers with the same weights and
the same optimizer (Keras's SGD, so only the layers and the loss differ). Time:
median seconds per `train_on_batch` over rounds that alternate between the two
in one process. Memory: peak resident set size of a fresh process that trains
one of them (host memory: on a CPU that is where TensorFlow's tensors live),
and its growth during training.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import alternating_medians, child_memory, report_child_memory, time_train_steps  # noqa: E402

SOURCES = ("keras_bp", "keras")


def build(source, jit_compile, seed=0):
    import keras

    import keras_bp

    library, losses = (keras_bp.layers, keras_bp.losses) if source == "keras_bp" else (keras.layers, keras.losses)
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((784,)), library.Dense(64, activation="relu"), library.Dense(10, activation="softmax")]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=losses.CategoricalCrossentropy(), jit_compile=jit_compile)
    return model


def batch(batch_size, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(batch_size, 784)).astype("float32")
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, batch_size)]
    return x, y


def benchmark_time(jit_compile, rounds, steps, batch_size=32):
    models = {source: build(source, jit_compile) for source in SOURCES}
    models["keras_bp"].set_weights(models["keras"].get_weights())
    x, y = batch(batch_size)
    return alternating_medians(models, x, y, rounds, steps)


def benchmark_memory(jit_compile, steps, batch_size=32):
    return {
        source: child_memory(__file__, ["--memory-child", source, "--jit", str(jit_compile), "--steps", str(steps)])
        for source in SOURCES
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--memory-child", choices=SOURCES, help=argparse.SUPPRESS)
    parser.add_argument("--jit", default="False", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        model = build(args.memory_child, args.jit == "True")
        x, y = batch(32)
        report_child_memory(lambda: time_train_steps(model, x, y, args.steps))
        return
    rounds, steps, modes = (3, 20, [False]) if args.quick else (args.rounds, args.steps, [False, True])
    print(f"MNIST MLP, batch 32, {rounds} alternating rounds of {steps} steps")
    print(f"{'jit_compile':<12} {'keras_bp ms/step':>17} {'Keras ms/step':>14} {'ratio':>6}  {'peak MiB ours/Keras':>20}")
    for jit in modes:
        t = benchmark_time(jit, rounds, steps)
        m = benchmark_memory(jit, steps)
        print(f"{str(jit):<12} {t['keras_bp'] * 1e3:>17.3f} {t['keras'] * 1e3:>14.3f} "
              f"{t['keras_bp'] / t['keras']:>6.3f}  {m['keras_bp']['peak_kib'] / 1024:>9.0f} / {m['keras']['peak_kib'] / 1024:.0f}")


if __name__ == "__main__":
    main()
