"""Training-step time and peak memory of keras_bp's SimpleRNN, LSTM and GRU against Keras's.

Each model is Input(28 steps, 28 features) -> RNN(128 units) -> Dense(10,
softmax), trained with SGD on a batch of 64 with sparse categorical
cross-entropy through `model.train_on_batch` (Keras's compiled train step, no
XLA unless --jit). Time: keras_bp's model and Keras's alternate in one
process (benchmarks/_common.py: rounds of a block of steps each, the order
flipping every round), and the ratio is of the medians over the rounds
(ratio < 1: keras_bp is faster). Memory: each model trains in a fresh
subprocess with TensorFlow's BFC allocator on the CPU
(TF_CPU_ALLOCATOR_USE_BFC=true), which counts the bytes of every tensor;
after one warm-up step (tracing) the figure is the allocator's peak during
the timed steps minus what was allocated at rest before them (weights,
optimizer state): the memory a training step takes at its peak (what the
forward saves for the backward, gradients, temporaries). The process's
lifetime peak RSS (ru_maxrss, TensorFlow's runtime included) is printed too.

    python benchmarks/recurrent.py            # full: 11 rounds of 20 steps
    python benchmarks/recurrent.py --quick    # 3 rounds of 5 steps
    python benchmarks/recurrent.py --threads 1   # one TensorFlow thread (less noise on a busy machine)
"""

import argparse
import json
import os
import resource
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import alternating_medians, machine, set_threads, time_train_steps  # noqa: E402

BATCH, STEPS, FEATURES, UNITS, CLASSES = 64, 28, 28, 128, 10
KINDS = ("SimpleRNN", "LSTM", "GRU")


def _model(library, kind, jit):
    import keras

    import keras_bp

    layers = keras_bp.layers if library == "keras_bp" else keras.layers
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((STEPS, FEATURES)), getattr(layers, kind)(UNITS), layers.Dense(CLASSES, activation="softmax")]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy", jit_compile=jit)
    return model


def _data():
    import numpy as np

    rng = np.random.RandomState(0)
    return rng.standard_normal((BATCH, STEPS, FEATURES)).astype("float32"), rng.randint(0, CLASSES, (BATCH,))


def time_ratio(kind, rounds, steps, jit):
    x, y = _data()
    models = {library: _model(library, kind, jit) for library in ("keras_bp", "keras")}
    models["keras"].set_weights(models["keras_bp"].get_weights())
    return alternating_medians(models, x, y, rounds, steps)


def _peak_memory_child(library, kind, steps, jit):
    import tensorflow as tf

    x, y = _data()
    model = _model(library, kind, jit)
    time_train_steps(model, x, y, 1)  # trace
    rest = tf.config.experimental.get_memory_info("CPU:0")["current"]
    tf.config.experimental.reset_memory_stats("CPU:0")
    time_train_steps(model, x, y, steps)
    peak = tf.config.experimental.get_memory_info("CPU:0")["peak"]
    lifetime = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"step_peak_kib": (peak - rest) / 1024, "lifetime_peak_kib": lifetime}))


def peak_memory(library, kind, steps, jit, threads):
    command = [sys.executable, __file__, "--memory-child", library, kind, str(steps), "--threads", str(threads)]
    command += ["--jit"] if jit else []
    # The BFC allocator on the CPU counts every tensor's bytes, peak included.
    env = {**os.environ, "TF_CPU_ALLOCATOR_USE_BFC": "true"}
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(output.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 5 steps")
    parser.add_argument("--jit", action="store_true", help="compile both train steps with XLA")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--threads", type=int, default=0,
                        help="TensorFlow intra- and inter-op threads (0: TensorFlow's default)")
    parser.add_argument("--memory-child", nargs=3, metavar=("LIBRARY", "KIND", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    set_threads(args.threads)
    if args.memory_child:
        library, kind, steps = args.memory_child
        _peak_memory_child(library, kind, int(steps), args.jit)
        return
    rounds, steps = (3, 5) if args.quick else (11, 20)
    print(machine())
    print(f"batch {BATCH}, {STEPS} steps x {FEATURES} features, {UNITS} units; "
          f"median of {rounds} alternating rounds of {steps} train_on_batch steps; jit_compile={args.jit}; "
          f"threads={args.threads or 'default'}")
    header = (f"{'layer':<10} {'keras_bp ms':>11} {'keras ms':>9} {'time ratio':>10} "
              f"{'step peak MiB (bp / keras)':>27} {'mem ratio':>9} {'lifetime RSS MiB (bp / keras)':>30}")
    print(header)
    print("-" * len(header))
    for kind in args.kinds:
        t = time_ratio(kind, rounds, steps, args.jit)
        m = {library: peak_memory(library, kind, steps, args.jit, args.threads) for library in ("keras_bp", "keras")}
        step = {k: v["step_peak_kib"] / 1024 for k, v in m.items()}
        life = {k: v["lifetime_peak_kib"] / 1024 for k, v in m.items()}
        print(f"{kind:<10} {t['keras_bp'] * 1e3:>11.2f} {t['keras'] * 1e3:>9.2f} {t['keras_bp'] / t['keras']:>10.2f} "
              f"{step['keras_bp']:>13.1f} / {step['keras']:<11.1f} {step['keras_bp'] / max(step['keras'], 1e-9):>9.2f} "
              f"{life['keras_bp']:>15.0f} / {life['keras']:<12.0f}", flush=True)

if __name__ == "__main__":
    main()
