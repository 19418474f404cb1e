"""GradientAudit: checks hand-derived gradients against autodiff while `fit` runs.

At the start of training and then every `every` optimizer steps, the audit
takes one batch of its own data and computes the gradient of the model's
training loss (`compute_loss`, regularization losses included) with respect to
every trainable variable twice, in one `tf.function`:

    g_manual = dL/dw  as training computes it (the manual backward passes)
    g_ref    = dL/dw  traced inside `keras_bp.autodiff()`: TensorFlow's
               autodiff of the same forward math

and compares them per variable:

    max abs error   max |g_manual - g_ref|
    rel error       ||g_manual - g_ref|| / ||g_ref||          (2-norms)
    cosine          <g_manual, g_ref> / (||g_manual|| ||g_ref||)
    non-finite      NaN/Inf counts of each. The sums above are plain
                    reductions (trap 8: `check_numerics` is blind under XLA);
                    any NaN or Inf makes them non-finite, and only then are
                    the entries counted, and the errors taken over the
                    entries finite in both, on the host

The sums are taken inside the function on an accelerator (only they come
back) and in NumPy when every variable is in host memory (fewer ops to trace).

A variable passes when ||g_manual - g_ref|| <= rtol ||g_ref|| + atol S, S the
model's whole gradient norm (so a zero-gradient bias before BatchNormalization
is judged against the scale around it), and its non-finite entries sit at the
same places in both. Where that fails with finite numbers, float32's
round-off may be the cause (it is 3 to 5% on a fresh ResNet50): both passes
run again in float64 on the same batch, and that exact check decides
(`keras_bp.audit.verdict` has the rule, docs/audit.md the measurements;
`reference="float64"` runs it at every audit). With `directions=k`, k
central differences of the whole loss along random unit directions v in
parameter space check the slope itself:

    (L(w + eps v) - L(w - eps v)) / (2 eps)   against   <g_manual, v>

Where it points: variables are grouped by layer and the layers ordered going
backward from the loss (the last layer first). A wrong backward corrupts its
own weights' gradients and, through its input gradient, every layer before
it, so the first disagreeing layer on that path is the likely culprit (or, if
its own backward is right, the input gradient of the next layers with weights
that read its output, found through the functional graph).

No side effects: every non-trainable variable (BatchNormalization moving
statistics, the state of Dropout's seed generator, metric accumulators) is
saved before each pass and assigned back after it, so both passes see the
same random masks and training continues exactly as without the audit. The
finite-difference perturbations are undone by assigning the saved weights
back. The random directions come from stateless ops seeded by the audit's
own NumPy generator, never from a global random state.
"""

import dataclasses
import numbers
import warnings
from typing import List, Optional

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from keras_bp.audit import verdict
from keras_bp.audit.float64 import float64_compute
from keras_bp.audit.statistics import (  # noqa: F401 (the statistics' tests import them from here)
    _compare_all,
    _host_sums,
    _statistics,
    _statistics_masked,
    compare,
    compare_sums,
    distance,
)
from keras_bp.core import autodiff
from keras_bp.gradcheck import GradientCheckError

__all__ = [
    "AuditRecord",
    "DirectionCheck",
    "GradientAudit",
    "GradientAuditError",
    "VariableAudit",
]

# Finite differences: (step sizes, tolerance relative to the slope) by
# compute dtype. NOTE: the loss is evaluated in the compute dtype, so the
# difference quotient carries a rounding error of about ulp(L) / eps, which
# grows as eps shrinks, while a ReLU kink within eps of w spoils the larger
# steps; two step sizes a decade apart and a pass at either keep correct
# models quiet (eps = 1e-2, 1e-3 along a unit direction in float32). 16-bit
# compute resolves only large steps, so there the check is coarse.
_DIRECTION_SETTINGS = {
    "float32": ((1e-2, 1e-3), 5e-2),
    "float64": ((1e-4, 1e-5), 1e-6),
    "float16": ((1.0, 0.1), 2e-1),
    "bfloat16": ((1.0, 0.1), 5e-1),
}


_ON_MISMATCH = ("warn", "raise", "stop")
_REFERENCES = ("auto", "float64")


class GradientAuditError(GradientCheckError):
    """Raised by `GradientAudit(on_mismatch="raise")`; the message names the variables."""


@dataclasses.dataclass
class VariableAudit:
    """One trainable variable's comparison at one audit.

    `max_abs_error`, `rel_error` and `cosine` are those of the comparison
    that decided: the compute dtype's, or the float64 check's when it ran
    (`AuditRecord.checked_in_float64`). `compute_rel_error` is always the
    compute dtype's; the two rounding errors, with the float64 check only,
    are each compute-dtype gradient's distance from the float64 one, relative.
    """

    path: str  # e.g. "dense_1/kernel"
    layer: str  # the name of the layer that owns it
    shape: tuple
    max_abs_error: float
    rel_error: float  # ||g_manual - g_ref|| / ||g_ref||
    cosine: float
    manual_nonfinite: int
    reference_nonfinite: int
    passed: bool
    compute_rel_error: float = 0.0
    scaled_rel_error: float = 0.0  # rel_error floored at the scale atol allows (what the logs report)
    manual_rounding_error: Optional[float] = None  # ||g_manual32 - g64|| / ||g64||
    reference_rounding_error: Optional[float] = None  # ||g_ref32 - g64|| / ||g64||


@dataclasses.dataclass
class DirectionCheck:
    """One finite-difference check of the loss along a random unit direction v."""

    eps: float  # the step size whose result is reported (the best agreeing one)
    finite_difference: float  # (L(w + eps v) - L(w - eps v)) / (2 eps)
    manual: float  # <g_manual, v>
    reference: float  # <g_ref, v>
    error: float  # |finite_difference - manual|
    tolerance: float
    passed: bool


@dataclasses.dataclass
class AuditRecord:
    """The result of one audit. `str(record)` is a readable table."""

    step: int
    passed: bool
    failed_variables: List[str]
    variables: List[VariableAudit]
    max_rel_error: float
    loss: float
    culprit: Optional[str] = None  # the first disagreeing layer, going back from the loss
    culprit_next: Optional[str] = None  # the next layer with weights after it (its input gradient is the other suspect)
    earlier_layers_agree: bool = False  # layers with weights before the culprit exist and all agree
    directions: List[DirectionCheck] = dataclasses.field(default_factory=list)
    rtol: float = 0.0  # the compute dtype's tolerances
    atol: float = 0.0  # relative to the model's gradient norm
    checked_in_float64: bool = False  # the float64 check ran and decided
    float64_rtol: float = 0.0
    float64_atol: float = 0.0
    note: Optional[str] = None  # why the float64 check could not run, if it could not
    next_layers: List[str] = dataclasses.field(default_factory=list)  # every layer with weights its outputs reach first

    @property
    def failed_directions(self):
        return sum(not d.passed for d in self.directions)

    def __str__(self):
        failed = len(self.failed_variables)
        if self.checked_in_float64:
            tolerance = (
                f"checked in float64: rtol={self.float64_rtol:g}, atol={self.float64_atol:g} "
                "x gradient norm"
            )
        else:
            tolerance = f"rtol={self.rtol:g}, atol={self.atol:g} x gradient norm"
        head = (
            f"GradientAudit at step {self.step}: "
            + ("passed" if self.passed else "MISMATCH")
            + f", {failed} of {len(self.variables)} variables disagree with autodiff "
            f"({tolerance}), loss={self.loss:.6g}"
        )
        width = max([len("variable")] + [len(v.path) for v in self.variables])
        extra = f"  {'compute rel':>11}" if self.checked_in_float64 else ""
        lines = [
            head,
            f"    {'variable':<{width}}  {'max abs err':>11}  {'rel err':>9}  "
            f"{'cosine':>9}{extra}  non-finite (manual/ref)",
        ]
        # Disagreeing variables first, then the rest, each in audit order.
        shown = [v for v in self.variables if not v.passed] + [
            v for v in self.variables if v.passed
        ]
        for v in shown:
            mark = "  " if v.passed else "x "
            extra = f"  {v.compute_rel_error:>11.2e}" if self.checked_in_float64 else ""
            lines.append(
                f"  {mark}{v.path:<{width}}  {v.max_abs_error:>11.3e}  "
                f"{v.rel_error:>9.2e}  {v.cosine:>9.6f}{extra}  "
                f"{v.manual_nonfinite}/{v.reference_nonfinite}"
            )
        if self.checked_in_float64:
            lines.append(
                "  (rel err: float64 manual against float64 autodiff; compute rel: the same "
                f"in the compute dtype, whose round-off rtol={self.rtol:g} may not cover)"
            )
        if self.note:
            lines.append(f"  note: {self.note}")
        for i, d in enumerate(self.directions):
            mark = "  " if d.passed else "x "
            lines.append(
                f"  {mark}direction {i} (eps {d.eps:g}): finite difference {d.finite_difference:.6e}, "
                f"<g_manual, v> {d.manual:.6e} (error {d.error:.2e}, "
                f"tolerance {d.tolerance:.2e})"
            )
        if self.culprit is not None and self.earlier_layers_agree:
            # The input gradient it passes back is right (the layers before
            # agree), so the error is in its weights' gradients.
            lines.append(
                f"likely culprit: the weight gradients in the backward of layer "
                f"'{self.culprit}' (the layers before it agree)."
            )
        elif self.culprit is not None:
            suspect = f"the backward of layer '{self.culprit}'"
            nexts = self.next_layers or ([self.culprit_next] if self.culprit_next else [])
            if nexts:
                named = " or ".join(f"'{name}'" for name in nexts)
                suspect += (
                    f" (or the input gradient of layer {named}, the next layer"
                    + ("s" if len(nexts) > 1 else "")
                    + " with weights towards the loss, or of a layer without weights between)"
                )
            lines.append(
                f"likely culprit: {suspect}; layers before it may only inherit "
                "its wrong input gradient."
            )
        return "\n".join(lines)


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
        if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every <= 0:
            raise ValueError(f"every must be a positive integer, received: every={every!r}")
        if (
            isinstance(directions, bool)
            or not isinstance(directions, numbers.Integral)
            or directions < 0
        ):
            raise ValueError(
                "directions must be a non-negative integer, received: "
                f"directions={directions!r}"
            )
        for name, value in (("rtol", rtol), ("atol", atol)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 0
            ):
                raise ValueError(
                    f"{name} must be None or a non-negative number, received: "
                    f"{name}={value!r}"
                )
        if reference not in _REFERENCES:
            raise ValueError(
                f"reference must be one of {_REFERENCES}, received: reference={reference!r}"
            )
        if on_mismatch not in _ON_MISMATCH:
            raise ValueError(
                f"on_mismatch must be one of {_ON_MISMATCH}, received: "
                f"on_mismatch={on_mismatch!r}"
            )
        self.every = int(every)
        self.rtol = rtol
        self.atol = atol
        self.reference = reference
        self.directions = int(directions)
        self.on_mismatch = on_mismatch
        self.log_dir = log_dir
        self.verbose = verbose
        self.records = []
        self._data = _AuditData(data)
        self._rng = np.random.RandomState(seed)
        self._function = None
        self._function_key = None
        self._trace_count = 0
        self._function64 = None
        self._float64_unavailable = None
        self._writer = None
        self._last_audited = -1
        self._epoch_start = 0
        self._epoch_records = []

    # --- Callback hooks ----------------------------------------------------

    def on_train_begin(self, logs=None):
        self._epoch_records = []
        if self.log_dir is not None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        self._epoch_start = self._step()
        self._audit(self._epoch_start)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self._step()

    def on_train_batch_end(self, batch, logs=None):
        # `batch` is the epoch's index of the last step run (with
        # steps_per_execution > 1 calls come every few steps), so the step
        # count is known without reading the variable, a device sync, after
        # every batch. Read it only where an audit is due, to audit at the
        # optimizer's own count (which a skipped mixed-precision step may
        # hold back).
        if not self._due(self._epoch_start + batch + 1):
            return
        step = self._step()
        if not self._due(step):
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

    # --- The audit ---------------------------------------------------------

    def _step(self):
        return int(self.model.optimizer.iterations.numpy())

    def _due(self, step):
        return step // self.every > self._last_audited // self.every

    def _audit(self, step):
        self._last_audited = step
        if not all(layer.built for layer in self.model._flatten_layers()):
            # Without a distribution strategy, Keras's TF trainer builds
            # subclassed models only when it traces the train step, after
            # on_train_begin. Build them the way Keras does under a strategy:
            # symbolically (no forward pass, no state touched), from the
            # audit batch's shapes.
            self.model._symbolic_build(data_batch=self._data.spec)
        if self._function is None or self._function_key != self._key():
            self._build()
        batch = self._data.next_batch()
        seed = self._rng.randint(0, 2**31 - 1, size=2).astype(np.int64)
        out = self._function(batch, tf.constant(seed))
        out = {
            key: value if key in ("manual", "reference") else value.numpy()
            for key, value in out.items()
        }
        record = self._record(step, out, batch)
        self.records.append(record)
        self._epoch_records.append(record)
        self._report(record)
        return record

    def _key(self):
        # The traced function captures the model's variables, compiled loss
        # and dtype policy: a new model or a recompile needs a new trace; a
        # second fit of the same model reuses it.
        model = self.model
        return (
            id(model),
            id(getattr(model, "_compile_loss", None)),
            tuple(id(v) for v in model.trainable_variables),
            bool(model.jit_compile),
        )

    def _build(self):
        model = self.model
        self._function_key = self._key()
        self._variables = list(model.trainable_variables)
        if not self._variables:
            raise ValueError("GradientAudit: the model has no trainable variables to audit.")
        self._paths = [_relative_path(model, v) for v in self._variables]
        self._owner, self._layer_order = _layer_order(model, self._variables)
        self._layers_by_name = {
            layer.name: layer for layer in model._flatten_layers(include_self=False, recursive=True)
        }
        # Everything a forward pass may write: BatchNormalization moving
        # statistics, seed-generator states, metric accumulators (compiled
        # losses may track per-output losses).
        state = []
        seen = set()
        for v in list(model.non_trainable_variables) + list(model.metrics_variables):
            if id(v) not in seen:
                seen.add(id(v))
                state.append(v)
        self._state = state
        dtype = _compute_dtype(model)
        self._compute_dtype = dtype
        self._function64 = None
        self._float64_unavailable = None
        rtol, atol = verdict.tolerances(dtype)
        self._rtol = rtol if self.rtol is None else float(self.rtol)
        self._atol = atol if self.atol is None else float(self.atol)
        self._eps, self._direction_rtol = _DIRECTION_SETTINGS.get(
            dtype, _DIRECTION_SETTINGS["float32"]
        )
        self._loss_eps = verdict.unit_roundoff(dtype)
        # Where the statistics are taken: with every variable in host memory
        # the gradients are read as they are and summed in NumPy, which keeps
        # about a third of the ops out of the function (less to trace and to
        # optimize at the first audit); on an accelerator they are summed
        # where they live and only the sums come back.
        self._host_statistics = all(_on_host(v) for v in self._variables)
        # Traced here, once; calling the concrete function skips the
        # signature matching of each call (a third of a small audit's time).
        self._function = tf.function(
            self._compare,
            input_signature=[self._data.spec, tf.TensorSpec([2], tf.int64)],
            jit_compile=bool(model.jit_compile),
            # Like Keras's own train function: plain tracing, no AutoGraph.
            autograph=False,
        ).get_concrete_function()

    def _compare(self, batch, seed):
        """Traced once: both gradients, their statistics and the direction checks."""
        self._trace_count += 1
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
        loss, manual, reference, state = self._two_passes(x, y, sample_weight)
        stats = {} if self._host_statistics else _compare_all(manual, reference)
        # The gradients themselves come back too: the host statistics read
        # them, and so does the rare audit that finds non-finite entries (on
        # an accelerator they stay in device memory unless read).
        stats.update(loss=tf.cast(loss, tf.float64), manual=manual, reference=reference)
        if self.directions:
            stats.update(self._direction_checks(x, y, sample_weight, manual, reference, state, seed))
        return stats

    def _two_passes(self, x, y, sample_weight):
        """(loss, manual gradients, reference gradients, the state both started from)."""
        state = [tf.identity(v.value) for v in self._state]
        loss, manual = self._loss_and_gradients(x, y, sample_weight)
        self._restore(state)
        # The autodiff switch is read at trace time: this pass is traced with
        # every manual-gradient op running its forward only.
        with autodiff():
            _, reference = self._loss_and_gradients(x, y, sample_weight)
        self._restore(state)
        return loss, manual, reference, state

    def _loss_and_gradients(self, x, y, sample_weight):
        with tf.GradientTape() as tape:
            loss = self._loss(x, y, sample_weight)
        # Unscaled loss in both passes: loss scaling is the optimizer's business,
        # and leaving it out keeps the two passes comparable.
        grads = tape.gradient(loss, self._variables)
        dense = []
        for v, g in zip(self._variables, grads):
            if g is None:
                dense.append(tf.zeros(v.shape, tf.float64))
            else:
                # IndexedSlices (embeddings) become dense here.
                dense.append(tf.cast(tf.convert_to_tensor(g), tf.float64))
        return loss, dense

    def _loss(self, x, y, sample_weight):
        model = self.model
        if model._call_has_training_arg:
            y_pred = model(x, training=True)
        else:
            y_pred = model(x)
        # Model's own training loss, regularization and add_loss losses included.
        loss = model._compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True
        )
        return tf.cast(loss, tf.float32)

    def _restore(self, state):
        for v, value in zip(self._state, state):
            v.assign(value)

    def _direction_checks(self, x, y, sample_weight, manual, reference, state, seed):
        """Central differences along random unit directions, at each step size."""
        weights = [tf.identity(v.value) for v in self._variables]
        results = {"fd": [], "fd_manual": [], "fd_reference": [], "fd_loss_scale": []}
        for k in range(self.directions):
            directions = [
                tf.random.stateless_normal(tf.shape(w), seed=seed + [k, i], dtype=tf.float64)
                for i, w in enumerate(weights)
            ]
            norm = tf.sqrt(tf.add_n([tf.reduce_sum(d * d) for d in directions]))
            directions = [d / norm for d in directions]
            per_eps = {key: [] for key in results}
            for eps in self._eps:
                losses, points = [], []
                for sign in (1.0, -1.0):
                    for v, w, d in zip(self._variables, weights, directions):
                        v.assign(w + tf.cast(sign * eps * d, w.dtype))
                    # The weights as assigned (rounded to their dtype): the
                    # slope is compared along the step actually taken.
                    points.append([tf.cast(tf.identity(v.value), tf.float64) for v in self._variables])
                    losses.append(tf.cast(self._loss(x, y, sample_weight), tf.float64))
                    self._restore(state)
                step = [p - m for p, m in zip(points[0], points[1])]
                per_eps["fd"].append((losses[0] - losses[1]) / (2.0 * eps))
                per_eps["fd_manual"].append(_dot(manual, step) / (2.0 * eps))
                per_eps["fd_reference"].append(_dot(reference, step) / (2.0 * eps))
                per_eps["fd_loss_scale"].append(tf.maximum(tf.abs(losses[0]), tf.abs(losses[1])))
            for key, values in per_eps.items():
                results[key].append(tf.stack(values))
        for v, w in zip(self._variables, weights):
            v.assign(w)
        return {key: tf.stack(values) for key, values in results.items()}

    def _record(self, step, out, batch):
        if "sums" in out and np.all(np.isfinite(out["sums"])) and np.all(np.isfinite(out["maxes"])):
            compute = compare_sums(out["sums"], out["maxes"])
        else:
            # On the host, or some gradient has a NaN or Inf (the rare case,
            # counted entry by entry on the host).
            compute = compare(*self._host_gradients(out))
        passed = verdict.within(compute, self._rtol, self._atol)
        exact, note = None, None
        if self._compute_dtype != "float64" and (
            self.reference == "float64"
            # A finite disagreement may be the compute dtype's round-off; a
            # non-finite one is not, and float64 would not excuse it.
            or np.any(~passed & ~compute.nonfinite_mismatch)
        ):
            exact, note = self._float64_check(batch, out)
        rtol64, atol64 = verdict.tolerances("float64")
        floor = 0.0
        if exact is None:
            decided, rtol, atol = compute, self._rtol, self._atol
            rounding = [(None, None)] * len(self._variables)
        else:
            float64, manual_error, reference_error = exact
            floor = verdict.float64_floor(reference_error, self._compute_dtype)
            passed = (
                ~compute.nonfinite_mismatch
                & verdict.within(float64, rtol64, atol64, floor)
                & verdict.as_accurate(manual_error, reference_error, float64, self._rtol, self._atol)
            )
            decided, rtol, atol = float64, rtol64, atol64
            norm = np.where(float64.norm_reference > 0, float64.norm_reference, 1.0)
            rounding = list(zip(manual_error / norm, reference_error / norm))
        scaled = verdict.scaled_rel_error(decided, rtol, atol, floor)
        variables = []
        for i, v in enumerate(self._variables):
            manual_nonfinite, reference_nonfinite, _ = compute.nonfinite[i]
            variables.append(
                VariableAudit(
                    path=self._paths[i],
                    layer=self._owner[i],
                    shape=tuple(v.shape),
                    max_abs_error=float(decided.max_abs_error[i]),
                    rel_error=float(decided.rel_error[i]),
                    cosine=float(decided.cosine[i]),
                    manual_nonfinite=int(manual_nonfinite),
                    reference_nonfinite=int(reference_nonfinite),
                    passed=bool(passed[i]),
                    compute_rel_error=float(compute.rel_error[i]),
                    scaled_rel_error=float(scaled[i]),
                    manual_rounding_error=_float_or_none(rounding[i][0]),
                    reference_rounding_error=_float_or_none(rounding[i][1]),
                )
            )
        directions = self._directions(out, self._atol * compute.scale)
        failed = [v.path for v in variables if not v.passed]
        culprit, next_layers, earlier_agree = self._culprit(variables)
        return AuditRecord(
            step=step,
            passed=not failed and all(d.passed for d in directions),
            failed_variables=failed,
            variables=variables,
            max_rel_error=float(np.max(scaled)),
            loss=float(out["loss"]),
            culprit=culprit,
            culprit_next=next_layers[0] if next_layers else None,
            next_layers=next_layers,
            earlier_layers_agree=earlier_agree,
            directions=directions,
            rtol=self._rtol,
            atol=self._atol,
            checked_in_float64=exact is not None,
            float64_rtol=rtol64,
            float64_atol=atol64,
            note=note,
        )

    def _host_gradients(self, out):
        if "host" not in out:
            out["host"] = ([g.numpy() for g in out["manual"]], [g.numpy() for g in out["reference"]])
        return out["host"]

    def _directions(self, out, atol):
        directions = []
        for k in range(self.directions):
            # A direction passes if the slope agrees at any step size: a
            # ReLU kink within the larger step spoils that one, rounding
            # spoils the smaller one, a wrong gradient spoils both.
            candidates = []
            for j, eps in enumerate(self._eps):
                fd = float(out["fd"][k, j])
                manual = float(out["fd_manual"][k, j])
                reference = float(out["fd_reference"][k, j])
                # Rounding of the two losses in the compute dtype, over 2 eps,
                # plus a relative share for truncation (eps^2 L'''/6).
                noise = 64.0 * self._loss_eps * float(out["fd_loss_scale"][k, j]) / (2 * eps)
                tolerance = self._direction_rtol * max(abs(fd), abs(reference)) + noise + atol
                error = abs(fd - manual)
                candidates.append(
                    DirectionCheck(
                        eps=eps,
                        finite_difference=fd,
                        manual=manual,
                        reference=reference,
                        error=error,
                        tolerance=tolerance,
                        passed=bool(error <= tolerance),
                    )
                )
            directions.append(min(candidates, key=lambda d: d.error / d.tolerance))
        return directions

    # --- The float64 check ---------------------------------------------------

    def _float64_check(self, batch, out):
        """((float64 Comparison, ||m32 - g64||, ||r32 - g64||), note), or (None, note) where it cannot run."""
        if self._function64 is None and self._float64_unavailable is None:
            try:
                with float64_compute(self.model):
                    self._function64 = tf.function(
                        self._gradients64,
                        input_signature=[self._data.spec],
                        jit_compile=bool(self.model.jit_compile),
                        autograph=False,
                    ).get_concrete_function()
            except Exception as error:  # noqa: BLE001 (any layer may refuse float64)
                if self.reference == "float64":
                    raise ValueError(
                        "GradientAudit(reference='float64'): the model cannot run in float64: "
                        f"{type(error).__name__}: {error}"
                    ) from error
                self._float64_unavailable = (
                    "the float64 check could not run (the model does not trace in float64: "
                    f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}); "
                    "the verdict is the compute dtype's"
                )
        if self._function64 is None:
            return None, self._float64_unavailable
        result = self._function64(batch)
        manual64 = [g.numpy() for g in result["manual"]]
        reference64 = [g.numpy() for g in result["reference"]]
        manual32, reference32 = self._host_gradients(out)
        return (
            compare(manual64, reference64),
            distance(manual32, reference64),
            distance(reference32, reference64),
        ), None

    def _gradients64(self, batch):
        """Traced once, inside `float64_compute`: both passes with every computation in float64."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
        _, manual, reference, _ = self._two_passes(x, y, sample_weight)
        return dict(manual=manual, reference=reference)

    def _culprit(self, variables):
        """(culprit, the next layers with weights after it, whether layers with weights before it all agree)."""
        failing_layers = {v.layer for v in variables if not v.passed}
        if not failing_layers:
            return None, [], False
        # Going backward from the loss: the last layer first.
        backward = list(reversed(self._layer_order))
        for i, layer in enumerate(backward):
            if layer in failing_layers:
                before = {v.layer for v in variables} & set(backward[i + 1:])
                return (
                    layer,
                    self._next_with_weights(layer, backward[:i]),
                    bool(before) and not (before & failing_layers),
                )
        return None, [], False

    def _next_with_weights(self, name, later):
        """The first layers with trainable variables that the culprit's outputs reach.

        In a functional graph the culprit's consumers are followed through
        layers without weights (activations, merges, padding), so a branching
        model (ResNet's shortcuts) names the layer that really reads its
        output, not the next one in the flattened order. Without a graph
        (subclassed models), the next layer with weights in that order.
        """
        with_weights = set(self._owner)
        by_name = self._layers_by_name
        start = by_name.get(name)
        reached = []
        frontier = [start] if start is not None else []
        seen = set()
        while frontier:
            layer = frontier.pop()
            for node in getattr(layer, "_outbound_nodes", None) or []:
                consumer = node.operation
                if id(consumer) in seen or consumer.name not in by_name:
                    continue
                seen.add(id(consumer))
                if consumer.name in with_weights:
                    reached.append(consumer.name)
                else:
                    frontier.append(consumer)
        if reached:
            # A layer whose output feeds several (ResNet's shortcut and
            # branch): each one's input gradient is a suspect.
            return sorted(set(reached), key=self._layer_order.index)
        for candidate in reversed(later):
            if candidate in with_weights:
                return [candidate]
        return []

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


def _float_or_none(value):
    return None if value is None else float(value)


def _write_scalar(tag, value):
    # tf.summary.scalar lives in the tensorboard package, which TensorFlow
    # does not require; tf.summary.write with the scalars plugin's metadata
    # writes the same event.
    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
    )
    tf.summary.write(tag, tf.constant(value, tf.float32), metadata=metadata)


def _dot(grads, step):
    return tf.add_n([tf.reduce_sum(g * s) for g, s in zip(grads, step)])


class _AuditData:
    """The audit batch source: a fixed tuple of arrays or a cycling tf.data.Dataset."""

    def __init__(self, data):
        if isinstance(data, tf.data.Dataset):
            self._dataset = data
            self._iterator = None
            spec = data.element_spec
            if not isinstance(spec, tuple) or len(spec) not in (2, 3):
                raise ValueError(
                    "GradientAudit's data must be an (x, y) or (x, y, sample_weight) "
                    f"tuple or a tf.data.Dataset of such tuples, received a Dataset "
                    f"with element_spec={spec!r}"
                )
            self.spec = spec
            self._batch = None
            return
        if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
            raise ValueError(
                "GradientAudit's data must be an (x, y) or (x, y, sample_weight) tuple "
                f"of arrays, or a tf.data.Dataset, received: {type(data).__name__}"
                + (f" of length {len(data)}" if isinstance(data, (tuple, list)) else "")
            )
        self._dataset = None
        self._batch = tuple(tf.nest.map_structure(_to_tensor, tuple(data)))
        self.spec = tf.nest.map_structure(tf.TensorSpec.from_tensor, self._batch)

    def next_batch(self):
        if self._dataset is None:
            return self._batch
        if self._iterator is None:
            self._iterator = iter(self._dataset)
        try:
            return next(self._iterator)
        except StopIteration:
            self._iterator = iter(self._dataset)
            try:
                return next(self._iterator)
            except StopIteration:
                raise ValueError("GradientAudit's dataset is empty.") from None


def _to_tensor(array):
    # Like fit's data adapters: float64 NumPy data becomes floatx.
    if isinstance(array, np.ndarray) and array.dtype.kind == "f":
        return tf.convert_to_tensor(array, dtype=keras.backend.floatx())
    return tf.convert_to_tensor(array)


def _on_host(variable):
    """Whether a (Keras or tf) variable's value lives in host (CPU) memory."""
    value = variable.value if isinstance(variable, keras.Variable) else variable
    return tf.DeviceSpec.from_string(value.device or "").device_type == "CPU"


def _compute_dtype(model):
    dtypes = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if layer.trainable_weights:
            dtypes.append(str(layer.compute_dtype))
    for low in ("bfloat16", "float16"):
        if low in dtypes:
            return low
    return dtypes[0] if dtypes else "float32"


def _relative_path(model, variable):
    # Layers built inside a Sequential get the model's name as a prefix
    # ("sequential/dense/kernel"); report "dense/kernel" in every case.
    path = variable.path
    prefix = model.name + "/"
    return path[len(prefix):] if path.startswith(prefix) else path


def _layer_order(model, variables):
    """The owning layer's name for each variable, and the layers in forward order.

    Layers come in `model._flatten_layers` order: the topological order for
    Sequential and functional models, the order of attribute assignment for
    subclassed ones (which is the call order in the usual style).
    """
    owner = {}
    order = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if list(layer._flatten_layers(include_self=False, recursive=False)):
            # A container (nested model or block): its leaves are listed too.
            own = getattr(layer, "_trainable_variables", [])
            if not own:
                continue
        order.append(layer.name)
        for v in getattr(layer, "_trainable_variables", []):
            owner.setdefault(id(v), layer.name)
    names = []
    for v in variables:
        name = owner.get(id(v))
        if name is None:
            name = _relative_path(model, v).rsplit("/", 1)[0]
            if name not in order:
                order.append(name)
        names.append(name)
    return names, order
