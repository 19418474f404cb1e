"""The audit's finite-difference checks of the loss's slope along random directions.

With `directions=k`, k random unit directions v in parameter space (all
trainable variables together) check the slope of the whole loss itself, at
each of the compute dtype's step sizes (keras_bp._tolerances):

    (L(w + eps v) - L(w - eps v)) / (2 eps)   against   <g_manual, v>

A coarse check (docs/audit.md): it sees forwards whose autodiff is wrong
too. `slopes` computes the numbers inside the audit's traced probe; `judge`
turns them into `DirectionCheck`s on the host. The perturbations are undone
by assigning the saved weights back; the directions come from stateless ops
seeded by the audit's own generator, never from a global random state.
"""

from typing import NamedTuple

import tensorflow as tf

from keras_bp._finite_differences import central_difference
from keras_bp._state import restore, snapshot
from keras_bp.audit.records import DirectionCheck

__all__ = ["Slopes", "judge", "slopes"]


class Slopes(NamedTuple):
    """The direction checks' numbers, each [directions, step sizes]."""

    finite_difference: tf.Tensor  # (L(w + eps v) - L(w - eps v)) / (2 eps)
    manual: tf.Tensor  # <g_manual, v> along the step actually taken
    reference: tf.Tensor  # <g_ref, v> likewise
    loss_scale: tf.Tensor  # max(|L(w + eps v)|, |L(w - eps v)|): the losses' rounding scale


def slopes(loss, variables, state, manual, reference, seed, count, eps):
    """Traced: central differences of `loss()` along `count` random unit directions, at each step in `eps`.

    `state`: the `snapshot` of the non-trainable state that each loss
    evaluation starts from; `seed`: a [2] int64 tensor.
    """
    weights = snapshot(variables)
    results = {field: [] for field in Slopes._fields}
    for k in range(count):
        directions = [
            tf.random.stateless_normal(tf.shape(w), seed=seed + [k, i], dtype=tf.float64)
            for i, (_, w) in enumerate(weights)
        ]
        norm = tf.sqrt(tf.add_n([tf.reduce_sum(d * d) for d in directions]))
        directions = [d / norm for d in directions]
        per_eps = {field: [] for field in Slopes._fields}
        for step_size in eps:
            losses, points = [], []
            for sign in (1.0, -1.0):
                for (v, w), d in zip(weights, directions):
                    v.assign(w + tf.cast(sign * step_size * d, w.dtype))
                # The weights as assigned (rounded to their dtype): the
                # slope is compared along the step actually taken.
                points.append([tf.cast(tf.identity(v.value), tf.float64) for v in variables])
                losses.append(tf.cast(loss(), tf.float64))
                restore(state)
            step = [p - m for p, m in zip(points[0], points[1])]
            per_eps["finite_difference"].append(central_difference(losses[0], losses[1], step_size))
            per_eps["manual"].append(_dot(manual, step) / (2.0 * step_size))
            per_eps["reference"].append(_dot(reference, step) / (2.0 * step_size))
            per_eps["loss_scale"].append(tf.maximum(tf.abs(losses[0]), tf.abs(losses[1])))
        for field, values in per_eps.items():
            results[field].append(tf.stack(values))
    restore(weights)
    return Slopes(**{field: tf.stack(values) for field, values in results.items()})


def judge(numbers, eps, rtol, unit_roundoff, atol):
    """One `DirectionCheck` per direction, from `Slopes` read into host arrays.

    Args:
        numbers: the probe's `Slopes`, as NumPy arrays.
        eps: the step sizes `slopes` used.
        rtol: the tolerance relative to the slope.
        unit_roundoff: the compute dtype's, for the losses' rounding.
        atol: an absolute allowance (the verdict's atol times the gradient norm).
    """
    checks = []
    for k in range(numbers.finite_difference.shape[0]):
        # A direction passes if the slope agrees at any step size: a ReLU
        # kink within the larger step spoils that one, rounding spoils the
        # smaller one, a wrong gradient spoils both.
        candidates = []
        for j, step_size in enumerate(eps):
            fd = float(numbers.finite_difference[k, j])
            manual = float(numbers.manual[k, j])
            reference = float(numbers.reference[k, j])
            # Rounding of the two losses in the compute dtype, over 2 eps,
            # plus a relative share for truncation (eps^2 L'''/6).
            noise = 64.0 * unit_roundoff * float(numbers.loss_scale[k, j]) / (2 * step_size)
            tolerance = rtol * max(abs(fd), abs(reference)) + noise + atol
            error = abs(fd - manual)
            candidates.append(
                DirectionCheck(
                    eps=step_size,
                    finite_difference=fd,
                    manual=manual,
                    reference=reference,
                    error=error,
                    tolerance=tolerance,
                    passed=bool(error <= tolerance),
                )
            )
        checks.append(min(candidates, key=lambda d: d.error / d.tolerance))
    return checks


def _dot(grads, step):
    return tf.add_n([tf.reduce_sum(g * s) for g, s in zip(grads, step)])
