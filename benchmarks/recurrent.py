"""Training-step time and peak memory of keras_bp's SimpleRNN, LSTM and GRU against Keras's.

Each model is Input(28 steps, 28 features) -> RNN(128 units) -> Dense(10,
softmax), trained with SGD on a batch of 64 with sparse categorical
cross-entropy through `model.train_on_batch` (Keras's compiled train step, no
XLA unless --jit). Time: keras_bp's model and Keras's alternate in one
process, a block of steps each, and the ratio is of the medians over the
blocks (ratio < 1: keras_bp is faster). Memory: each model runs its steps in a
fresh subprocess; the figure is that process's peak resident set size
(getrusage ru_maxrss), which includes the TensorFlow runtime both share, so
the increase over the RSS just before the first step is reported too.

    python benchmarks/recurrent.py            # full: 7 blocks of 20 steps
    python benchmarks/recurrent.py --quick    # 3 blocks of 5 steps
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

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


def _block(model, x, y, steps):
    start = time.perf_counter()
    for _ in range(steps):
        loss = model.train_on_batch(x, y)
    float(loss)
    return (time.perf_counter() - start) / steps


def time_ratio(kind, blocks, steps, jit):
    x, y = _data()
    models = {library: _model(library, kind, jit) for library in ("keras_bp", "keras")}
    models["keras"].set_weights(models["keras_bp"].get_weights())
    for model in models.values():
        _block(model, x, y, 3)  # trace and warm up
    times = {library: [] for library in models}
    for _ in range(blocks):
        for library, model in models.items():
            times[library].append(_block(model, x, y, steps))
    return {library: statistics.median(t) for library, t in times.items()}


def _peak_memory_child(library, kind, steps, jit):
    x, y = _data()
    model = _model(library, kind, jit)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _block(model, x, y, steps)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_kib": peak, "before_kib": before}))


def peak_memory(library, kind, steps, jit):
    command = [sys.executable, __file__, "--memory-child", library, kind, str(steps)] + (["--jit"] if jit else [])
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 blocks of 5 steps")
    parser.add_argument("--jit", action="store_true", help="compile both train steps with XLA")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--memory-child", nargs=3, metavar=("LIBRARY", "KIND", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        library, kind, steps = args.memory_child
        _peak_memory_child(library, kind, int(steps), args.jit)
        return
    blocks, steps = (3, 5) if args.quick else (7, 20)
    print(f"batch {BATCH}, {STEPS} steps x {FEATURES} features, {UNITS} units; "
          f"median of {blocks} blocks of {steps} train_on_batch steps; jit_compile={args.jit}")
    header = f"{'layer':<10} {'keras_bp ms':>11} {'keras ms':>9} {'time ratio':>10} " \
             f"{'peak RSS MiB (bp/keras)':>24} {'growth MiB (bp/keras)':>22} {'mem ratio':>9}"
    print(header)
    print("-" * len(header))
    for kind in args.kinds:
        t = time_ratio(kind, blocks, steps, args.jit)
        m = {library: peak_memory(library, kind, steps, args.jit) for library in ("keras_bp", "keras")}
        peak = {k: v["peak_kib"] / 1024 for k, v in m.items()}
        growth = {k: (v["peak_kib"] - v["before_kib"]) / 1024 for k, v in m.items()}
        print(f"{kind:<10} {t['keras_bp'] * 1e3:>11.2f} {t['keras'] * 1e3:>9.2f} {t['keras_bp'] / t['keras']:>10.2f} "
              f"{peak['keras_bp']:>11.0f} / {peak['keras']:<10.0f} {growth['keras_bp']:>10.0f} / {growth['keras']:<9.0f} "
              f"{peak['keras_bp'] / peak['keras']:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
