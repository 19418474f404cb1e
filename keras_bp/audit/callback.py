"""GradientAudit: the callback that checks manual gradients against autodiff while `fit` runs.

At the start of training and then every `every` optimizer steps, the audit
takes one batch of its own data and compares, per trainable variable, the
gradient of the model's training loss as training computes it (the manual
backward passes) with TensorFlow's autodiff of the same forward math:

    max abs error   max |g_manual - g_ref|
    rel error       ||g_manual - g_ref|| / ||g_ref||          (2-norms)
    cosine          <g_manual, g_ref> / (||g_manual|| ||g_ref||)

A variable passes when ||g_manual - g_ref|| <= rtol ||g_ref|| + atol S, S the
model's whole gradient norm, and where that fails with finite numbers a
float64 check decides (keras_bp.audit.verdict). With `directions=k`, k
finite differences of the loss check its slope (keras_bp.audit.directions).
This module holds the schedule, the hooks into `fit` and what a mismatch
does; keras_bp.audit.auditor runs each audit, keras_bp.audit.probe is the
one traced function it calls, docs/audit.md has the measurements.
"""

import warnings

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from keras_bp._validation import (
    check_non_negative,
    check_non_negative_int,
    check_one_of,
    check_positive_int,
)
from keras_bp.audit.auditor import Auditor
from keras_bp.audit.data import AuditData
from keras_bp.audit.schedule import Schedule, ensure_built
from keras_bp.gradcheck import GradientCheckError

__all__ = ["GradientAudit", "GradientAuditError"]

_ON_MISMATCH = ("warn", "raise", "stop")
_REFERENCES = ("auto", "float64")


class GradientAuditError(GradientCheckError):
    """Raised by `GradientAudit(on_mismatch="raise")`; the message names the variables."""


class GradientAudit(keras.callbacks.Callback):
    """Checks the model's manual gradients against autodiff during `fit`.

    At the start of training and every `every` optimizer steps, computes the
    gradients of the model's training loss on an audit batch with the manual
    backward passes and inside `keras_bp.autodiff()`, and compares them per
    trainable variable (see the module docstring for the formulas). Works
    with any model: keras_bp layers, plain Keras layers (which agree
    trivially) and users' own `manual_gradient` layers.

    Example:
        audit = keras_bp.callbacks.GradientAudit((x_val[:256], y_val[:256]), every=100)
        model.fit(x, y, epochs=5, callbacks=[audit])
        assert all(r.passed for r in audit.records)

    Args:
        data: The audit batch: an `(x, y)` or `(x, y, sample_weight)` tuple of
            arrays (used whole, so keep it small), or a batched
            `tf.data.Dataset` of such tuples (the next batch at each audit,
            starting over when it runs out).
        every: Audit every this many optimizer steps (counted with
            `optimizer.iterations`, so `steps_per_execution > 1` works: the
            audit runs at the first batch end at or after each multiple).
        rtol: Relative tolerance of the compute-dtype comparison: a variable
            passes when ||g_manual - g_ref|| <= rtol ||g_ref|| + atol S.
            `None`: by compute dtype, 1e-3 for float32, 5e-2 for float16,
            0.2 for bfloat16.
        atol: Absolute tolerance relative to S, the model's gradient norm
            (||g_ref|| of all variables together), so that a variable whose
            exact gradient is zero (a bias before BatchNormalization) is
            judged against the scale of the round-off around it. `None`:
            1e-6 for float32, 1e-3 for float16, 1e-2 for bfloat16.
        reference: `"auto"`: where every variable agrees in the compute
            dtype, that verdict stands; where one disagrees beyond that
            dtype's round-off, both passes run again in float64 on the same
            batch (one more trace, at that audit; cost in docs/audit.md) and
            the float64 check judges every variable (rtol 1e-6, atol 1e-12
            S), also asking that the manual compute-dtype gradient be as
            close to the float64 one as autodiff's (see
            `keras_bp.audit.verdict`). A model that cannot run in float64
            keeps the compute-dtype verdict, with a note in the record.
            `"float64"`: the float64 check at every audit.
        directions: Number of random unit directions for central
            finite-difference checks of the whole loss (0: none); each costs
            four forward passes. A coarse check of the loss's slope (see
            docs/audit.md): it sees forwards whose autodiff is wrong too.
        on_mismatch: `"warn"` (a warning with the table), `"raise"` (stops
            `fit` with a `GradientAuditError` naming the variables) or
            `"stop"` (sets `model.stop_training`).
        log_dir: If given, TensorBoard scalars (overall and per layer) are
            written there.
        verbose: 0 silent, 1 a summary at the end of training, 2 also one
            line per audit.
        seed: Seed of the random directions.

    Attributes:
        records: One `AuditRecord` per audit (`.step`, `.passed`,
            `.failed_variables`, per-variable statistics, `.culprit`).
    """

    def __init__(
        self,
        data,
        every=100,
        rtol=None,
        atol=None,
        reference="auto",
        directions=0,
        on_mismatch="warn",
        log_dir=None,
        verbose=1,
        seed=0,
    ):
        super().__init__()
        every = check_positive_int("every", every)
        directions = check_non_negative_int("directions", directions)
        rtol = check_non_negative("rtol", rtol, allow_none=True)
        atol = check_non_negative("atol", atol, allow_none=True)
        check_one_of("reference", reference, _REFERENCES)
        check_one_of("on_mismatch", on_mismatch, _ON_MISMATCH)
        self.every = int(every)
        self.rtol = rtol
        self.atol = atol
        self.reference = reference
        self.directions = int(directions)
        self.on_mismatch = on_mismatch
        self.log_dir = log_dir
        self.verbose = verbose
        self.records = []
        self._data = AuditData(data)
        self._rng = np.random.RandomState(seed)
        self._auditor = None
        self._earlier_traces = 0
        self._writer = None
        self._schedule = Schedule(self.every)
        self._epoch_records = []

    # --- Callback hooks ----------------------------------------------------

    def on_train_begin(self, logs=None):
        self._epoch_records = []
        if self.log_dir is not None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        self._audit(self._schedule.start_epoch(self.model))

    def on_epoch_begin(self, epoch, logs=None):
        self._schedule.start_epoch(self.model)

    def on_train_batch_end(self, batch, logs=None):
        step = self._schedule.due_after_batch(self.model, batch)
        if step is None:
            return
        record = self._audit(step)
        if logs is not None:
            logs["audit_max_rel_error"] = record.max_rel_error
            logs["audit_failed"] = len(record.failed_variables)

    def on_epoch_end(self, epoch, logs=None):
        # History and CSVLogger read epoch logs only, and CSVLogger wants the
        # same keys every epoch: the worst audit of this epoch, or the latest
        # audit when none ran during the epoch.
        records = self._epoch_records or self.records[-1:]
        self._epoch_records = []
        if logs is not None and records:
            logs["audit_max_rel_error"] = max(r.max_rel_error for r in records)
            logs["audit_failed"] = max(len(r.failed_variables) for r in records)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self.verbose and self.records:
            print(self.summary())

    # --- Reporting ---------------------------------------------------------

    def summary(self):
        """A few lines on all audits so far: counts, worst error, variables that failed."""
        if not self.records:
            return "GradientAudit: no audits ran."
        failed = [r for r in self.records if not r.passed]
        worst = max(self.records, key=lambda r: r.max_rel_error)
        lines = [
            f"GradientAudit: {len(self.records)} audits (steps {self.records[0].step}"
            f"..{self.records[-1].step}), {len(failed)} with mismatches; worst "
            f"relative error {worst.max_rel_error:.2e} at step {worst.step}."
        ]
        if failed:
            paths = []
            for r in failed:
                paths += [p for p in r.failed_variables if p not in paths]
            lines.append("  variables that disagreed: " + ", ".join(paths))
            culprits = []
            for r in failed:
                if r.culprit is not None and r.culprit not in culprits:
                    culprits.append(r.culprit)
            if culprits:
                lines.append("  likely culprit layer(s): " + ", ".join(culprits))
        else:
            lines.append("  every manual gradient agreed with autodiff.")
        return "\n".join(lines)

    # --- The schedule --------------------------------------------------------

    @property
    def _function(self):
        """The audit's traced concrete function (None before the first audit)."""
        return None if self._auditor is None else self._auditor.probe.function

    @property
    def _trace_count(self):
        """How many times the audit's function was traced, over every model and compile so far."""
        return self._earlier_traces + (0 if self._auditor is None else self._auditor.probe.traces)

    def _audit(self, step):
        self._schedule.mark(step)
        ensure_built(self.model, self._data.spec)
        if self._auditor is None or not self._auditor.serves(self.model):
            # A new model or a recompile: a new trace (a second fit of the
            # same model reuses the old one).
            self._earlier_traces = self._trace_count
            self._auditor = None  # not the stale one, should the new one fail
            self._auditor = Auditor(
                self.model, self._data.spec, self.rtol, self.atol, self.reference, self.directions
            )
        batch = self._data.next_batch()
        seed = self._rng.randint(0, 2**31 - 1, size=2).astype(np.int64)
        record = self._auditor.audit(step, batch, seed)
        self.records.append(record)
        self._epoch_records.append(record)
        self._report(record)
        return record

    def _report(self, record):
        if self._writer is not None:
            per_layer = {}
            for v in record.variables:
                per_layer[v.layer] = max(per_layer.get(v.layer, 0.0), v.scaled_rel_error)
            scalars = {
                "audit/max_rel_error": record.max_rel_error,
                "audit/failed_variables": len(record.failed_variables),
            }
            scalars.update({f"audit/{layer}/max_rel_error": rel for layer, rel in per_layer.items()})
            with self._writer.as_default(step=record.step):
                for tag, value in scalars.items():
                    _write_scalar(tag, value)
            self._writer.flush()
        if self.verbose >= 2:
            print(
                f"\nGradientAudit step {record.step}: "
                + ("passed" if record.passed else "MISMATCH")
                + f", max rel error {record.max_rel_error:.2e}"
            )
        if record.passed:
            return
        if self.on_mismatch == "raise":
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            raise GradientAuditError(
                "Manual gradients disagree with autodiff for "
                + (", ".join(record.failed_variables) or "the loss's slope (directions)")
                + ".\n"
                + str(record)
            )
        if self.on_mismatch == "stop":
            self.model.stop_training = True
            if self.verbose:
                print("\n" + str(record) + "\nGradientAudit: stopping training.")
            return
        warnings.warn(str(record), stacklevel=2)



def _write_scalar(tag, value):
    # tf.summary.scalar lives in the tensorboard package, which TensorFlow
    # does not require; tf.summary.write with the scalars plugin's metadata
    # writes the same event.
    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
    )
    tf.summary.write(tag, tf.constant(value, tf.float32), metadata=metadata)
