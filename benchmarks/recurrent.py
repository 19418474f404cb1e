"""Training-step time and peak memory of keras_bp's SimpleRNN, LSTM and GRU against Keras's.

Each model is Input(28 steps, 28 features) -> RNN(128 units) -> Dense(10,
softmax), trained with SGD on a batch of 64 with sparse categorical
cross-entropy through `model.train_on_batch` (Keras's compiled train step, no
XLA unless --jit). Time: keras_bp's model and Keras's alternate in one
process, a block of steps each, and the ratio is of the medians over the
blocks (ratio < 1: keras_bp is faster). Memory: each model trains in a fresh
subprocess; after one warm-up step (tracing) the process's resident set size
is sampled every 0.5 ms during the timed steps, and the figure is the peak
minus the RSS at rest just before them: the memory a training step takes at
its peak (activations saved for the backward, gradients, temporaries). Large
tensors are mmapped by the allocator and returned when freed, which is what
makes RSS track them. The process's lifetime peak (ru_maxrss, TensorFlow's
runtime included) is printed too.

    python benchmarks/recurrent.py            # full: 7 blocks of 20 steps
    python benchmarks/recurrent.py --quick    # 3 blocks of 5 steps
    python benchmarks/recurrent.py --threads 1   # one TensorFlow thread (less noise on a busy machine)
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


def _threads(n):
    if n:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)


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


def _rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _peak_memory_child(library, kind, steps, jit):
    import threading

    x, y = _data()
    model = _model(library, kind, jit)
    _block(model, x, y, 1)  # trace
    time.sleep(0.2)
    rest = _rss_kib()
    peak, done = [rest], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_kib())
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    _block(model, x, y, steps)
    done.set()
    sampler.join()
    lifetime = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"step_peak_kib": peak[0] - rest, "lifetime_peak_kib": lifetime}))


def peak_memory(library, kind, steps, jit, threads):
    command = [sys.executable, __file__, "--memory-child", library, kind, str(steps), "--threads", str(threads)]
    command += ["--jit"] if jit else []
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 blocks of 5 steps")
    parser.add_argument("--jit", action="store_true", help="compile both train steps with XLA")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--threads", type=int, default=0,
                        help="TensorFlow intra- and inter-op threads (0: TensorFlow's default)")
    parser.add_argument("--memory-child", nargs=3, metavar=("LIBRARY", "KIND", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    _threads(args.threads)
    if args.memory_child:
        library, kind, steps = args.memory_child
        _peak_memory_child(library, kind, int(steps), args.jit)
        return
    blocks, steps = (3, 5) if args.quick else (7, 20)
    print(f"batch {BATCH}, {STEPS} steps x {FEATURES} features, {UNITS} units; "
          f"median of {blocks} blocks of {steps} train_on_batch steps; jit_compile={args.jit}; "
          f"threads={args.threads or 'default'}")
    header = (f"{'layer':<10} {'keras_bp ms':>11} {'keras ms':>9} {'time ratio':>10} "
              f"{'step peak MiB (bp / keras)':>27} {'mem ratio':>9} {'lifetime RSS MiB (bp / keras)':>30}")
    print(header)
    print("-" * len(header))
    for kind in args.kinds:
        t = time_ratio(kind, blocks, steps, args.jit)
        m = {library: peak_memory(library, kind, steps, args.jit, args.threads) for library in ("keras_bp", "keras")}
        step = {k: v["step_peak_kib"] / 1024 for k, v in m.items()}
        life = {k: v["lifetime_peak_kib"] / 1024 for k, v in m.items()}
        print(f"{kind:<10} {t['keras_bp'] * 1e3:>11.2f} {t['keras'] * 1e3:>9.2f} {t['keras_bp'] / t['keras']:>10.2f} "
              f"{step['keras_bp']:>13.1f} / {step['keras']:<11.1f} {step['keras_bp'] / max(step['keras'], 1e-9):>9.2f} "
              f"{life['keras_bp']:>15.0f} / {life['keras']:<12.0f}", flush=True)

if __name__ == "__main__":
    main()
