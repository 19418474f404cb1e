"""The gradient audit's parts; the callback itself is `keras_bp.callbacks.GradientAudit`."""
