"""The central-difference quotient, the slope both gradient checks measure.

    f'(t) v ~ (f(t + eps v) - f(t - eps v)) / (2 eps)

Its truncation error is eps^2 f''' / 6, its rounding error about
ulp(f) / eps: `check_gradients` evaluates f in float64 with a small eps,
the audit in the compute dtype with two larger ones (keras_bp._tolerances).
"""

__all__ = ["central_difference"]


def central_difference(plus, minus, eps):
    """(f(t + eps v) - f(t - eps v)) / (2 eps), from the two values (floats or tensors)."""
    return (plus - minus) / (2 * eps)
