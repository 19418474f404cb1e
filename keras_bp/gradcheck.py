"""check_gradients: a gradcheck for any layer or function of tensors.

For a random upstream gradient u (one per output), the scalar

    L = sum_k <u_k, y_k>

has gradients dL/dx = J^T u: exactly what a backward pass computes. The check
compares the gradients that the target's backward passes give (the manual
gradients) with two references:

1. autodiff: TensorFlow's gradient of the same forward (`keras_bp.autodiff()`),
   in the target's own dtype;
2. central finite differences in float64 (a layer is rebuilt in float64 from its
   config, with its weights copied): for a tensor t of up to
   `max_jacobian_size` elements, every column of the Jacobian,
   (y(t + eps e_i) - y(t - eps e_i)) / 2 eps, gives dL/dt_i = <u, column_i>;
   for a larger tensor, `directions` random unit directions v give
   (L(t + eps v) - L(t - eps v)) / 2 eps against <dL/dt, v>, so the cost stays
   bounded.

It also checks that there is one gradient per tensor with the tensor's shape
and dtype (and that every trainable weight gets one), that a zero upstream
gives zero gradients, and that two backward runs agree.

An element passes when |manual - reference| <= atol + rtol * |reference|.
Relative errors are reported as |manual - reference| / max(|manual|,
|reference|, atol / rtol).

Non-trainable state (Dropout's seed, BatchNormalization's moving statistics)
is restored before every evaluation, so each sees the same random masks and
the check leaves the layer as it found it.
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from keras_bp._finite_differences import central_difference
from keras_bp._state import restore, snapshot
from keras_bp._tolerances import CHECK_GRADIENTS, by_dtype
from keras_bp.core import autodiff

__all__ = ["check_gradients", "GradientCheckError", "GradientCheckResult"]

class GradientCheckError(AssertionError):
    """Raised by `check_gradients(..., raise_on_failure=True)`; its message is the table."""


@dataclasses.dataclass
class _Row:
    tensor: str
    reference: str
    max_abs_error: float
    max_rel_error: float
    worst_index: str
    manual: float
    expected: float
    passed: bool
    note: str = ""


@dataclasses.dataclass
class GradientCheckResult:
    """What `check_gradients` found.

    Attributes:
        passed: True when every check passed.
        max_rel_error: the largest relative error over all tensors and references.
        rows: one row per tensor and reference (and per failed structural check).
        target: a name for what was checked.
    """

    passed: bool
    max_rel_error: float
    rows: list
    target: str = ""

    def __bool__(self):
        return self.passed

    def failures(self):
        return [row for row in self.rows if not row.passed]

    def __str__(self):
        header = ("tensor", "reference", "max abs err", "max rel err", "worst index", "manual", "expected", "status")
        lines = [header]
        for r in self.rows:
            lines.append(
                (
                    r.tensor,
                    r.reference,
                    f"{r.max_abs_error:.3g}",
                    f"{r.max_rel_error:.3g}",
                    r.worst_index,
                    f"{r.manual:.6g}",
                    f"{r.expected:.6g}",
                    ("ok" if r.passed else "FAIL") + (f" ({r.note})" if r.note else ""),
                )
            )
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        text = [
            f"check_gradients({self.target}): {'passed' if self.passed else 'FAILED'}, "
            f"max relative error {self.max_rel_error:.3g}"
        ]
        for i, line in enumerate(lines):
            text.append("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
            if i == 0:
                text.append("  ".join("-" * w for w in widths))
        return "\n".join(text)


def check_gradients(
    target,
    *inputs,
    eps=None,
    rtol=None,
    atol=None,
    training=None,
    directions=6,
    max_jacobian_size=128,
    seed=0,
    raise_on_failure=False,
):
    """Checks a target's gradients against autodiff and float64 finite differences.

    Args:
        target: a `keras.layers.Layer` (keras_bp's, Keras's, or your own) or a
            function of tensors returning a tensor or a list of tensors.
        *inputs: the inputs, passed positionally (arrays or tensors). Integer
            inputs (indices) are passed through and not differentiated.
        eps: finite-difference step (default 1e-6 in float64).
        rtol, atol: tolerances, for both references (defaults by dtype).
        training: passed to a layer's call as `training=` when not None.
        directions: random directions for tensors too large for a full Jacobian.
        max_jacobian_size: tensors with at most this many elements get the full
            Jacobian by finite differences.
        seed: seed of the random upstream gradients and directions.
        raise_on_failure: raise `GradientCheckError` with the table on failure.

    Returns:
        A `GradientCheckResult`.
    """
    rng = np.random.RandomState(seed)
    inputs = [tf.convert_to_tensor(x) for x in inputs]
    if not inputs:
        raise ValueError("check_gradients needs at least one input, received none.")
    call_kwargs = {} if training is None else {"training": training}

    if isinstance(target, keras.layers.Layer):
        name = target.name
        subject = _LayerSubject(target, inputs, call_kwargs)
        subject64 = _LayerSubject(_float64_clone(target, inputs, call_kwargs), _to64(inputs), call_kwargs)
    elif callable(target):
        name = getattr(target, "__name__", "function")
        subject = _FunctionSubject(target, inputs)
        subject64 = _FunctionSubject(target, _to64(inputs))
    else:
        raise TypeError(f"check_gradients: target must be a Layer or a callable, received: {target!r}")

    rows = []
    dtype = subject.dtype_name()
    own, exact = by_dtype(CHECK_GRADIENTS, dtype), CHECK_GRADIENTS["float64"]
    ad_rtol, ad_atol = own.autodiff_rtol, own.autodiff_atol
    fd_eps, fd_rtol, fd_atol = exact.fd_eps, exact.fd_rtol, exact.fd_atol
    ad_rtol, fd_rtol = (rtol, rtol) if rtol is not None else (ad_rtol, fd_rtol)
    ad_atol, fd_atol = (atol, atol) if atol is not None else (ad_atol, fd_atol)
    fd_eps = eps if eps is not None else fd_eps

    # 1. Manual against autodiff, in the target's own dtype.
    upstream = subject.random_upstream(rng)
    manual = subject.gradients(upstream)
    rows += _structure_rows(subject, manual)
    with autodiff():
        reference = subject.gradients(upstream)
    for tensor_name, g, ref in zip(subject.names, manual, reference):
        if g is not None and ref is not None:
            rows.append(_compare(tensor_name, "autodiff", g, ref, ad_rtol, ad_atol))
    again = subject.gradients(upstream)
    for tensor_name, g, g2 in zip(subject.names, manual, again):
        if g is not None and g2 is not None and not np.array_equal(_np(g), _np(g2)):
            row = _compare(tensor_name, "second backward run", g2, g, ad_rtol, ad_atol)
            row.note = "two backward runs differ"
            rows.append(row)
    zero = subject.gradients([tf.zeros_like(u) for u in upstream])
    for tensor_name, g in zip(subject.names, zero):
        if g is not None and np.any(_np(g) != 0):
            dense = _np(g)
            index = np.unravel_index(np.argmax(np.abs(dense)), dense.shape)
            rows.append(
                _Row(tensor_name, "zero upstream", float(np.max(np.abs(dense))), float("inf"),
                     str(tuple(int(i) for i in index)), float(dense[index]), 0.0, False,
                     "a zero upstream must give a zero gradient")
            )

    # 2. Manual against central finite differences, in float64.
    upstream64 = [tf.cast(u, tf.float64) for u in upstream]
    manual64 = subject64.gradients(upstream64)
    for k, (tensor_name, g) in enumerate(zip(subject64.names, manual64)):
        if g is None:
            continue
        g = _np(g)
        if g.size <= max_jacobian_size:
            fd = subject64.finite_difference_gradient(k, upstream64, fd_eps)
            rows.append(_compare(tensor_name, "finite differences", g, fd, fd_rtol, fd_atol))
        else:
            projected, expected = [], []
            for _ in range(directions):
                v = rng.standard_normal(g.shape)
                v /= np.linalg.norm(v)
                projected.append(float(np.sum(g * v)))
                expected.append(subject64.directional_derivative(k, v, upstream64, fd_eps))
            row = _compare(tensor_name, f"finite differences ({directions} directions)",
                           np.array(projected), np.array(expected), fd_rtol, fd_atol)
            row.worst_index = f"direction {row.worst_index.strip('(),')}"
            rows.append(row)

    finite = [r.max_rel_error for r in rows if np.isfinite(r.max_rel_error)]
    result = GradientCheckResult(
        passed=all(r.passed for r in rows),
        max_rel_error=max(finite) if finite else 0.0,
        rows=rows,
        target=name,
    )
    if raise_on_failure and not result.passed:
        raise GradientCheckError(str(result))
    return result


def _structure_rows(subject, grads):
    """One gradient per differentiable tensor, with its shape and dtype."""
    rows = []
    for tensor_name, tensor, g, required in zip(subject.names, subject.tensors(), grads, subject.required):
        problem = None
        if g is None:
            if required:
                problem = "no gradient (None): the optimizer would skip this weight"
        elif tuple(g.shape) != tuple(tensor.shape):
            problem = f"gradient shape {tuple(g.shape)} != tensor shape {tuple(tensor.shape)}"
        elif g.dtype != tensor.dtype:
            problem = f"gradient dtype {g.dtype.name} != tensor dtype {tensor.dtype.name}"
        if problem:
            rows.append(_Row(tensor_name, "structure", float("nan"), float("inf"), "-", float("nan"),
                             float("nan"), False, problem))
    return rows


def _compare(tensor_name, reference, manual, expected, rtol, atol):
    a = _np(manual).astype(np.float64)
    b = _np(expected).astype(np.float64)
    err = np.abs(a - b)
    if err.size == 0:
        return _Row(tensor_name, reference, 0.0, 0.0, "-", 0.0, 0.0, True)
    rel = err / np.maximum(np.maximum(np.abs(a), np.abs(b)), atol / rtol)
    passed = bool(np.all(err <= atol + rtol * np.abs(b)))
    nonfinite = ~np.isfinite(a) | ~np.isfinite(b)
    if nonfinite.any():
        passed = False
        rel = np.where(nonfinite, np.inf, rel)
    worst = np.unravel_index(int(np.argmax(rel)), rel.shape)
    return _Row(
        tensor_name,
        reference,
        float(np.nanmax(err)),
        float(np.max(rel)),
        str(tuple(int(i) for i in worst)),
        float(a[worst]),
        float(b[worst]),
        passed,
    )


def _np(x):
    if isinstance(x, tf.IndexedSlices):
        x = tf.convert_to_tensor(x)
    return np.asarray(x.numpy() if hasattr(x, "numpy") else x)


def _to64(inputs):
    return [tf.cast(x, tf.float64) if x.dtype.is_floating else x for x in inputs]


def _float64_clone(layer, inputs, call_kwargs):
    """The same layer in float64, with its weights (and state) copied."""
    if not layer.built:
        layer(*inputs, **call_kwargs)
    config = layer.get_config()
    config["dtype"] = "float64"
    try:
        clone = layer.__class__.from_config(config)
    except Exception as error:  # a user's layer without a usable config
        raise ValueError(
            f"check_gradients rebuilds a layer in float64 from its config, but "
            f"{layer.__class__.__name__}.from_config(get_config()) failed ({error}). "
            "Give the layer a get_config that mirrors __init__, or check a "
            "function of tensors instead."
        ) from error
    clone(*_to64(inputs), **call_kwargs)
    for source, destination in zip(layer.variables, clone.variables):
        value = source.numpy()
        destination.assign(value.astype(destination.dtype) if destination.dtype != value.dtype else value)
    return clone


class _Subject:
    """A differentiable thing: named tensors, a forward, and L = sum <u, y>."""

    names: list
    required: list

    def dtype_name(self):
        for t in self.tensors():
            if t.dtype.is_floating:
                return t.dtype.name
        return "float32"

    def random_upstream(self, rng):
        outputs = tf.nest.flatten(self.forward())
        return [
            tf.cast(rng.standard_normal(tuple(y.shape)), y.dtype) if y.dtype.is_floating else None
            for y in outputs
        ]

    def loss(self, upstream):
        outputs = tf.nest.flatten(self.forward())
        total = tf.constant(0.0, tf.float64)
        for y, u in zip(outputs, upstream):
            if u is not None:
                total += tf.reduce_sum(tf.cast(y, tf.float64) * tf.cast(u, tf.float64))
        return total

    def gradients(self, upstream):
        with tf.GradientTape() as tape:
            for t in _FunctionSubject.tensors(self):
                tape.watch(t)
            outputs = tf.nest.flatten(self.forward())
        grads = tape.gradient(
            [y for y, u in zip(outputs, upstream) if u is not None],
            self.watched(),
            output_gradients=[tf.cast(u, y.dtype) for y, u in zip(outputs, upstream) if u is not None],
        )
        return list(grads)

    def finite_difference_gradient(self, k, upstream, eps):
        base = _np(self.tensors()[k]).astype(np.float64)
        grad = np.zeros_like(base)
        for index in np.ndindex(base.shape):
            step = np.zeros_like(base)
            step[index] = eps
            grad[index] = self._central(k, base, step, upstream, eps)
        return grad

    def directional_derivative(self, k, v, upstream, eps):
        base = _np(self.tensors()[k]).astype(np.float64)
        return self._central(k, base, eps * v, upstream, eps)

    def _central(self, k, base, step, upstream, eps):
        self.set_value(k, base + step)
        plus = float(self.loss(upstream))
        self.set_value(k, base - step)
        minus = float(self.loss(upstream))
        self.set_value(k, base)
        return central_difference(plus, minus, eps)


class _FunctionSubject(_Subject):
    def __init__(self, fn, inputs):
        self.fn = fn
        self.inputs = list(inputs)
        self.differentiable = [i for i, x in enumerate(self.inputs) if x.dtype.is_floating]
        self.names = [f"input_{i}" for i in self.differentiable]
        self.required = [False] * len(self.differentiable)

    def tensors(self):
        return [self.inputs[i] for i in self.differentiable]

    def watched(self):
        return self.tensors()

    def forward(self):
        return self.fn(*self.inputs)

    def set_value(self, k, value):
        i = self.differentiable[k]
        self.inputs[i] = tf.constant(value, self.inputs[i].dtype)


class _LayerSubject(_FunctionSubject):
    def __init__(self, layer, inputs, call_kwargs):
        super().__init__(lambda *xs: layer(*xs, **call_kwargs), inputs)
        self.layer = layer
        if not layer.built:
            layer(*inputs, **call_kwargs)
        self.weights = list(layer.trainable_weights)
        self.names += [w.path for w in self.weights]
        self.required += [True] * len(self.weights)
        # Seed states and moving statistics: restored before every forward.
        self.state = snapshot(layer.non_trainable_variables)

    def tensors(self):
        return super().tensors() + [tf.convert_to_tensor(w) for w in self.weights]

    def watched(self):
        return super().tensors() + self.weights

    def forward(self):
        restore(self.state)
        outputs = super().forward()
        return outputs

    def gradients(self, upstream):
        grads = super().gradients(upstream)
        restore(self.state)
        return grads

    def set_value(self, k, value):
        n = len(self.differentiable)
        if k < n:
            super().set_value(k, value)
        else:
            w = self.weights[k - n]
            w.assign(value.astype(w.dtype))
