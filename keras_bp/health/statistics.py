"""From the probe's sums to a `HealthRecord`: per-variable and per-layer norms, ratios, dead fractions.

With the probe's per-variable sums (keras_bp.health.probe), for a variable
and for a layer L (its variables v taken together):

    ||g_L||        = sqrt(sum_v sum g_v^2)
    ||w_L||, ||dw_L|| likewise
    update ratio   = ||dw_L|| / ||w_L||           (NaN where ||w_L|| = 0)
    ||g||          = sqrt(sum over every variable of sum g^2)
    first_to_last  = ||g_first|| / ||g_last||      the layers with weights in forward order
    dead fraction  = dead units / units            per ReLU-family layer
"""

import math

import numpy as np

from keras_bp.audit.culprit import ModelLayers
from keras_bp.audit.records import variable_path
from keras_bp.health.probe import MAX_G, NONFINITE_G, SUM_DW2, SUM_G2, SUM_W2
from keras_bp.health.records import HealthRecord, LayerHealth, VariableHealth

__all__ = ["Measure"]


class Measure:
    """Turns a model's probe results into `HealthRecord`s.

    Args:
        model: the monitored model.
        probe: its `HealthProbe` (traced).
    """

    def __init__(self, model, probe):
        self._probe = probe
        self._paths = [variable_path(model, v) for v in probe.variables]
        self._shapes = [tuple(v.shape) for v in probe.variables]
        layers = ModelLayers(model, probe.variables)
        self.owners = layers.owners
        # Forward order, the layers with weights only.
        owned = set(self.owners)
        self.order = [name for name in layers.order if name in owned]

    def record(self, step, result):
        """The `HealthRecord` of one `ProbeResult` at optimizer step `step` (no diagnoses yet)."""
        sums = result.sums
        variables = [
            VariableHealth(
                path=path,
                layer=owner,
                shape=shape,
                grad_norm=_sqrt(row[SUM_G2]),
                max_abs_grad=float(row[MAX_G]),
                weight_norm=_sqrt(row[SUM_W2]),
                update_norm=_sqrt(row[SUM_DW2]),
                update_ratio=_over(_sqrt(row[SUM_DW2]), _sqrt(row[SUM_W2])),
                nonfinite=int(row[NONFINITE_G]),
            )
            for path, owner, shape, row in zip(self._paths, self.owners, self._shapes, sums)
        ]
        layers = []
        for name in self.order:
            rows = np.array([row for owner, row in zip(self.owners, sums) if owner == name])
            sizes = [int(np.prod(s)) for owner, s in zip(self.owners, self._shapes) if owner == name]
            weight_norm, update_norm = _sqrt(rows[:, SUM_W2].sum()), _sqrt(rows[:, SUM_DW2].sum())
            layers.append(
                LayerHealth(
                    name=name,
                    grad_norm=_sqrt(rows[:, SUM_G2].sum()),
                    max_abs_grad=float(rows[:, MAX_G].max()),
                    weight_norm=weight_norm,
                    update_norm=update_norm,
                    update_ratio=_over(update_norm, weight_norm),
                    nonfinite=int(rows[:, NONFINITE_G].sum()),
                    parameters=sum(sizes),
                )
            )
        first_to_last = _over(layers[0].grad_norm, layers[-1].grad_norm) if len(layers) > 1 else math.nan
        dead_units = {
            name: int(dead) / units
            for name, dead, units in zip(self._probe.relu_layers, result.dead, self._probe.units)
            if units
        }
        nonfinite_outputs = None
        for name, count in zip(self._probe.calls, result.call_nonfinite):
            if count:
                nonfinite_outputs = name
                break
        return HealthRecord(
            step=step,
            loss=result.loss,
            grad_norm=_sqrt(sums[:, SUM_G2].sum()),
            first_to_last=first_to_last,
            layers=layers,
            variables=variables,
            dead_units=dead_units,
            nonfinite_outputs=nonfinite_outputs,
            input_nonfinite=result.input_nonfinite,
        )


def _sqrt(value):
    return float(np.sqrt(value))


def _over(numerator, denominator):
    if denominator > 0 and math.isfinite(denominator):
        return numerator / denominator
    return math.nan
