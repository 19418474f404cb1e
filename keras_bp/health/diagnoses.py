"""The diagnoses: which numbers of a check mean trouble, by thresholds the user sets.

At each check, at most one `Diagnosis` of each kind, naming the worst layer
(and how many others share the problem):

    non-finite    some output, the loss or a gradient is NaN or Inf. Named:
                  the first layer whose outputs are non-finite, going forward
                  (the order the layer calls returned: the layer that made
                  them, not one that inherited them), or the input batch;
                  where every output is finite, the first layer with
                  non-finite gradients going backward from the loss (a wrong
                  backward corrupts its own gradients and every layer's
                  before it). The other diagnoses are skipped at that check:
                  their numbers mean nothing.
    exploding     a layer's ||g|| > max_grad_norm; or the whole ||g|| grew
                  more than growth_factor times over the previous
                  growth_window checks (||g|| / min of theirs), naming the
                  layer whose norm grew most.
    vanishing     ||g_first|| / ||g_last|| < vanishing_ratio (the layers with
                  weights in forward order), naming the first layer.
    dead units    a ReLU-family layer's fraction of units that are 0 for the
                  whole batch > dead_fraction.
    update ratio  a layer's ||dw|| / ||w|| above max_update_ratio or below
                  min_update_ratio (off by default), where ||w|| > 0; the
                  usual order is 1e-3.

A threshold set to None turns its diagnosis off.
"""

import math
from typing import NamedTuple, Optional, Tuple

from keras_bp.health.records import Diagnosis

__all__ = ["DEFAULTS", "Thresholds", "diagnose"]


class Thresholds(NamedTuple):
    """The bounds of the diagnoses (None: that diagnosis is off)."""

    vanishing_ratio: Optional[float]
    max_grad_norm: Optional[float]
    growth_factor: Optional[float]
    growth_window: int
    dead_fraction: Optional[float]
    update_ratio: Tuple[Optional[float], Optional[float]]  # (min, max)


DEFAULTS = Thresholds(
    vanishing_ratio=1e-3,
    max_grad_norm=1e3,
    growth_factor=1e2,
    growth_window=5,
    dead_fraction=0.5,
    # The low side is off: a schedule that anneals the learning rate to 0
    # takes every ratio there at the end of a healthy run (docs/health.md).
    update_ratio=(None, 1e-1),
)


def diagnose(record, earlier, thresholds):
    """The `Diagnosis` list of `record`, given the `earlier` records of this fit (oldest first)."""
    nonfinite = _nonfinite(record)
    if nonfinite is not None:
        return [nonfinite]
    found = [
        _exploding(record, earlier, thresholds),
        _vanishing(record, thresholds.vanishing_ratio),
        _dead_units(record, thresholds.dead_fraction),
        _update_ratio(record, *thresholds.update_ratio),
    ]
    return [d for d in found if d is not None]


def _nonfinite(record):
    if record.input_nonfinite:
        return Diagnosis(
            "non-finite", None, record.input_nonfinite, None,
            f"non-finite: the monitor's input batch holds {record.input_nonfinite} NaN/Inf entries.",
        )
    if record.nonfinite_outputs is not None:
        name = record.nonfinite_outputs
        return Diagnosis(
            "non-finite", name, math.nan, None,
            f"non-finite: layer '{name}' is the first to produce NaN/Inf outputs (going forward, "
            f"from finite inputs) at step {record.step}; loss={record.loss:.6g}.",
        )
    # Going backward from the loss: the last layer first.
    for layer in reversed(record.layers):
        if layer.nonfinite:
            return Diagnosis(
                "non-finite", layer.name, layer.nonfinite, None,
                f"non-finite: layer '{layer.name}' is the first with NaN/Inf gradients going backward "
                f"from the loss ({layer.nonfinite} of {layer.parameters} entries) at step {record.step}, "
                "with every output finite: its backward, or that of a layer without weights after "
                "it, makes them.",
            )
    if not math.isfinite(record.loss):
        return Diagnosis(
            "non-finite", None, record.loss, None,
            f"non-finite: the loss is {record.loss} at step {record.step} with finite outputs.",
        )
    return None


def _exploding(record, earlier, thresholds):
    bound = thresholds.max_grad_norm
    if bound is not None:
        above = [layer for layer in record.layers if layer.grad_norm > bound]
        if above:
            worst = max(above, key=lambda layer: layer.grad_norm)
            return Diagnosis(
                "exploding", worst.name, worst.grad_norm, bound,
                f"exploding gradients: layer '{worst.name}' has gradient norm {worst.grad_norm:.3e} "
                f"> max_grad_norm={bound:g} at step {record.step}" + _others(above, worst) + ".",
            )
    factor = thresholds.growth_factor
    previous = [r for r in earlier if math.isfinite(r.grad_norm)][-thresholds.growth_window:]
    if factor is None or not previous:
        return None
    low = min(previous, key=lambda r: r.grad_norm)
    if not low.grad_norm > 0 or record.grad_norm <= factor * low.grad_norm:
        return None
    growth = record.grad_norm / low.grad_norm
    before = {layer.name: layer.grad_norm for layer in low.layers}
    grown = [(layer.grad_norm / before[layer.name], layer) for layer in record.layers if before.get(layer.name)]
    layer = max(grown, key=lambda pair: pair[0])[1] if grown else record.layers[-1]
    return Diagnosis(
        "exploding", layer.name, growth, factor,
        f"exploding gradients: the gradient norm grew {growth:.3g} times (> growth_factor={factor:g}) "
        f"from step {low.step} to step {record.step}, most at layer '{layer.name}' "
        f"({before.get(layer.name, math.nan):.3e} to {layer.grad_norm:.3e}).",
    )


def _vanishing(record, ratio):
    if ratio is None or len(record.layers) < 2 or not record.first_to_last < ratio:
        return None
    first, last = record.layers[0], record.layers[-1]
    below = [layer for layer in record.layers[:-1] if layer.grad_norm < ratio * last.grad_norm]
    return Diagnosis(
        "vanishing", first.name, record.first_to_last, ratio,
        f"vanishing gradients: layer '{first.name}' (the first with weights) has gradient norm "
        f"{first.grad_norm:.3e}, {record.first_to_last:.3e} times the last layer's ('{last.name}', "
        f"{last.grad_norm:.3e}) < vanishing_ratio={ratio:g} at step {record.step}; "
        f"{len(below)} of {len(record.layers)} layers are below that ratio.",
    )


def _dead_units(record, fraction):
    if fraction is None:
        return None
    dead = [(share, name) for name, share in record.dead_units.items() if share > fraction]
    if not dead:
        return None
    share, name = max(dead)
    others = [n for _, n in dead if n != name]
    return Diagnosis(
        "dead units", name, share, fraction,
        f"dead units: {share:.0%} of the units of layer '{name}' are 0 for the whole batch "
        f"(> dead_fraction={fraction:g}) at step {record.step}"
        + (f"; also {', '.join(repr(n) for n in others)}" if others else "") + ".",
    )


def _update_ratio(record, low, high):
    outside = []
    for layer in record.layers:
        ratio = layer.update_ratio
        if math.isnan(ratio):
            continue
        if high is not None and ratio > high:
            outside.append((math.log10(ratio / high), layer, f"> max_update_ratio={high:g}", high))
        elif low is not None and ratio < low:
            distance = math.inf if ratio == 0 else math.log10(low / ratio)
            outside.append((distance, layer, f"< min_update_ratio={low:g}", low))
    if not outside:
        return None
    _, layer, bound, threshold = max(outside, key=lambda entry: entry[0])
    return Diagnosis(
        "update ratio", layer.name, layer.update_ratio, threshold,
        f"update ratio: the optimizer's step would change the weights of layer '{layer.name}' by "
        f"{layer.update_ratio:.3e} of their norm ({bound}; usually ~1e-3) at step {record.step}"
        + _others([entry[1] for entry in outside], layer) + ".",
    )


def _others(layers, worst):
    others = [layer.name for layer in layers if layer.name != worst.name]
    if not others:
        return ""
    return f"; also {', '.join(repr(n) for n in others[:3])}" + (f" and {len(others) - 3} more" if len(others) > 3 else "")
