"""The gradient monitor's parts; the callback itself is `keras_bp.callbacks.GradientMonitor` (docs/health.md)."""
