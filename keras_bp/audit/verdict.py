"""The audit's verdict on each variable: agreement within the round-off its dtype allows.

A variable's manual gradient m passes against a reference r computed in the
same precision when

    ||m - r|| <= rtol ||r|| + atol S          S = ||r|| of all variables together

so an ordinary variable is judged relatively, and a variable whose exact
gradient is zero (a convolution's bias before a BatchNormalization: both
passes return round-off there, and their relative error means nothing) is
judged against the model's gradient norm, the scale of the round-off it
carries. Non-finite entries must sit at the same places in both.

Float32 itself can be the noise (docs/audit.md has the measurements): in a
randomly initialized ResNet50 at 64 x 64 with a batch of 4, Keras's own
float32 gradient is 3 to 5% from the float64 one on most variables, because
the late BatchNormalizations normalize few values with small variances, and
the manual and autodiff passes sum in different orders. No float32 tolerance
tells a 1% bug from that. So where the compute-dtype comparison fails, the
exact check decides: both passes again in float64 (keras_bp.audit.float64),
where round-off is about 1e-16 and a 1% bug stands out by ten orders of
magnitude. It also asks that the manual compute-dtype gradient be no further
from the float64 truth g than round-off explains, measured on autodiff's own
compute-dtype gradient r32:

    ||m - g|| <= ROUNDING_FACTOR ||r32 - g|| + rtol ||g|| + atol S + E

where E = ||r32 - g|| over all variables together, autodiff's whole
round-off: a variable whose exact gradient is zero may carry as much
absolute round-off as the model's gradient does (in an ill-conditioned
model the manual sum behind a bias before BatchNormalization rounds to
~6e-5 S where autodiff's happens to cancel to ~1e-7 S, while the other
variables of both passes are 1e-4 to 6e-4 S off). What it fails: a manual
backward that loses accuracy in float32 wholesale, where autodiff keeps it.

Round-off grows with the conditioning in float64 as in float32, in
proportion to the unit round-off u. So the float64 check's floor for
zero-gradient variables is float32's measured round-off carried over:

    ||m64 - r64|| <= rtol64 ||r64|| + atol64 S + E u64 / u32

(a bias of 1e4 before BatchNormalization puts E at ~5% of S and the zero
gradients' float64 disagreement at ~1.5e-12 S; u64 / u32 = 2^-29 keeps the
floor at ~1e-10 S, ten orders of magnitude below a 1% bug).
"""

import numpy as np

from keras_bp._tolerances import AUDIT, by_dtype

__all__ = [
    "TOLERANCES",
    "ROUNDING_FACTOR",
    "UNIT_ROUNDOFF",
    "as_accurate",
    "float64_floor",
    "scaled_rel_error",
    "tolerances",
    "total_error",
    "unit_roundoff",
    "within",
]

# (rtol, atol) by dtype, atol relative to S: the numbers and their
# measurements are in keras_bp._tolerances, with the other checks' tables.
TOLERANCES = AUDIT

# How much further from the float64 truth than autodiff's own compute-dtype
# gradient a manual one may be. NOTE: round-off is itself uncertain by more
# than an order of magnitude: on ResNet50's last block (64 x 64, batch 4)
# Keras's own float32 gradient, keras_bp's manual one and autodiff of it are
# all 6.3e-3 from float64 eagerly, while the same autodiff traced in a
# tf.function is 1.8e-4 off (35x closer); elsewhere the two passes' ratio was
# up to 2.0 (median 1.2). 100 keeps correct backward passes quiet and still
# fails one that loses accuracy wholesale (cancellation that autodiff avoids).
ROUNDING_FACTOR = 100.0


UNIT_ROUNDOFF = {"float32": 2.0**-23, "float64": 2.0**-52, "float16": 2.0**-10, "bfloat16": 2.0**-7}


def unit_roundoff(dtype):
    return by_dtype(UNIT_ROUNDOFF, dtype)


def tolerances(dtype):
    return by_dtype(TOLERANCES, dtype)


def within(comparison, rtol, atol, floor=0.0):
    """Per variable: does the manual gradient agree within round-off (finite parts, same non-finite places).

    `floor`: an absolute allowance on ||m - r|| on top of the tolerances.
    """
    bound = rtol * comparison.norm_reference + atol * comparison.scale + floor
    return (comparison.norm_error <= bound) & ~comparison.nonfinite_mismatch


def scaled_rel_error(comparison, rtol, atol, floor=0.0):
    """||d|| / max(||r||, (atol S + floor) / rtol): the relative error, floored at the scale atol allows."""
    floor = (atol * comparison.scale + floor) / rtol if rtol > 0 else 0.0
    denominator = np.maximum(comparison.norm_reference, floor)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(
            denominator > 0,
            comparison.norm_error / denominator,
            np.where(comparison.norm_error > 0, np.inf, 0.0),
        )


def total_error(errors):
    """||.|| over all variables together, from the per-variable norms."""
    return float(np.sqrt(np.sum(np.square(errors))))


def float64_floor(reference_error, compute_dtype):
    """E u64 / u_compute: the compute dtype's measured round-off, carried over to float64."""
    return total_error(reference_error) * unit_roundoff("float64") / unit_roundoff(compute_dtype)


def as_accurate(manual_error, reference_error, exact, rtol, atol):
    """Per variable: is the manual compute-dtype gradient as close to the float64 one as round-off explains.

    `manual_error`, `reference_error`: ||m - g|| and ||r32 - g|| per
    variable; `exact`: the `Comparison` of the float64 passes (g its reference).
    """
    total = total_error(reference_error)
    bound = ROUNDING_FACTOR * reference_error + rtol * exact.norm_reference + atol * exact.scale + total
    return manual_error <= bound
