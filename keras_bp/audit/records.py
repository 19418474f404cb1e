"""The audit's records: what each audit found, readable as a table.

`AuditRecord` is one audit (`str(record)` the table), `VariableAudit` one
trainable variable's comparison in it, `DirectionCheck` one
finite-difference check of the loss's slope.
"""

import dataclasses
from typing import List, Optional

__all__ = ["AuditRecord", "DirectionCheck", "VariableAudit", "variable_path"]


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


def variable_path(model, variable):
    """A variable's path as the records name it ("dense_1/kernel")."""
    # Layers built inside a Sequential get the model's name as a prefix
    # ("sequential/dense/kernel"); report "dense/kernel" in every case.
    path = variable.path
    prefix = model.name + "/"
    return path[len(prefix):] if path.startswith(prefix) else path
