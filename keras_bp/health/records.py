"""The monitor's records: what each check measured, readable as a table.

`HealthRecord` is one check (`str(record)` the table), `LayerHealth` one
layer with weights in it, `VariableHealth` one trainable variable,
`Diagnosis` one problem found (the warning's message is its `message`).
"""

import dataclasses
import math
from typing import Dict, List, Optional

__all__ = ["Diagnosis", "HealthRecord", "LayerHealth", "VariableHealth"]


@dataclasses.dataclass
class VariableHealth:
    """One trainable variable at one check (norms are L2 norms)."""

    path: str  # e.g. "dense_1/kernel"
    layer: str  # the name of the layer that owns it
    shape: tuple
    grad_norm: float  # ||g||
    max_abs_grad: float  # max |g|
    weight_norm: float  # ||w||
    update_norm: float  # ||dw||: the step the optimizer would take now
    update_ratio: float  # ||dw|| / ||w|| (NaN where ||w|| = 0)
    nonfinite: int  # NaN/Inf entries of g


@dataclasses.dataclass
class LayerHealth:
    """One layer with trainable weights at one check: its variables taken together."""

    name: str
    grad_norm: float  # sqrt(sum over its variables of ||g||^2)
    max_abs_grad: float
    weight_norm: float
    update_norm: float
    update_ratio: float  # update_norm / weight_norm (NaN where weight_norm = 0)
    nonfinite: int
    parameters: int


@dataclasses.dataclass
class Diagnosis:
    """One problem a check found: `kind` is "vanishing", "exploding", "dead units", "update ratio" or "non-finite"."""

    kind: str
    layer: Optional[str]  # the layer it names (None: the input batch)
    value: float  # the number the message gives
    threshold: Optional[float]  # the bound it crossed (None for non-finite)
    message: str

    def __str__(self):
        return self.message


@dataclasses.dataclass
class HealthRecord:
    """One check of the gradients' health. `str(record)` is a readable table."""

    step: int  # the optimizer step the check ran at
    loss: float
    grad_norm: float  # ||g|| over every trainable variable
    first_to_last: float  # the first layer's grad norm over the last's (NaN where undefined)
    layers: List[LayerHealth]  # the layers with weights, in forward order
    variables: List[VariableHealth]
    dead_units: Dict[str, float]  # ReLU-family layer -> fraction of its units zero for the whole batch
    nonfinite_outputs: Optional[str] = None  # the first layer whose outputs were non-finite (going forward)
    input_nonfinite: int = 0  # NaN/Inf entries in the monitor batch's inputs
    diagnoses: List[Diagnosis] = dataclasses.field(default_factory=list)

    @property
    def healthy(self):
        return not self.diagnoses

    def layer(self, name):
        """The `LayerHealth` of the layer called `name`."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def __str__(self):
        head = (
            f"GradientMonitor at step {self.step}: loss={self.loss:.6g}, gradient norm "
            f"{self.grad_norm:.3e}, first/last layer gradient norm {self.first_to_last:.3e}, "
            + (f"{len(self.diagnoses)} problem(s)" if self.diagnoses else "healthy")
        )
        width = max([len("layer")] + [len(layer.name) for layer in self.layers])
        lines = [
            head,
            f"    {'layer':<{width}}  {'grad norm':>10}  {'max |g|':>10}  {'weight norm':>11}  "
            f"{'update/weight':>13}  {'dead units':>10}  non-finite",
        ]
        for layer in self.layers:
            dead = self.dead_units.get(layer.name)
            lines.append(
                f"    {layer.name:<{width}}  {layer.grad_norm:>10.3e}  {layer.max_abs_grad:>10.3e}  "
                f"{layer.weight_norm:>11.3e}  {_ratio(layer.update_ratio):>13}  "
                f"{'' if dead is None else f'{dead:.0%}':>10}  {layer.nonfinite}"
            )
        named = {layer.name for layer in self.layers}
        for name, dead in self.dead_units.items():
            if name not in named:
                lines.append(f"    {name:<{width}}  {'(no weights)':>10}  {'':>10}  {'':>11}  {'':>13}  {dead:>10.0%}")
        lines += [f"  ! {d.message}" for d in self.diagnoses]
        return "\n".join(lines)


def _ratio(value):
    return "-" if math.isnan(value) else f"{value:.2e}"
