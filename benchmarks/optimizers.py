"""Time keras_bp's optimizers against Keras's on ~10 million parameters.

Each row times `optimizer.apply(grads, variables)` inside a `tf.function`, as
`fit` runs it, for a keras_bp optimizer and its Keras namesake, alternating the
two in one process so that both see the same machine load, and prints the ratio
of the medians (keras_bp / Keras; the goal is no ratio above 1.05).

    python benchmarks/optimizers.py            # full run
    python benchmarks/optimizers.py --quick    # well under a minute
    python benchmarks/optimizers.py --jit      # apply compiled with XLA

`main(quick=False, jit_compile=False)` returns the rows, for benchmarks/run.py.
The "same ops" column compares the traced graphs op type by op type: where
they match, a ratio far from 1 is the machine's noise, not the code, and the
CPU-time ratio is then the steadier number.
"""

import argparse
import collections
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_bp import optimizers  # noqa: E402

# A few large weights, 10.5 million parameters in all.
SHAPES = [(2048, 2048), (2048, 2048), (1024, 1024), (1024, 1024)]

# (row label, optimizer name, arguments); --quick runs the first row of each name.
CASES = [
    ("SGD", "SGD", {}),
    ("SGD(momentum, nesterov)", "SGD", {"momentum": 0.9, "nesterov": True}),
    ("Adagrad", "Adagrad", {}),
    ("RMSprop", "RMSprop", {}),
    ("RMSprop(centered, momentum)", "RMSprop", {"centered": True, "momentum": 0.9}),
    ("Adadelta", "Adadelta", {}),
    ("Adam", "Adam", {}),
    ("Adam(amsgrad)", "Adam", {"amsgrad": True}),
    ("AdamW", "AdamW", {}),
    ("Nadam", "Nadam", {}),
]


def time_apply(optimizer, gradients, jit_compile):
    """A function that runs one `apply` and returns its (wall, CPU) seconds,
    and the count of each op type in the traced `apply`.

    CPU time sums TensorFlow's threads; other processes barely change it, so
    it is the steadier measure on a shared machine.
    """
    rng = np.random.default_rng(0)
    variables = [keras.Variable(rng.normal(size=s).astype("float32")) for s in SHAPES]
    optimizer.build(variables)
    apply = tf.function(
        lambda grads: optimizer.apply(grads, variables), jit_compile=jit_compile
    )
    apply(gradients)  # trace (and compile) outside the timing
    graph = apply.get_concrete_function(gradients).graph
    op_counts = collections.Counter(op.type for op in graph.get_operations())

    def timed():
        wall, cpu = time.perf_counter(), time.process_time()
        apply(gradients)  # on CPU the call returns when the update is done
        return time.perf_counter() - wall, time.process_time() - cpu

    return timed, op_counts


def main(quick=False, jit_compile=False):
    """Times every case.

    Returns rows of (label, keras_bp median wall ms, Keras median wall ms,
    ratio of the wall medians, ratio of the CPU-time medians, whether the two
    traced graphs have the same ops).
    """
    rounds = 6 if quick else 20
    cases = CASES
    if quick:
        seen = set()
        cases = [c for c in CASES if not (c[1] in seen or seen.add(c[1]))]
    rng = np.random.default_rng(1)
    gradients = [tf.constant(rng.normal(size=s).astype("float32")) for s in SHAPES]

    rows = []
    for label, name, options in cases:
        ours, our_ops = time_apply(
            getattr(optimizers, name)(**options), gradients, jit_compile
        )
        theirs, their_ops = time_apply(
            getattr(keras.optimizers, name)(**options), gradients, jit_compile
        )
        ours(), theirs()  # warm up
        ours_times, theirs_times = [], []
        for i in range(rounds):
            # Alternate call by call, in ABBA order, so that load from other
            # processes and a cold cache hit both alike.
            if i % 2:
                theirs_times.append(theirs())
                ours_times.append(ours())
            else:
                ours_times.append(ours())
                theirs_times.append(theirs())
        ours_ms, ours_cpu = (1000 * statistics.median(t) for t in zip(*ours_times))
        theirs_ms, theirs_cpu = (1000 * statistics.median(t) for t in zip(*theirs_times))
        rows.append(
            (
                label,
                ours_ms,
                theirs_ms,
                ours_ms / theirs_ms,
                ours_cpu / theirs_cpu,
                our_ops == their_ops,
            )
        )
    return rows


def format_table(rows):
    lines = [
        "| optimizer | keras_bp (ms) | Keras (ms) | ratio | CPU-time ratio | same ops |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for label, ours_ms, theirs_ms, ratio, cpu_ratio, same_ops in rows:
        lines.append(
            f"| {label} | {ours_ms:.1f} | {theirs_ms:.1f} | {ratio:.2f} "
            f"| {cpu_ratio:.2f} | {'yes' if same_ops else 'no'} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer cases and runs")
    parser.add_argument("--jit", action="store_true", help="compile apply with XLA")
    args = parser.parse_args()
    parameters = sum(int(np.prod(s)) for s in SHAPES)
    print(
        f"optimizer.apply on {parameters / 1e6:.1f}M float32 parameters, "
        f"tf.function(jit_compile={args.jit}), median ms per step"
    )
    print(format_table(main(quick=args.quick, jit_compile=args.jit)))
