"""Per-variable comparison statistics of two lists of gradients (manual against reference).

With m and r one variable's manual and reference gradients and d = m - r:

    max abs error   max |d|
    rel error       ||d|| / ||r||                        (2-norms)
    cosine          <m, r> / (||m|| ||r||)
    scale           ||r|| over all variables together: the model's gradient
                    norm, the scale the absolute tolerances are relative to

Non-finite entries (trap 8 in docs/traps.md: `check_numerics` is blind under
XLA, so these are plain reductions, which XLA keeps) make the sums
non-finite; only then are the entries counted, and the statistics taken over
the entries finite in both, on the host.
"""

import functools
from typing import NamedTuple

import numpy as np
import tensorflow as tf

__all__ = ["Comparison", "compare", "compare_sums"]


class Comparison(NamedTuple):
    """One comparison of two gradient lists; each field but `scale` has one entry per variable."""

    max_abs_error: np.ndarray
    rel_error: np.ndarray
    cosine: np.ndarray
    norm_error: np.ndarray  # ||d||
    norm_reference: np.ndarray  # ||r||
    nonfinite: np.ndarray  # [n, 3]: non-finite in m, in r, finite in only one
    scale: float  # ||r|| of all variables together

    @property
    def nonfinite_mismatch(self):
        return self.nonfinite[:, 2] > 0


def compare(manual, reference):
    """`Comparison` of two lists of host arrays (any float dtype), in float64."""
    sums, maxes = _host_sums(manual, reference)
    if np.all(np.isfinite(sums)) and np.all(np.isfinite(maxes)):
        return compare_sums(sums, maxes)
    # Some gradient has a NaN or Inf: the rare case, counted entry by entry.
    masked_m, masked_r, counts = _masked(manual, reference)
    return compare_sums(*_host_sums(masked_m, masked_r), nonfinite=counts)


def compare_sums(sums, maxes, nonfinite=None):
    """`Comparison` from the sums of `_compare_all` or `_host_sums`."""
    max_abs, rel, cosine, _ = _statistics(sums, maxes)
    if nonfinite is None:
        nonfinite = np.zeros([len(sums), 3], np.int64)
    return Comparison(
        max_abs_error=max_abs,
        rel_error=rel,
        cosine=cosine,
        norm_error=np.sqrt(sums[:, 0]),
        norm_reference=np.sqrt(sums[:, 1]),
        nonfinite=np.asarray(nonfinite),
        scale=float(np.sqrt(np.sum(sums[:, 1]))),
    )


def distance(a, b):
    """||a - b|| per variable, over the entries finite in both (host arrays)."""
    out = []
    for x, y in zip(a, b):
        x, y = np.ravel(x).astype(np.float64), np.ravel(y).astype(np.float64)
        d = np.where(np.isfinite(x) & np.isfinite(y), x - y, 0.0)
        out.append(np.sqrt(np.einsum("i,i->", d, d)))
    return np.array(out, np.float64)


def _compare_all(manual, reference):
    """Per-variable sums and maxima of the two gradients, in float64.

    With m and r one variable's manual and reference gradients and d = m - r,
    returns `sums` [n, 4]: ||d||^2, ||r||^2, ||m||^2, <m, r> for each of the
    n variables, and `maxes` [n, 2]: max |d|, max |r|. `_statistics` turns
    them into errors and cosines on the host. `_host_sums` is the same in
    NumPy, for variables in host memory.

    NOTE: plain reductions of each variable's products. Measured on the MNIST
    MLP's four variables (2 cores): 0.4 ms, against 1.3 to 1.5 ms for one
    Gram matrix of the rows (d, r, m) per variable (a 3 x N by N x 3 product
    is a slow shape for the CPU's matrix kernels), and segment sums over the
    whole vector were slower still (a single-threaded scatter).

    Non-finite entries make the sums non-finite; only then does `compare`
    count them and compare the finite entries, on the host.
    """
    sums, maxes = [], []
    for m, r in zip(manual, reference):
        d = m - r
        sums.append(
            tf.stack([tf.reduce_sum(d * d), tf.reduce_sum(r * r), tf.reduce_sum(m * m), tf.reduce_sum(m * r)])
        )
        # An empty variable's maximum is the lowest float; the floor keeps it at 0.
        maxes.append(tf.maximum(tf.stack([tf.reduce_max(tf.abs(d)), tf.reduce_max(tf.abs(r))]), 0.0))
    return dict(sums=tf.stack(sums), maxes=tf.stack(maxes))


def _statistics(sums, maxes):
    """Per variable: max abs error, rel error, cosine, max |g_ref| (from `_compare_all`)."""
    norm_d, norm_r, norm_m = (np.sqrt(sums[:, i]) for i in range(3))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(norm_r > 0, norm_d / norm_r, np.where(norm_d > 0, np.inf, 0.0))
        denom = norm_m * norm_r
        cosine = np.where(
            denom > 0,
            sums[:, 3] / denom,
            np.where((norm_m == 0) & (norm_r == 0), 1.0, 0.0),
        )
    return maxes[:, 0], rel, cosine, maxes[:, 1]


def _host_sums(manual, reference):
    """`_compare_all` in NumPy: `sums` [n, 4] and `maxes` [n, 2] of float64 arrays.

    NOTE: the dot products are `einsum`, not `@`. NumPy's `@` on long
    vectors calls OpenBLAS, whose worker threads spin for a while after each
    call and take a core from the training that resumes meanwhile: measured
    on the MNIST MLP (2 cores), 1.3 s more CPU time per 1-epoch `fit` with
    19 audits than with `einsum` (means of six runs each, 8.1 against
    6.8 s). `einsum` sums on the calling thread.
    """
    dot = functools.partial(np.einsum, "i,i->")
    sums, maxes = [], []
    for m, r in zip(manual, reference):
        m, r = np.ravel(m), np.ravel(r)
        d = m - r
        sums.append([dot(d, d), dot(r, r), dot(m, m), dot(m, r)])
        maxes.append([np.max(np.abs(d), initial=0.0), np.max(np.abs(r), initial=0.0)])
    return np.array(sums, np.float64).reshape(-1, 4), np.array(maxes, np.float64).reshape(-1, 2)


def _masked(manual, reference):
    """Both gradients with every entry not finite in both set to 0, and non-finite counts [n, 3].

    The counts per variable: non-finite entries of the manual gradient, of
    the reference, and places where only one of the two is finite.
    """
    masked_m, masked_r, counts = [], [], []
    for m, r in zip(manual, reference):
        m, r = np.ravel(m), np.ravel(r)
        finite_m, finite_r = np.isfinite(m), np.isfinite(r)
        both = finite_m & finite_r
        masked_m.append(np.where(both, m, 0.0))
        masked_r.append(np.where(both, r, 0.0))
        counts.append([np.sum(~finite_m), np.sum(~finite_r), np.sum(finite_m != finite_r)])
    return masked_m, masked_r, np.array(counts, np.int64).reshape(-1, 3)


def _statistics_masked(manual, reference):
    """`_statistics` over the entries finite in both, plus the non-finite counts of `_masked`."""
    masked_m, masked_r, counts = _masked(manual, reference)
    return _statistics(*_host_sums(masked_m, masked_r)), counts
