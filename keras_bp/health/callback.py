"""GradientMonitor: the callback that watches the gradients' health while `fit` runs.

At the start of training and every `every` optimizer steps, on a batch of its
own, the monitor measures per layer and per variable the gradient's norm and
largest entry, the weights' norm, the update ratio ||dw|| / ||w|| of the step
the optimizer would take (its own update rule, on the real variables, put
back afterwards), non-finite entries, and for ReLU-family layers the fraction
of dead units (keras_bp.health.probe, .statistics); it diagnoses vanishing
and exploding gradients, dead units, update ratios far from ~1e-3 and
non-finite values (keras_bp.health.diagnoses), warns with a
`GradientHealthWarning`, and reports to `logs`, TensorBoard
(keras_bp.health.tensorboard), `records`, `summary()` and `plot(path)`
(keras_bp.health.plot). This module holds the schedule, the hooks into
`fit` and the reporting; docs/health.md has the details.
"""

import math
import warnings

import keras
import numpy as np

from keras_bp._validation import check_positive_int, invalid
from keras_bp.audit.data import AuditData
from keras_bp.audit.schedule import Schedule, ensure_built, trace_key
from keras_bp.health.diagnoses import DEFAULTS, Thresholds, diagnose
from keras_bp.health.plot import plot_gradient_flow
from keras_bp.health.probe import HealthProbe
from keras_bp.health.statistics import Measure
from keras_bp.health.tensorboard import HealthWriter, require_tensorboard

__all__ = ["GradientHealthWarning", "GradientMonitor"]


class GradientHealthWarning(UserWarning):
    """A `GradientMonitor` diagnosis: the message names the layer, the problem and the number."""


class GradientMonitor(keras.callbacks.Callback):
    """Watches gradient health during `fit`: norms, update ratios, dead units, vanishing and exploding gradients.

    At the start of training and every `every` optimizer steps, computes on
    its own batch the gradient of the model's training loss and the step the
    optimizer would take with it, then puts every variable back (weights,
    optimizer state, BatchNormalization statistics, seed generators), so
    training is bit-identical with and without the monitor. Works with any
    model: keras_bp layers or plain Keras ones.

    Example:
        monitor = keras_bp.callbacks.GradientMonitor((x_val[:32], y_val[:32]), every=100)
        model.fit(x, y, epochs=5, callbacks=[monitor])
        print(monitor.summary())
        monitor.plot("gradient_flow.png")

    Each diagnosis is a `GradientHealthWarning`, given once per kind and
    layer in a `fit` (every check's diagnoses are in `records`); the
    thresholds below set them, and None turns one off.

    Args:
        data: The monitor's batch: an `(x, y)` or `(x, y, sample_weight)`
            tuple of arrays (used whole: keep it small), or a batched
            `tf.data.Dataset` of such tuples (the next batch at each check,
            starting over when it runs out).
        every: Check every this many optimizer steps (`optimizer.iterations`).
        log_dir: If given, TensorBoard scalars and gradient histograms are
            written there (needs the `tensorboard` package).
        vanishing_ratio: "vanishing" when the first layer's gradient norm is
            below this times the last layer's (layers with weights, forward
            order). Defaults to 1e-3.
        max_grad_norm: "exploding" when a layer's gradient norm is above
            this. Defaults to 1e3.
        growth_factor: "exploding" when the whole gradient norm grew more
            than this many times over the previous `growth_window` checks.
            Defaults to 100.
        growth_window: The number of previous checks `growth_factor` looks
            back over. Defaults to 5.
        dead_fraction: "dead units" when more than this fraction of a
            ReLU-family layer's units (relu or relu6 activation, of a Keras or
            keras_bp layer) output 0 for the whole batch. Defaults to 0.5.
        min_update_ratio: "update ratio" when a layer's ||dw|| / ||w|| is
            below this. Defaults to None (off): a learning-rate schedule that
            anneals to 0 takes every layer there at the end of a healthy
            run; layers that stop learning because their gradient vanished
            or their units died are diagnosed as such. Set it (e.g. 1e-5) to
            catch a learning rate far too low.
        max_update_ratio: "update ratio" when a layer's ||dw|| / ||w|| is
            above this (the usual order is 1e-3). Defaults to 0.1.
        histograms: Whether `log_dir` gets per-variable gradient histograms
            (they bring every gradient to the host at each check).
        verbose: 0 silent, 1 the summary at the end of training, 2 also one
            line per check.

    Attributes:
        records: One `HealthRecord` per check (`.step`, `.grad_norm`,
            `.layers`, `.variables`, `.dead_units`, `.diagnoses`).
    """

    def __init__(
        self,
        data,
        every=100,
        log_dir=None,
        vanishing_ratio=DEFAULTS.vanishing_ratio,
        max_grad_norm=DEFAULTS.max_grad_norm,
        growth_factor=DEFAULTS.growth_factor,
        growth_window=DEFAULTS.growth_window,
        dead_fraction=DEFAULTS.dead_fraction,
        min_update_ratio=DEFAULTS.update_ratio[0],
        max_update_ratio=DEFAULTS.update_ratio[1],
        histograms=True,
        verbose=1,
    ):
        super().__init__()
        self.every = check_positive_int("every", every)
        self.thresholds = Thresholds(
            vanishing_ratio=_positive_or_none("vanishing_ratio", vanishing_ratio),
            max_grad_norm=_positive_or_none("max_grad_norm", max_grad_norm),
            growth_factor=_positive_or_none("growth_factor", growth_factor, above=1.0),
            growth_window=check_positive_int("growth_window", growth_window),
            dead_fraction=_fraction_or_none("dead_fraction", dead_fraction),
            update_ratio=(
                _positive_or_none("min_update_ratio", min_update_ratio),
                _positive_or_none("max_update_ratio", max_update_ratio),
            ),
        )
        low, high = self.thresholds.update_ratio
        if low is not None and high is not None and not low < high:
            raise ValueError(
                "min_update_ratio must be below max_update_ratio, received: "
                f"min_update_ratio={min_update_ratio!r}, max_update_ratio={max_update_ratio!r}"
            )
        if not isinstance(histograms, bool):
            raise invalid("histograms", histograms, "True or False")
        if verbose not in (0, 1, 2) or isinstance(verbose, bool):
            raise invalid("verbose", verbose, "one of (0, 1, 2)")
        if log_dir is not None:
            require_tensorboard()
        self.log_dir = log_dir
        self.histograms = histograms
        self.verbose = verbose
        self.records = []
        self._data = AuditData(data, owner="GradientMonitor")
        self._schedule = Schedule(self.every)
        self._probe = None
        self._measure = None
        self._key = None
        self._writer = None
        self._fit_records = []
        self._epoch_records = []
        self._warned = set()

    # --- Callback hooks ----------------------------------------------------

    def on_train_begin(self, logs=None):
        self._fit_records = []
        self._epoch_records = []
        self._warned = set()
        if self.log_dir is not None:
            self._writer = HealthWriter(self.log_dir)
        self._check(self._schedule.start_epoch(self.model))

    def on_epoch_begin(self, epoch, logs=None):
        self._schedule.start_epoch(self.model)

    def on_train_batch_end(self, batch, logs=None):
        step = self._schedule.due_after_batch(self.model, batch)
        if step is None:
            return
        record = self._check(step)
        if logs is not None:
            logs.update(_log_keys(record, len(record.diagnoses)))

    def on_epoch_end(self, epoch, logs=None):
        # History and CSVLogger read epoch logs only, and CSVLogger wants the
        # same keys every epoch: the latest check's norms, and the problems
        # found by this epoch's checks (0 where none ran).
        if logs is not None and self.records:
            problems = sum(len(r.diagnoses) for r in self._epoch_records)
            logs.update(_log_keys(self.records[-1], problems))
        self._epoch_records = []

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self.verbose and self.records:
            print(self.summary())

    # --- Reporting ---------------------------------------------------------

    def summary(self):
        """A few lines on every check so far: counts, the last gradient norms, the problems found."""
        if not self.records:
            return "GradientMonitor: no checks ran."
        last = self.records[-1]
        found = {}
        for r in self.records:
            for d in r.diagnoses:
                entry = found.setdefault((d.kind, d.layer), [0, r.step, d])
                entry[0] += 1
        lines = [
            f"GradientMonitor: {len(self.records)} checks (steps {self.records[0].step}..{last.step}), "
            f"{sum(bool(r.diagnoses) for r in self.records)} with problems; at the last check the "
            f"gradient norm is {last.grad_norm:.3e}, first/last layer {last.first_to_last:.3e}."
        ]
        if found:
            for (kind, layer), (count, first_step, d) in found.items():
                where = "the input batch" if layer is None else f"layer '{layer}'"
                lines.append(f"  {kind} at {where}: {count} check(s), first at step {first_step}: {d.message}")
        else:
            lines.append("  no problems: no vanishing or exploding gradients, dead units, odd update ratios or NaN.")
        return "\n".join(lines)

    def plot(self, path, title=None):
        """Writes the gradient-flow PNG (keras_bp.health.plot) of the checks so far to `path`; returns `path`."""
        return plot_gradient_flow(self.records, path, title)

    # --- The checks --------------------------------------------------------

    @property
    def _trace_count(self):
        return 0 if self._probe is None else self._probe.traces

    def _check(self, step):
        self._schedule.mark(step)
        ensure_built(self.model, self._data.spec)
        if self._probe is None or self._key != trace_key(self.model):
            # A new model or a recompile: a new trace.
            self._probe = None  # not the stale one, should the new one fail
            self._probe = HealthProbe(self.model, self._data.spec, gradients=self._writer is not None and self.histograms)
            self._measure = Measure(self.model, self._probe)
            self._key = trace_key(self.model)
        result = self._probe(self._data.next_batch())
        record = self._measure.record(step, result)
        record.diagnoses = diagnose(record, self._fit_records, self.thresholds)
        self.records.append(record)
        self._fit_records.append(record)
        self._epoch_records.append(record)
        self._report(record, result.gradients)
        return record

    def _report(self, record, gradients):
        if self._writer is not None:
            self._writer.write(record, gradients)
        if self.verbose >= 2:
            print(
                f"\nGradientMonitor step {record.step}: gradient norm {record.grad_norm:.3e}, "
                + (", ".join(d.kind for d in record.diagnoses) if record.diagnoses else "healthy")
            )
        for d in record.diagnoses:
            if (d.kind, d.layer) in self._warned:
                continue
            self._warned.add((d.kind, d.layer))
            warnings.warn(d.message, GradientHealthWarning, stacklevel=2)


def _log_keys(record, problems):
    return {
        "grad_norm": record.grad_norm,
        "grad_first_to_last": record.first_to_last,
        "grad_health_warnings": problems,
    }


def _is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _positive_or_none(name, value, above=0.0):
    if value is None:
        return None
    if not _is_number(value) or not value > above or not math.isfinite(value):
        accepted = "None or a finite number > 0" if above == 0 else f"None or a finite number > {above:g}"
        raise invalid(name, value, accepted)
    return float(value)


def _fraction_or_none(name, value):
    if value is None:
        return None
    if not _is_number(value) or not 0 <= value < 1:
        raise invalid(name, value, "None or a number in [0, 1)")
    return float(value)
