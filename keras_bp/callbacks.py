"""keras_bp's callbacks: the names users import, from where they live.

`GradientAudit` checks hand-derived gradients against autodiff while `fit`
runs; its parts are the package keras_bp.audit (docs/audit.md).
`GradientMonitor` watches the gradients' health (norms, update ratios, dead
units, vanishing and exploding gradients, NaN); its parts are the package
keras_bp.health (docs/health.md).
"""

from keras_bp.audit.callback import GradientAudit, GradientAuditError
from keras_bp.audit.probe import _on_host  # noqa: F401 (the tests import it from here)
from keras_bp.audit.records import AuditRecord, DirectionCheck, VariableAudit
from keras_bp.health.callback import GradientHealthWarning, GradientMonitor
from keras_bp.health.records import Diagnosis, HealthRecord, LayerHealth, VariableHealth
from keras_bp.audit.statistics import (  # noqa: F401 (the statistics' tests import them from here)
    _compare_all,
    _host_sums,
    _statistics,
    _statistics_masked,
)

__all__ = [
    "AuditRecord",
    "DirectionCheck",
    "GradientAudit",
    "GradientAuditError",
    "GradientHealthWarning",
    "GradientMonitor",
    "Diagnosis",
    "HealthRecord",
    "LayerHealth",
    "VariableAudit",
    "VariableHealth",
]
