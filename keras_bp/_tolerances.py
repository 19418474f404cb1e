"""Tolerances by dtype, one table per check that compares gradients.

Each check keeps its own numbers, since each compares different things:
`CHECK_GRADIENTS` element by element on one layer (keras_bp.gradcheck),
`AUDIT` per variable on a whole model's gradient (keras_bp.audit.verdict),
`AUDIT_DIRECTIONS` the slope of a whole model's loss along a random
direction (keras_bp.audit.directions). A dtype missing from a table gets
its float32 row (`by_dtype`).
"""

from typing import NamedTuple, Tuple

__all__ = ["AUDIT", "AUDIT_DIRECTIONS", "CHECK_GRADIENTS", "by_dtype"]


class GradcheckTolerances(NamedTuple):
    """`check_gradients`' tolerances: an element passes when |manual - reference| <= atol + rtol |reference|."""

    autodiff_rtol: float
    autodiff_atol: float
    fd_eps: float  # the central differences' step
    fd_rtol: float
    fd_atol: float


CHECK_GRADIENTS = {
    "float64": GradcheckTolerances(1e-7, 1e-9, 1e-6, 1e-5, 1e-7),
    "float32": GradcheckTolerances(1e-4, 1e-5, 1e-3, 2e-2, 2e-3),
    "float16": GradcheckTolerances(2e-2, 2e-3, 1e-2, 1e-1, 2e-2),
    "bfloat16": GradcheckTolerances(5e-2, 1e-2, 1e-2, 1e-1, 5e-2),
}

# The audit's (rtol, atol) by dtype; atol is relative to S, the model's
# gradient norm. float32: manual and autodiff of a well-conditioned model
# differ by ~1e-6 relative, and round-off on zero-gradient variables by
# ~2.5e-7 S (ResNet50, the worst measured); float64's check measures 4e-10
# relative at worst (gradients come back rounded to the variables' float32)
# and 4e-16 S on zero-gradient variables. 16-bit compute rounds every
# intermediate to ~1e-3 (float16) or ~1e-2 (bfloat16) relative, in a
# different order in each pass.
AUDIT = {
    "float32": (1e-3, 1e-6),
    "float64": (1e-6, 1e-12),
    "float16": (5e-2, 1e-3),
    "bfloat16": (2e-1, 1e-2),
}


class DirectionTolerances(NamedTuple):
    """The audit's direction checks: the step sizes tried, and the tolerance relative to the slope."""

    eps: Tuple[float, ...]
    rtol: float


# NOTE: the loss is evaluated in the compute dtype, so the difference
# quotient carries a rounding error of about ulp(L) / eps, which grows as eps
# shrinks, while a ReLU kink within eps of w spoils the larger steps; two
# step sizes a decade apart and a pass at either keep correct models quiet
# (eps = 1e-2, 1e-3 along a unit direction in float32). 16-bit compute
# resolves only large steps, so there the check is coarse.
AUDIT_DIRECTIONS = {
    "float32": DirectionTolerances((1e-2, 1e-3), 5e-2),
    "float64": DirectionTolerances((1e-4, 1e-5), 1e-6),
    "float16": DirectionTolerances((1.0, 0.1), 2e-1),
    "bfloat16": DirectionTolerances((1.0, 0.1), 5e-1),
}


def by_dtype(table, dtype):
    """`table`'s row for `dtype` (a name or a dtype), float32's where it has none."""
    return table.get(str(dtype), table["float32"])
