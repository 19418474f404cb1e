"""Gate products `x @ K` where each gate's block of K may see its own dropout mask of x.

Every product in the time loop is `x @ K`, x (B, in), K (in, k n) with k gates
of n units; gate g's block K_g is columns g n .. (g + 1) n. The dropout mask of
x is None (no dropout), rank 2 (B, in): one mask for all gates, or rank 3
(k, B, in): one per gate (Keras's recurrent_dropout for LSTM and GRU). Shapes
other than the batch are static (the weights are built), so the reshapes below
need no shape ops in the loop.

    y = gate_matmul(x, K, mask)             y_g = (x * mask_g) @ K_g          (B, k n)
    dx = gate_matmul_dx(dy, K^T, mask)      dx = sum_g (dy_g @ K_g^T) * mask_g (B, in)
    dK = gate_matmul_dkernel(x, dy, mask)   dK_g = (x * mask_g)^T dy_g         (in, k n)
"""

import tensorflow as tf


def _per_gate(kernel, gates):
    """(in, k n) -> (k, in, n): the gate blocks of a kernel side by side."""
    return tf.transpose(tf.reshape(kernel, (kernel.shape[0], gates, -1)), (1, 0, 2))


def _gates_last(y):
    """(k, B, n) -> (B, k n)."""
    return tf.reshape(tf.transpose(y, (1, 0, 2)), (-1, y.shape[0] * y.shape[2]))


def _gates_first(dy, gates):
    """(B, k n) -> (k, B, n), the inverse of _gates_last."""
    return tf.transpose(tf.reshape(dy, (-1, gates, dy.shape[-1] // gates)), (1, 0, 2))


def per_gate_once(kernel, mask, gates):
    """`kernel` as gate_matmul takes it with `mask`, made once outside the loop.

    With a per-gate mask, the gate blocks (k, in, n) (a transposed copy, which
    would otherwise be made at every step); else the kernel as it is.
    """
    if mask is None or mask.shape.rank == 2:
        return kernel
    return _per_gate(kernel, gates)


def slice_mask(mask, start, stop):
    """The gate masks start..stop of a per-gate mask (shared masks pass as they are)."""
    if mask is None or mask.shape.rank == 2:
        return mask
    return mask[start:stop]


def gate_matmul(x, kernel, mask):
    """y = concat over gates g of (x * mask_g) @ K_g     (B, k n).

    kernel: K (in, k n), or with a per-gate mask its blocks from per_gate_once.
    """
    if mask is None:
        return tf.matmul(x, kernel)
    if mask.shape.rank == 2:
        return tf.matmul(x * mask, kernel)
    # (k, B, in) @ (k, in, n) -> (k, B, n)
    return _gates_last(tf.matmul(x * mask, kernel))


def gate_matmul_dx(dy, kernel_t, mask):
    """dL/dx = sum over g of (dy_g @ K_g^T) * mask_g     (B, in).

    kernel_t is K^T (k n, in), transposed once outside the loop. NOTE: on CPU
    a product with `transpose_b=True` took about twice as long as the same
    product with the operand transposed beforehand (LSTM's dh_{t-1} = dz U^T
    at B = 64, n = 128: 210 against 110 us), and it runs at every step.
    """
    if mask is None:
        return tf.matmul(dy, kernel_t)
    if mask.shape.rank == 2:
        return tf.matmul(dy, kernel_t) * mask
    gates = mask.shape[0]
    # (k, B, n) @ (k, n, in): the rows of K^T are the gate blocks K_g^T stacked.
    per_gate_t = tf.reshape(kernel_t, (gates, -1, kernel_t.shape[-1]))
    dxg = tf.matmul(_gates_first(dy, gates), per_gate_t)
    return tf.reduce_sum(dxg * mask, axis=0)


def gate_matmul_dkernel(x, dy, mask):
    """dL/dK_g = (x * mask_g)^T dy_g     (in, k n)."""
    if mask is None:
        return tf.matmul(x, dy, transpose_a=True)
    if mask.shape.rank == 2:
        return tf.matmul(x * mask, dy, transpose_a=True)
    # (k, B, in)^T (k, B, n) -> (k, in, n) -> (in, k n)
    dk = tf.matmul(x * mask, _gates_first(dy, mask.shape[0]), transpose_a=True)
    return tf.reshape(tf.transpose(dk, (1, 0, 2)), (dk.shape[1], -1))
