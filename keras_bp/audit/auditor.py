"""One audit of a model: from an audit batch to its `AuditRecord`.

The probe (keras_bp.audit.probe) measures both gradients; the statistics
(keras_bp.audit.statistics) compare them per variable; the verdict
(keras_bp.audit.verdict) judges each variable in the compute dtype and,
where that fails with finite numbers, in float64; the direction checks
(keras_bp.audit.directions) judge the loss's slope; the culprit search
(keras_bp.audit.culprit) says where a mismatch points.
"""

from typing import NamedTuple

import numpy as np

from keras_bp._state import model_state
from keras_bp._tolerances import AUDIT_DIRECTIONS, by_dtype
from keras_bp.audit import _keras, directions, verdict
from keras_bp.audit.culprit import ModelLayers
from keras_bp.audit.probe import Probe
from keras_bp.audit.schedule import trace_key
from keras_bp.audit.records import AuditRecord, VariableAudit, variable_path
from keras_bp.audit.statistics import Comparison, compare, compare_sums, distance

__all__ = ["Auditor"]


class _Float64Check(NamedTuple):
    """What the float64 check measured, per variable."""

    comparison: Comparison  # the float64 manual against the float64 reference g
    manual_error: np.ndarray  # ||m32 - g||: the manual compute-dtype gradient's distance from g
    reference_error: np.ndarray  # ||r32 - g||: autodiff's compute-dtype gradient's


class Auditor:
    """A model's audit, set up (and its probe traced) once per model and compile.

    Args:
        model: the model `fit` trains.
        spec: the audit batch's `element_spec`.
        rtol, atol, reference, directions: `GradientAudit`'s arguments.
    """

    def __init__(self, model, spec, rtol, atol, reference, directions):
        self.key = trace_key(model)
        self._reference = reference
        self._variables = list(model.trainable_variables)
        if not self._variables:
            raise ValueError("GradientAudit: the model has no trainable variables to audit.")
        self._paths = [variable_path(model, v) for v in self._variables]
        self._layers = ModelLayers(model, self._variables)
        # Everything a forward pass may write.
        state = model_state(model)
        dtype = _compute_dtype(model)
        self._compute_dtype = dtype
        self._function64 = None
        self._float64_unavailable = None
        default_rtol, default_atol = verdict.tolerances(dtype)
        self.rtol = default_rtol if rtol is None else float(rtol)
        self.atol = default_atol if atol is None else float(atol)
        self._eps, self._direction_rtol = by_dtype(AUDIT_DIRECTIONS, dtype)
        self._loss_eps = verdict.unit_roundoff(dtype)
        self.probe = Probe(model, self._variables, state, spec, directions, self._eps)

    def serves(self, model):
        """Whether this audit's trace still fits `model` (the same model, compile and variables)."""
        return self.key == trace_key(model)

    def audit(self, step, batch, seed):
        """The `AuditRecord` of `batch` at optimizer step `step`; `seed` draws the directions."""
        probe = self.probe(batch, seed)
        compute, exact, note = self._comparisons(probe, batch)
        rtol64, atol64 = verdict.tolerances("float64")
        floor = 0.0
        if exact is None:
            passed = verdict.within(compute, self.rtol, self.atol)
            decided, rtol, atol = compute, self.rtol, self.atol
            rounding = [(None, None)] * len(self._variables)
        else:
            float64, manual_error, reference_error = exact
            floor = verdict.float64_floor(reference_error, self._compute_dtype)
            passed = (
                ~compute.nonfinite_mismatch
                & verdict.within(float64, rtol64, atol64, floor)
                & verdict.as_accurate(manual_error, reference_error, float64, self.rtol, self.atol)
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
                    layer=self._layers.owners[i],
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
        checks = []
        if probe.slopes is not None:
            checks = directions.judge(
                probe.slopes, self._eps, self._direction_rtol, self._loss_eps, self.atol * compute.scale
            )
        failed = [v.path for v in variables if not v.passed]
        culprit = self._layers.culprit(variables)
        return AuditRecord(
            step=step,
            passed=not failed and all(d.passed for d in checks),
            failed_variables=failed,
            variables=variables,
            max_rel_error=float(np.max(scaled)),
            loss=float(probe.loss),
            culprit=culprit.layer,
            culprit_next=culprit.next_layers[0] if culprit.next_layers else None,
            next_layers=culprit.next_layers,
            earlier_layers_agree=culprit.earlier_layers_agree,
            directions=checks,
            rtol=self.rtol,
            atol=self.atol,
            checked_in_float64=exact is not None,
            float64_rtol=rtol64,
            float64_atol=atol64,
            note=note,
        )

    def _comparisons(self, probe, batch):
        """(the compute dtype's `Comparison`, a `_Float64Check` or None, a note where it could not run)."""
        host = None
        if probe.sums is not None and np.all(np.isfinite(probe.sums)) and np.all(np.isfinite(probe.maxes)):
            compute = compare_sums(probe.sums, probe.maxes)
        else:
            # On the host, or some gradient has a NaN or Inf (the rare case,
            # counted entry by entry on the host).
            host = probe.host_gradients()
            compute = compare(*host)
        passed = verdict.within(compute, self.rtol, self.atol)
        if self._compute_dtype == "float64" or not (
            self._reference == "float64"
            # A finite disagreement may be the compute dtype's round-off; a
            # non-finite one is not, and float64 would not excuse it.
            or np.any(~passed & ~compute.nonfinite_mismatch)
        ):
            return compute, None, None
        gradients64, note = self._float64_gradients(batch)
        if gradients64 is None:
            return compute, None, note
        manual32, reference32 = host or probe.host_gradients()
        manual64, reference64 = gradients64
        exact = _Float64Check(
            compare(manual64, reference64),
            distance(manual32, reference64),
            distance(reference32, reference64),
        )
        return compute, exact, None

    def _float64_gradients(self, batch):
        """(float64 (manual, reference) as host arrays, None), or (None, note) where the model cannot run in float64."""
        if self._function64 is None and self._float64_unavailable is None:
            try:
                self._function64 = self.probe.trace_float64()
            except Exception as error:  # noqa: BLE001 (any layer may refuse float64)
                if self._reference == "float64":
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
        return ([g.numpy() for g in result.manual], [g.numpy() for g in result.reference]), None


def _compute_dtype(model):
    dtypes = []
    for layer in _keras.layers(model):
        if layer.trainable_weights:
            dtypes.append(str(layer.compute_dtype))
    for low in ("bfloat16", "float16"):
        if low in dtypes:
            return low
    return dtypes[0] if dtypes else "float32"


def _float_or_none(value):
    return None if value is None else float(value)
