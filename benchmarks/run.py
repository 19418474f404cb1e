"""All benchmarks in one table: keras_bp over Keras, for each model, optimizer and the audit.

    python benchmarks/run.py            # the full runs of each benchmark (tens of minutes on 2 cores)
    python benchmarks/run.py --quick    # under two minutes: fewer, shorter rounds, no memory figures

Models (MLP, CNN, SimpleRNN, LSTM, GRU): training-step time of the network
built from keras_bp layers over the same network from Keras's layers, median
of rounds alternating in one process (jit_compile=False); peak memory of
each, measured in fresh subprocesses (see each benchmark's docstring for
what exactly it counts). Layers: every keras_bp layer with weights alone,
forward plus backward, median of alternating pairs (benchmarks/layers.py). Optimizers: `apply` time on ~10M parameters. Audit:
`fit` time of the MNIST MLP with GradientAudit(every=100) over without it.
Ratios below 1 mean keras_bp is faster.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import machine  # noqa: E402


def model_rows(quick):
    """Time ratios; memory too, except in quick mode (each figure costs two fresh processes)."""
    import cnn
    import mlp
    import recurrent

    rounds, steps = (3, 5) if quick else (7, 20)
    skipped = "- (full run only)"

    def rss(m):
        return f"{m['keras_bp']['peak_kib'] / 1024:.0f} / {m['keras']['peak_kib'] / 1024:.0f} MiB (process peak RSS)"

    rows = []
    t = mlp.benchmark_time(False, rounds, steps * 2)
    rows.append(("MLP 784-64-10", t["keras_bp"] / t["keras"], skipped if quick else rss(mlp.benchmark_memory(False, steps))))
    t = cnn.benchmark_time(False, rounds, steps, 128)
    rows.append(("CNN (examples/cnn_mnist.py)", t["keras_bp"] / t["keras"],
                 skipped if quick else rss(cnn.benchmark_memory(False, steps, 128))))
    for kind in recurrent.KINDS:
        t = recurrent.time_ratio(kind, rounds, steps, False)
        memory = skipped
        if not quick:
            ours = recurrent.peak_memory("keras_bp", kind, steps, False, 0)
            theirs = recurrent.peak_memory("keras", kind, steps, False, 0)
            memory = f"{ours['step_peak_kib'] / 1024:.1f} / {theirs['step_peak_kib'] / 1024:.1f} MiB (step peak, BFC)"
        rows.append((f"{kind} 128 units, 28 steps", t["keras_bp"] / t["keras"], memory))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)

    import audit_overhead
    import layers
    import optimizers

    print(f"machine: {machine()}")
    print(f"{'case':<34} {'time ratio':>10}  memory (keras_bp / Keras)")
    for label, ratio, memory in model_rows(args.quick):
        print(f"{label:<34} {ratio:>10.3f}  {memory}")
    rounds, calls = (3, 3) if args.quick else (7, 10)
    for row in layers.rows(rounds=rounds, calls=calls):
        label = "layer " + row["label"]
        if row.get("missing"):
            print(f"{label:<34} {'-':>10}  (not in keras_bp)")
            continue
        print(f"{label:<34} {row['wall_ratio']:>10.3f}  (CPU-time ratio {row['cpu_ratio']:.3f}; forward + backward alone)")
    for label, _, _, ratio, cpu_ratio, _ in optimizers.main(quick=args.quick):
        print(f"{'optimizer ' + label:<34} {ratio:>10.3f}  (CPU-time ratio {cpu_ratio:.3f})")
    audit = audit_overhead.main(quick=True, examples=5_000, pairs=2) if args.quick else audit_overhead.main()
    print(f"{'GradientAudit(every=100) on fit':<34} {audit['ratio_median']:>10.3f}  "
          f"(CPU-time ratio {audit['cpu_ratio_median']:.3f}, hook-time ratio {audit['hook_ratio_median']:.3f})")


if __name__ == "__main__":
    main()
