"""Training-step time and peak memory of one transformer block from keras_bp's layers against Keras's.

The model is Input(T, 64) -> one encoder block (MultiHeadAttention(4 heads,
key_dim 16) with a residual Add and LayerNormalization, then Dense(128, relu)
-> Dense(64) with the same) -> GlobalAveragePooling1D -> Dense(10, softmax),
trained with SGD on a batch of 16 through `model.train_on_batch` (Keras's
compiled train step, no XLA unless --jit), at sequence lengths T = 64 and 256.

Time: the two models alternate in one process, in pairs of blocks of steps
(the order flipping every pair); each pair gives a ratio keras_bp / Keras of
wall time (perf_counter) and of CPU time (process_time, all threads), and
the figures are the medians of those ratios over the pairs (ratio < 1:
keras_bp is faster). Memory: as benchmarks/recurrent.py, each model trains
in a fresh subprocess with TensorFlow's BFC allocator on the CPU
(TF_CPU_ALLOCATOR_USE_BFC=true); after a warm-up step the figure is the
allocator's peak during the timed steps minus what was allocated before
them: the memory a training step takes at its peak (what the forward saves
for the backward, gradients, temporaries).

    python benchmarks/attention.py            # 9 pairs of 10 steps
    python benchmarks/attention.py --quick    # 3 pairs of 3 steps
    python benchmarks/attention.py --lengths 64 --threads 1
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import machine, set_threads, time_train_steps  # noqa: E402

BATCH, DIM, HEADS, KEY_DIM, FF, CLASSES = 16, 64, 4, 16, 128, 10
LIBRARIES = ("keras_bp", "keras")


def _model(library, length, jit):
    import keras

    import keras_bp

    layers = keras_bp.layers if library == "keras_bp" else keras.layers
    keras.utils.set_random_seed(0)
    x = inputs = keras.Input((length, DIM))
    attention = layers.MultiHeadAttention(HEADS, KEY_DIM)(x, x)
    x = layers.LayerNormalization()(layers.Add()([x, attention]))
    ffn = layers.Dense(DIM)(layers.Dense(FF, activation="relu")(x))
    x = layers.LayerNormalization()(layers.Add()([x, ffn]))
    outputs = layers.Dense(CLASSES, activation="softmax")(layers.GlobalAveragePooling1D()(x))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy", jit_compile=jit)
    return model


def _data(length):
    import numpy as np

    rng = np.random.RandomState(0)
    return rng.standard_normal((BATCH, length, DIM)).astype("float32"), rng.randint(0, CLASSES, (BATCH,))


def _timed(model, x, y, steps):
    """(wall seconds, CPU seconds) per step over `steps` steps."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


def time_ratios(length, pairs, steps, jit):
    """Median over alternating pairs of keras_bp / Keras (wall and CPU), and the median ms per step."""
    x, y = _data(length)
    models = {library: _model(library, length, jit) for library in LIBRARIES}
    models["keras"].set_weights(models["keras_bp"].get_weights())
    for model in models.values():
        time_train_steps(model, x, y, 3)  # trace, warm up
    wall_ratios, cpu_ratios, wall = [], [], {library: [] for library in LIBRARIES}
    for i in range(pairs):
        order = LIBRARIES if i % 2 == 0 else LIBRARIES[::-1]
        measured = {library: _timed(models[library], x, y, steps) for library in order}
        wall_ratios.append(measured["keras_bp"][0] / measured["keras"][0])
        cpu_ratios.append(measured["keras_bp"][1] / measured["keras"][1])
        for library in LIBRARIES:
            wall[library].append(measured[library][0])
    return {
        "wall_ratio": statistics.median(wall_ratios),
        "cpu_ratio": statistics.median(cpu_ratios),
        **{f"{library}_ms": statistics.median(wall[library]) * 1e3 for library in LIBRARIES},
    }


def _peak_memory_child(library, length, steps, jit):
    import tensorflow as tf

    x, y = _data(length)
    model = _model(library, length, jit)
    time_train_steps(model, x, y, 1)  # trace
    rest = tf.config.experimental.get_memory_info("CPU:0")["current"]
    tf.config.experimental.reset_memory_stats("CPU:0")
    time_train_steps(model, x, y, steps)
    peak = tf.config.experimental.get_memory_info("CPU:0")["peak"]
    print(json.dumps({"step_peak_kib": (peak - rest) / 1024}))


def peak_memory(library, length, steps, jit, threads):
    command = [sys.executable, __file__, "--memory-child", library, str(length), str(steps),
               "--threads", str(threads)] + (["--jit"] if jit else [])
    # The BFC allocator on the CPU counts every tensor's bytes, peak included.
    env = {**os.environ, "TF_CPU_ALLOCATOR_USE_BFC": "true"}
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(output.strip().splitlines()[-1])["step_peak_kib"] / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 pairs of 3 steps")
    parser.add_argument("--jit", action="store_true", help="compile both train steps with XLA")
    parser.add_argument("--lengths", nargs="+", type=int, default=[64, 256])
    parser.add_argument("--threads", type=int, default=0,
                        help="TensorFlow intra- and inter-op threads (0: TensorFlow's default)")
    parser.add_argument("--memory-child", nargs=3, metavar=("LIBRARY", "LENGTH", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    set_threads(args.threads)
    if args.memory_child:
        library, length, steps = args.memory_child
        _peak_memory_child(library, int(length), int(steps), args.jit)
        return
    pairs, steps = (3, 3) if args.quick else (9, 10)
    print(machine())
    print(f"one transformer block, batch {BATCH}, dim {DIM}, {HEADS} heads x {KEY_DIM}, ff {FF}; "
          f"median of {pairs} alternating pairs of {steps} train_on_batch steps; jit_compile={args.jit}; "
          f"threads={args.threads or 'default'}")
    header = (f"{'T':>4} {'keras_bp ms':>11} {'keras ms':>9} {'wall ratio':>10} {'CPU ratio':>9} "
              f"{'step peak MiB (bp / keras)':>27} {'mem ratio':>9}")
    print(header)
    print("-" * len(header))
    for length in args.lengths:
        t = time_ratios(length, pairs, steps, args.jit)
        m = {library: peak_memory(library, length, steps, args.jit, args.threads) for library in LIBRARIES}
        print(f"{length:>4} {t['keras_bp_ms']:>11.2f} {t['keras_ms']:>9.2f} {t['wall_ratio']:>10.2f} "
              f"{t['cpu_ratio']:>9.2f} {m['keras_bp']:>13.1f} / {m['keras']:<11.1f} "
              f"{m['keras_bp'] / max(m['keras'], 1e-9):>9.2f}", flush=True)


if __name__ == "__main__":
    main()
