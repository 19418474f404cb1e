"""SimpleRNN, LSTM and GRU trained by hand-written backpropagation through time.

One time loop serves the three cells. The layer's op does, for a sequence
x (batch B, time T, features D), kernel W (D, k n), recurrent kernel U (n, k n)
(k gates of n units each):

Forward
    for t = 0 .. T-1:                   tf.while_loop
        XP_t = x_t @ W + b_in           (B, k n)
        REC_t = h_{t-1} @ U (+ b_rec)   (B, k n)
        states_t, saved_t = cell.step_forward(XP_t, REC_t, states_{t-1})
        masked steps keep states_{t-1}; the output repeats the previous one
        (or is zero with zero_output_for_mask), as Keras's backend.rnn does.

Backward, with dY the upstream gradient and dstates_T that of the final states
    for t = T-1 .. 0:                   tf.while_loop
        dXP_t, dREC_t, dstates_{t-1} = cell.step_backward(saved_t, dstates_t)
        dstates_{t-1} += dREC_t @ U^T   (the recurrent path; U^T and W^T are
        dx_t = dXP_t @ W^T              (B, D)    transposed once, before the loop)
        dW += x_t^T dXP_t               (D, k n)
        dU += h_{t-1}^T dREC_t          (n, k n)
        db += sum over B of dXP_t (and of dREC_t for GRU's recurrent bias)

Saved for the backward, and their memory (n units, k gates, per step B x n
each unless said): the input x (B, T, D); h at every step, (T + 1) x B x n,
for dU; and what each cell's step saves: SimpleRNN its output (h itself),
LSTM c_{t-1}, c_t (c at every step, (T + 1) x B x n) and i, f, g, o (f(c_t)
is recomputed in the backward), GRU h_{t-1} (h itself), z, r, hh (and u_h
with reset_after); plus the outputs when a mask makes them differ from h.
In all about B x T x n x (k + 2) numbers.
Everything is kept by reference in TensorArrays (no copies); a saved state
comes from that state's history, written once a step. In a graph the
backward pops each list from its end as it walks back, so a step's memory is
freed once its backward is done.

NOTE: why every product is inside the loops. Batching the input projection
XP = x W for all steps into one product before the loop, and dx, dW, dU into
products after it, was tried and measured (benchmarks/recurrent.py): it
holds XP (T x B x k n) beside the growing saved tensors in the forward, and
dXP with its stacked copy at the backward's end, which took the step's peak
memory above Keras's for GRU (about 7.4 MiB against 6.4) and left SimpleRNN
and LSTM with less than a tenth to spare, while its speed gain at these
sizes (D = 28) was within the measurement's noise. With every product
inside the loops the step peak is below Keras's for all three with one
TensorFlow thread (see the README's results; with two, Keras's own peak
swings widely between runs).

Dropout is Keras's: masks drawn once per call from the layer's seed generator
and reused at every step. LSTM and GRU with recurrent_dropout use one mask per
gate (Keras's "implementation 1"), otherwise one shared input mask. The
backward applies the same masks.
"""

import keras
import tensorflow as tf

from keras_bp import activations
from keras_bp.core import manual_gradient
from keras_bp.layers._validation import check_input_rank, check_positive_int, check_rate

# --- gate matrix products with optional dropout masks -------------------------
#
# Every product in the loop is `x @ K`, x (B, in), where the gate block g of K
# (columns g n .. (g + 1) n) may see its own dropout mask of x. mask None: no
# dropout; rank 2 (B, in): one mask for all gates; rank 3 (k, B, in): one per
# gate. Shapes other than the batch are static (the weights are built), so
# the reshapes below need no shape ops in the loop.


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


def _slice_mask(mask, start, stop):
    """The gate masks start..stop of a per-gate mask (shared masks pass as they are)."""
    if mask is None or mask.shape.rank == 2:
        return mask
    return mask[start:stop]


# --- the cells: one step forward and one step backward each --------------------
#
# prepare(U) -> what the steps use of the recurrent kernel (U, or its blocks),
#     computed once outside the loop (then per_gate_once for per-gate masks).
# step_forward(xp, states, U, b_rec, rmask) -> (new_states, saved)
#     xp: the step's input projection x_t @ W + b_in (B, k n); states: tuple of
#     (B, n), the output h first. saved: a tuple of tensors for the backward,
#     including the previous states the backward needs.
# step_backward(saved, h_prev, dstates, U_t, rmask) -> (dxp, dU_t, db_rec_t, dstates_prev)
#     dstates: dL/d(states after the step); h_prev: the output before it;
#     U_t: what prepare(U) gives, each part transposed (for gate_matmul_dx).
#     dxp: dL/d(the step's input projection) (B, k n); dU_t: the step's term
#     of dL/dU (n, k n); db_rec_t: its term of the recurrent bias's gradient
#     (GRU with reset_after), else None.
# bias_parts(b) -> (b_in, b_rec); bias_grad(dxp_sum, db_rec) -> db (db_rec None
#     unless the cell has a recurrent bias).


class _SimpleRNNCell:
    """h_t = f(a),  a = x_t W + b + h_{t-1} U.

        da = dh * f'(a)                   (B, n)   f's backward
        dxp = da
        dU_t = h_{t-1}^T da               (n, n)
        dh_{t-1} = da @ U^T               (B, n)
    """

    gates = 1
    num_states = 1

    def __init__(self, activation):
        self.activation = activation

    def step_forward(self, xp, states, U, b_rec, rmask):
        (h_prev,) = states
        h, act_saved = self.activation.forward(xp + gate_matmul(h_prev, U, rmask))
        return (h,), (act_saved,)

    def prepare(self, U):
        return U

    def step_backward(self, saved, h_prev, dstates, U_t, rmask):
        (act_saved,) = saved
        (dh,) = dstates
        da = self.activation.backward(act_saved, dh)
        return da, gate_matmul_dkernel(h_prev, da, rmask), None, (gate_matmul_dx(da, U_t, rmask),)

    def bias_parts(self, bias):
        return bias, None

    def bias_grad(self, dxp_sum, db_rec):
        return dxp_sum


class _LSTMCell:
    """Gates in Keras's order i, f, c, o; sigma = recurrent_activation, f = activation.

        z = x_t W + b + h_{t-1} U = [z_i, z_f, z_c, z_o]      (B, 4n)
        i = sigma(z_i)  f = sigma(z_f)  g = f(z_c)  o = sigma(z_o)
        c_t = f * c_{t-1} + i * g
        h_t = o * f(c_t)

    With dh, dc = dL/dh_t, dL/dc_t (dc carried from step t+1):
        do = dh * f(c_t)                  dc += f'(c_t) (dh * o)
        di = dc * g    df = dc * c_{t-1}    dg = dc * i
        dz = [sigma'(di), sigma'(df), f'(dg), sigma'(do)]   (B, 4n)
        dxp = dz      dU_t = h_{t-1}^T dz                   (n, 4n)
        dc_{t-1} = dc * f
        dh_{t-1} = dz @ U^T                                 (B, n)
    """

    gates = 4
    num_states = 2

    def __init__(self, activation, recurrent_activation):
        self.activation = activation
        self.recurrent_activation = recurrent_activation

    def step_forward(self, xp, states, U, b_rec, rmask):
        h_prev, c_prev = states
        z_i, z_f, z_c, z_o = tf.split(xp + gate_matmul(h_prev, U, rmask), 4, axis=-1)
        sigma, act = self.recurrent_activation, self.activation
        i, i_saved = sigma.forward(z_i)
        f, f_saved = sigma.forward(z_f)
        g, g_saved = act.forward(z_c)
        o, o_saved = sigma.forward(z_o)
        c = f * c_prev + i * g
        tanh_c, _ = act.forward(c)
        h = o * tanh_c
        # f(c_t) is recomputed in the backward rather than saved: c_t is kept
        # anyway (as the next step's c_{t-1}), so this saves B x n per step.
        return (h, c), (c_prev, c, i, f, g, o, i_saved, f_saved, g_saved, o_saved)

    def prepare(self, U):
        return U

    def step_backward(self, saved, h_prev, dstates, U_t, rmask):
        c_prev, c, i, f, g, o, i_saved, f_saved, g_saved, o_saved = saved
        dh, dc = dstates
        sigma, act = self.recurrent_activation, self.activation
        tanh_c, c_saved = act.forward(c)
        dc = dc + act.backward(c_saved, dh * o)
        dz = tf.concat(
            [
                sigma.backward(i_saved, dc * g),
                sigma.backward(f_saved, dc * c_prev),
                act.backward(g_saved, dc * i),
                sigma.backward(o_saved, dh * tanh_c),
            ],
            axis=-1,
        )
        return dz, gate_matmul_dkernel(h_prev, dz, rmask), None, (gate_matmul_dx(dz, U_t, rmask), dc * f)

    def bias_parts(self, bias):
        return bias, None

    def bias_grad(self, dxp_sum, db_rec):
        return dxp_sum


class _GRUCell:
    """Gates in Keras's order z, r, h; sigma = recurrent_activation, f = activation.

        [x_z, x_r, x_h] = x_t W + b_in                       (B, 3n)
    reset_after=True (bias (2, 3n): b_in, b_rec):
        [u_z, u_r, u_h] = h_{t-1} U + b_rec
        z = sigma(x_z + u_z)   r = sigma(x_r + u_r)   hh = f(x_h + r * u_h)
    reset_after=False (bias (3n,)):
        [u_z, u_r] = h_{t-1} U_zr
        z = sigma(x_z + u_z)   r = sigma(x_r + u_r)   hh = f(x_h + (r * h_{t-1}) U_h)
    both:
        h_t = z * h_{t-1} + (1 - z) * hh

    With dh = dL/dh_t:
        da_h = f'(dh * (1 - z))    da_z = sigma'(dh * (h_{t-1} - hh))
        reset_after=True:   da_r = sigma'(da_h * u_h)
            dXP = [da_z, da_r, da_h]   dREC = [da_z, da_r, da_h * r]
            dU_t = h_{t-1}^T dREC      db_rec_t = sum over B of dREC
            dh_{t-1} = dh * z + dREC @ U^T
        reset_after=False:  d(r h) = da_h @ U_h^T   da_r = sigma'(d(r h) * h_{t-1})
            dXP = [da_z, da_r, da_h]
            dU_t = [h_{t-1}^T [da_z, da_r],  (r * h_{t-1})^T da_h]
            dh_{t-1} = dh * z + d(r h) * r + [da_z, da_r] @ U_zr^T
    """

    gates = 3
    num_states = 1

    def __init__(self, activation, recurrent_activation, reset_after):
        self.activation = activation
        self.recurrent_activation = recurrent_activation
        self.reset_after = reset_after

    def prepare(self, U):
        if self.reset_after:
            return U
        n = U.shape[0]
        return U[:, : 2 * n], U[:, 2 * n :]

    def step_forward(self, xp, states, U, b_rec, rmask):
        (h_prev,) = states
        sigma, act = self.recurrent_activation, self.activation
        x_z, x_r, x_h = tf.split(xp, 3, axis=-1)
        if self.reset_after:
            u = gate_matmul(h_prev, U, rmask)
            if b_rec is not None:
                u = u + b_rec
            u_z, u_r, u_h = tf.split(u, 3, axis=-1)
        else:
            U_zr, U_h = U
            u_z, u_r = tf.split(gate_matmul(h_prev, U_zr, _slice_mask(rmask, 0, 2)), 2, axis=-1)
        z, z_saved = sigma.forward(x_z + u_z)
        r, r_saved = sigma.forward(x_r + u_r)
        if self.reset_after:
            hh, hh_saved = act.forward(x_h + r * u_h)
            saved = (h_prev, z, r, hh, u_h, z_saved, r_saved, hh_saved)
        else:
            u_h = gate_matmul(r * h_prev, U_h, _slice_mask(rmask, 2, 3))
            hh, hh_saved = act.forward(x_h + u_h)
            saved = (h_prev, z, r, hh, z_saved, r_saved, hh_saved)
        h = z * h_prev + (1 - z) * hh
        return (h,), saved

    def step_backward(self, saved, h_prev, dstates, U_t, rmask):
        sigma, act = self.recurrent_activation, self.activation
        (dh,) = dstates
        if self.reset_after:
            _, z, r, hh, u_h, z_saved, r_saved, hh_saved = saved
            da_h = act.backward(hh_saved, dh * (1 - z))
            da_z = sigma.backward(z_saved, dh * (h_prev - hh))
            da_r = sigma.backward(r_saved, da_h * u_h)
            dxp = tf.concat([da_z, da_r, da_h], axis=-1)
            drec = tf.concat([da_z, da_r, da_h * r], axis=-1)
            dh_prev = dh * z + gate_matmul_dx(drec, U_t, rmask)
            return dxp, gate_matmul_dkernel(h_prev, drec, rmask), tf.reduce_sum(drec, axis=0), (dh_prev,)
        _, z, r, hh, z_saved, r_saved, hh_saved = saved
        U_zr_t, U_h_t = U_t
        da_h = act.backward(hh_saved, dh * (1 - z))
        da_z = sigma.backward(z_saved, dh * (h_prev - hh))
        d_rh = gate_matmul_dx(da_h, U_h_t, _slice_mask(rmask, 2, 3))
        da_r = sigma.backward(r_saved, d_rh * h_prev)
        da_zr = tf.concat([da_z, da_r], axis=-1)
        dh_prev = dh * z + d_rh * r + gate_matmul_dx(da_zr, U_zr_t, _slice_mask(rmask, 0, 2))
        dxp = tf.concat([da_zr, da_h], axis=-1)
        du = tf.concat(
            [
                gate_matmul_dkernel(h_prev, da_zr, _slice_mask(rmask, 0, 2)),
                gate_matmul_dkernel(r * h_prev, da_h, _slice_mask(rmask, 2, 3)),
            ],
            axis=-1,
        )
        return dxp, du, None, (dh_prev,)

    def bias_parts(self, bias):
        if self.reset_after:
            return bias[0], bias[1]
        return bias, None

    def bias_grad(self, dxp_sum, db_rec):
        if self.reset_after:
            return tf.stack([dxp_sum, db_rec])
        return dxp_sum


# --- saved tensors through TensorArrays ---------------------------------------


def _unique(tensors):
    """Distinct tensors of a flat list and where each entry sits among them.

    NOTE: an activation that saves its output (sigmoid, tanh) hands back the
    same tensor as the gate value; keeping it once halves what the loop stores.
    """
    unique, where = [], []
    for t in tensors:
        for j, u in enumerate(unique):
            if u is t:
                where.append(j)
                break
        else:
            where.append(len(unique))
            unique.append(t)
    return unique, where


def _flatten_saved(saved, prev_states, new_states):
    """The distinct tensors a step saves, less the states around it, and where each entry sits.

    `where` has, per saved entry, its index among the distinct tensors, or
    ("prev", k) / ("new", k) for state k before / after the step: the loop
    keeps each such state in a list of its own, so it is not stored twice.
    NOTE: SimpleRNN with tanh saves its output h_t, GRU h_{t-1}, LSTM c_{t-1}
    and c_t: a write and a read less per step for each.
    """

    def state_of(t):
        for k, (prev, new) in enumerate(zip(prev_states, new_states)):
            if t is prev:
                return ("prev", k)
            if t is new:
                return ("new", k)
        return None

    flat = [t for t in tf.nest.flatten(saved) if t is not None]
    states = [state_of(t) for t in flat]
    unique, where_others = _unique([t for t, k in zip(flat, states) if k is None])
    where_others = iter(where_others)
    return unique, [k if k is not None else next(where_others) for k in states]


def _kept_states(where):
    """The states whose history the loop keeps: h (for dU) and any that a step saves."""
    return sorted({0} | {j[1] for j in where if isinstance(j, tuple)})


def _pack_saved(structure, unique, where, prev_states, new_states):
    """Rebuilds a step's `saved` structure from its distinct tensors and the states around it."""

    def value(j):
        if isinstance(j, tuple):
            return (prev_states if j[0] == "prev" else new_states)[j[1]]
        return unique[j]

    values = iter(value(j) for j in where)
    leaves = [None if leaf is None else next(values) for leaf in tf.nest.flatten(structure)]
    return tf.nest.pack_sequence_as(structure, leaves)


def _time_major(x):
    return tf.transpose(x, [1, 0] + list(range(2, x.shape.rank)))


def _step_input(x, t, steps, go_backwards):
    """The input of loop step t, (B, D), read from x (B, T, D) as it is.

    NOTE: one gather per step. x is the op's input, held by its producer
    anyway: a time-major copy would add B x T x D to the forward's memory
    and, kept for the backward, to its peak.
    """
    return tf.gather(x, steps - 1 - t if go_backwards else t, axis=1)


# --- the shared BPTT loop ----------------------------------------------------


class _Layout:
    """Which optional tensors an op receives, in order after (x, kernel, recurrent_kernel)."""

    def __init__(self, num_states, use_bias, has_mask, has_dropout, has_recurrent_dropout):
        self.num_states = num_states
        self.use_bias = use_bias
        self.has_mask = has_mask
        self.has_dropout = has_dropout
        self.has_recurrent_dropout = has_recurrent_dropout

    def unpack(self, inputs):
        x, kernel, recurrent_kernel, *rest = inputs
        rest = list(rest)
        bias = rest.pop(0) if self.use_bias else None
        mask = rest.pop(0) if self.has_mask else None
        dmask = rest.pop(0) if self.has_dropout else None
        rmask = rest.pop(0) if self.has_recurrent_dropout else None
        return x, kernel, recurrent_kernel, bias, mask, dmask, rmask, tuple(rest)


def rnn_forward(cell, layout, options, *inputs):
    """The forward of the op: runs `cell` over the sequence (see the module docstring).

    Inputs (positional): x (B, T, D), kernel, recurrent_kernel, [bias], [mask (B, T)],
    [input dropout mask], [recurrent dropout mask], initial states (B, n) each.
    Outputs: (y, *final_states); y is (B, T, n) with return_sequences, else (B, n).
    """
    go_backwards, return_sequences, zero_output_for_mask = options
    x, kernel, recurrent_kernel, bias, mask, dmask, rmask, initial_states = layout.unpack(inputs)
    b_in, b_rec = cell.bias_parts(bias) if bias is not None else (None, None)

    steps = x.shape[1] if x.shape[1] is not None else tf.shape(x)[1]
    kernel_in = per_gate_once(kernel, dmask, cell.gates)
    # Each part of U is (n, g n): g gates.
    recurrent = tf.nest.map_structure(
        lambda u: per_gate_once(u, rmask, u.shape[-1] // u.shape[0]), cell.prepare(recurrent_kernel)
    )

    def project(t):
        """The step's input projection x_t W + b_in (B, k n)."""
        xp = gate_matmul(_step_input(x, t, steps, go_backwards), kernel_in, dmask)
        return tf.nn.bias_add(xp, b_in) if b_in is not None else xp

    step_mask = None
    if mask is not None:
        step_mask = _time_major(tf.expand_dims(tf.cast(mask, tf.bool), -1))
        if go_backwards:
            step_mask = tf.reverse(step_mask, [0])
        mask_ta = tf.TensorArray(tf.bool, size=steps).unstack(step_mask)


    def step(t, states, prev_output):
        new_states, saved = cell.step_forward(project(t), states, recurrent, b_rec, rmask)
        output = new_states[0]
        if mask is not None:
            keep = mask_ta.read(t)
            new_states = tuple(tf.where(keep, s, p) for s, p in zip(new_states, states))
            # Keras repeats the previous output at masked steps (zeros when
            # zero_output_for_mask); the state carries through unchanged.
            fill = tf.zeros_like(output) if zero_output_for_mask else prev_output
            output = tf.where(keep, output, fill)
        return new_states, saved, output

    # One zeros tensor for both of LSTM's initial states would make the saved
    # c_{t-1} look like h_{t-1} to _flatten_saved: keep them apart.
    initial_states = tuple(
        tf.identity(s) if any(s is other for other in initial_states[:k]) else s
        for k, s in enumerate(initial_states)
    )
    # The first step runs outside the loop: it tells the loop what a step saves.
    states0, saved0, output0 = step(0, initial_states, tf.zeros_like(initial_states[0]))
    unique0, where = _flatten_saved(saved0, initial_states, states0)
    kept = _kept_states(where)

    def array(first, size):
        # clear_after_read=False: eagerly, the backward reads each history
        # entry twice (as one step's previous state and the step before's new one).
        return tf.TensorArray(first.dtype, size=size, element_shape=first.shape, clear_after_read=False).write(0, first)

    # history[k][t + 1] is state kept[k] after step t and history[k][0] the
    # initial one (references, no copies). h's history gives each step's
    # h_{t-1} for dU.
    history = tuple(array(initial_states[k], steps + 1).write(1, states0[k]) for k in kept)
    saved_tas = tuple(array(u, steps) for u in unique0)
    # With a mask the outputs differ from h (repeated or zeroed): keep them apart.
    output_ta = (array(output0, steps),) if mask is not None else ()

    def body(t, states, prev_output, history, saved_tas, output_ta):
        new_states, saved, output = step(t, states, prev_output)
        unique, step_where = _flatten_saved(saved, states, new_states)
        if step_where != where:
            raise AssertionError(f"{type(cell).__name__}: the steps save differently ({step_where} != {where})")
        history = tuple(ta.write(t + 1, new_states[k]) for ta, k in zip(history, kept))
        saved_tas = tuple(ta.write(t, u) for ta, u in zip(saved_tas, unique))
        output_ta = tuple(ta.write(t, output) for ta in output_ta)
        return t + 1, new_states, output, history, saved_tas, output_ta

    _, final_states, last_output, history, saved_tas, output_ta = tf.while_loop(
        lambda t, *_: t < steps,
        body,
        (tf.constant(1), states0, output0, history, saved_tas, output_ta),
        maximum_iterations=steps - 1 if isinstance(steps, int) else None,
    )

    if return_sequences:
        y = _time_major(output_ta[0].stack() if output_ta else history[0].gather(tf.range(1, steps + 1)))
    else:
        y = last_output
    # NOTE: the saved arrays go to the backward as they are: stacking them
    # here and unstacking them there would copy every saved tensor twice.
    saved = (x, kernel, recurrent_kernel, step_mask, dmask, rmask, history, saved_tas, saved0, where)
    return (y, *final_states), saved


def rnn_backward(cell, layout, options, saved, dy, *dfinal_states):
    """Backpropagation through time (see the module docstring for the formulas)."""
    go_backwards, return_sequences, zero_output_for_mask = options
    x, kernel, recurrent_kernel, step_mask, dmask, rmask, history, saved_tas, structure, where = saved
    kept = _kept_states(where)
    steps = x.shape[1] if x.shape[1] is not None else tf.shape(x)[1]
    # The kernels transposed once, for the products by K^T at every step (gate_matmul_dx).
    recurrent_t = tf.nest.map_structure(tf.transpose, cell.prepare(recurrent_kernel))
    kernel_t = tf.transpose(kernel)

    if step_mask is not None:
        mask_ta = tf.TensorArray(tf.bool, size=steps).unstack(step_mask)
    dx_ta = tf.TensorArray(x.dtype, size=steps, element_shape=(x.shape[0], x.shape[2]))

    # In a graph, each saved list (and each state's history) is popped from
    # its end as the loop walks back, so the memory of step t is freed once
    # step t is done (as TF's own gradient accumulators do). A history has one
    # entry more than the steps (the initial state first): the final states
    # are popped first, and each state popped as step t's previous one is
    # carried on as step t-1's new one.
    popped = not tf.executing_eagerly()
    arrays = saved_tas + history
    lists = tuple(ta.flow if popped else tf.zeros(()) for ta in arrays)

    def pop(handle, ta):
        handle, value = tf.raw_ops.TensorListPopBack(
            input_handle=handle, element_shape=tf.constant(-1), element_dtype=ta.dtype
        )
        value.set_shape(ta.element_shape)
        return handle, value

    def as_states(kept_values):
        """The kept states' values at their places among all the states (others None)."""
        states = [None] * cell.num_states
        for k, value in zip(kept, kept_values):
            states[k] = value
        return tuple(states)

    n_saved = len(saved_tas)
    if popped:
        last = [pop(handle, ta) for handle, ta in zip(lists[n_saved:], history)]
        lists = lists[:n_saved] + tuple(handle for handle, _ in last)
        final_kept = tuple(value for _, value in last)
    else:
        final_kept = tuple(ta.read(steps) for ta in history)

    def read_saved(t, lists, new_kept):
        """Step t's saved structure, the kept states before it, and the lists left."""
        if not popped:
            prev_kept = tuple(ta.read(t) for ta in history)
            values = [ta.read(t) for ta in saved_tas]
            new_kept = tuple(ta.read(t + 1) for ta in history)
        else:
            values, new_lists = [], []
            for ta, handle in zip(arrays, lists):
                handle, value = pop(handle, ta)
                values.append(value)
                new_lists.append(handle)
            lists = tuple(new_lists)
            values, prev_kept = values[:n_saved], tuple(values[n_saved:])
        step_saved = _pack_saved(structure, values, where, as_states(prev_kept), as_states(new_kept))
        return step_saved, prev_kept, lists

    def body(t, dstates, doutput, dx_ta, grads, lists, new_kept):
        # dstates: dL/d(states after step t); doutput: dL/d(output_t) carried
        # from later steps, which only a mask creates (a masked step repeats it).
        # new_kept: the kept states after step t.
        step_saved, prev_kept, lists = read_saved(t, lists, new_kept)
        h_prev = prev_kept[0]
        dy_t = tf.gather(dy, t, axis=1) if return_sequences else None
        if step_mask is not None:
            # A masked step copied the states and (unless zero_output_for_mask)
            # the previous output: their gradients pass straight through it.
            dout = doutput + dy_t if return_sequences else doutput
            keep = tf.cast(mask_ta.read(t), x.dtype)
            dnew = (keep * (dstates[0] + dout),) + tuple(keep * d for d in dstates[1:])
            passed = tuple((1 - keep) * d for d in dstates)
            doutput = tf.zeros_like(dout) if zero_output_for_mask else (1 - keep) * dout
        else:
            dh = dstates[0] + dy_t if return_sequences else dstates[0]
            dnew = (dh,) + tuple(dstates[1:])
        dxp, du_t, db_rec_t, dprev = cell.step_backward(step_saved, h_prev, dnew, recurrent_t, rmask)
        if step_mask is not None:
            dprev = tuple(d + p for d, p in zip(dprev, passed))
        dw, du, db_in, db_rec = grads
        grads = (
            dw + gate_matmul_dkernel(_step_input(x, t, steps, go_backwards), dxp, dmask),
            du + du_t,
            db_in + tf.reduce_sum(dxp, axis=0),
            db_rec if db_rec_t is None else db_rec + db_rec_t,
        )
        return t - 1, dprev, doutput, dx_ta.write(t, gate_matmul_dx(dxp, kernel_t, dmask)), grads, lists, prev_kept

    dfinal_states = list(dfinal_states)
    if step_mask is None:
        if not return_sequences:
            # The last output is the final h.
            dfinal_states[0] = dfinal_states[0] + dy
        doutput = tf.zeros((), x.dtype)  # unused without a mask
    else:
        doutput = tf.zeros_like(dfinal_states[0]) if return_sequences else dy
    # The weight gradients add up inside the loop, and dx is written step by
    # step: collecting dXP (T x B x k n) for products after the loop would
    # hold it twice (the list and its stacked copy) at the backward's end,
    # more memory than Keras's loop takes.
    # NOTE: the bias terms are summed over the batch at each step. Adding
    # up (B, k n) rows and summing them once after the loop saves an op per
    # step but holds two more B x k n tensors through the loop.
    bias_size = [kernel.shape[-1]]
    grads = (tf.zeros_like(kernel), tf.zeros_like(recurrent_kernel), tf.zeros(bias_size, x.dtype),
             tf.zeros(bias_size, x.dtype))
    _, dinitial, _, dx_ta, grads, _, _ = tf.while_loop(
        lambda t, *_: t >= 0,
        body,
        (steps - 1, tuple(dfinal_states), doutput, dx_ta, grads, lists, final_kept),
        maximum_iterations=steps if isinstance(steps, int) else None,
        # NOTE: two iterations in flight let one step's products by W, U
        # overlap the next step's; the default ten held up to ten steps'
        # temporaries at once, which put the step's peak memory above Keras's
        # in some runs (LSTM 7.4 against 7.1 MiB) for no measurable speed.
        parallel_iterations=2,
    )
    dw, du, db_in, db_rec = grads
    dx = dx_ta.stack()  # (T, B, D)
    if go_backwards:
        dx = tf.reverse(dx, [0])
    grads = [_time_major(dx), dw, du]
    if layout.use_bias:
        grads.append(cell.bias_grad(db_in, db_rec))
    grads += [None] * (layout.has_mask + layout.has_dropout + layout.has_recurrent_dropout)
    return (*grads, *dinitial)


def _rnn_op(cell, layout, options):
    def forward(*inputs):
        return rnn_forward(cell, layout, options, *inputs)

    def backward(saved, dy, *dstates):
        return rnn_backward(cell, layout, options, saved, dy, *dstates)

    return manual_gradient(forward, backward, name=type(cell).__name__.strip("_").lower())


# --- the layers ----------------------------------------------------------------


class _RNN(keras.layers.Layer):
    """What SimpleRNN, LSTM and GRU share: arguments, weights, states, dropout masks, call.

    Subclasses set `_gates`, build their cell in `__init__` and add their own
    arguments to `get_config`.
    """

    _gates = 1
    # Keras's SimpleRNN drops every input at dropout=1.0; LSTM and GRU then skip dropout.
    _drops_at_rate_one = False

    def __init__(
        self,
        units,
        cell,
        activation,
        use_bias,
        kernel_initializer,
        recurrent_initializer,
        bias_initializer,
        kernel_regularizer,
        recurrent_regularizer,
        bias_regularizer,
        activity_regularizer,
        kernel_constraint,
        recurrent_constraint,
        bias_constraint,
        dropout,
        recurrent_dropout,
        seed,
        return_sequences,
        return_state,
        go_backwards,
        stateful,
        unroll,
        zero_output_for_mask=False,
        **kwargs,
    ):
        kwargs.pop("implementation", None)  # Keras's choice of kernel split; one math here.
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.units = units
        self.cell = cell
        self.activation = activation
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = keras.regularizers.get(recurrent_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.recurrent_constraint = keras.constraints.get(recurrent_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.dropout = check_rate("dropout", dropout)
        self.recurrent_dropout = check_rate("recurrent_dropout", recurrent_dropout)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self.unroll = bool(unroll)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.supports_masking = True
        self._ops = {}
        # Keras keeps the state variables of a stateful RNN out of the layer's
        # weights (get_weights, checkpoints); so do we.
        object.__setattr__(self, "_state_variables", None)

    @property
    def states(self):
        return self._state_variables

    def _bias_initializer(self):
        return self.bias_initializer

    def _bias_shape(self):
        return (self._gates * self.units,)

    def build(self, sequences_shape, initial_state_shape=None):
        check_input_rank(self.__class__.__name__, "sequences", sequences_shape, rank=3)
        input_dim = sequences_shape[-1]
        if input_dim is None:
            raise ValueError(
                f"The last dimension of the input to {self.__class__.__name__} must "
                f"be known, received: sequences shape {tuple(sequences_shape)}"
            )
        self.kernel = self.add_weight(
            name="kernel",
            shape=(input_dim, self._gates * self.units),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel",
            shape=(self.units, self._gates * self.units),
            initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=self._bias_shape(),
                initializer=self._bias_initializer(),
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        else:
            self.bias = None
        if self.stateful:
            batch_size = sequences_shape[0]
            if batch_size is None:
                raise ValueError(
                    "A stateful RNN needs a static batch size (pass batch_size= to "
                    f"keras.Input), received: sequences shape {tuple(sequences_shape)}"
                )
            object.__setattr__(
                self,
                "_state_variables",
                [
                    keras.Variable(
                        keras.ops.zeros((batch_size, self.units)),
                        trainable=False,
                        dtype=self.variable_dtype,
                        name="rnn_state",
                    )
                    for _ in range(self.cell.num_states)
                ],
            )

    def reset_state(self):
        if self._state_variables is not None:
            for v in self._state_variables:
                v.assign(keras.ops.zeros_like(v.value))

    def reset_states(self):
        self.reset_state()

    def _dropout_masks(self, sequences, training):
        """Keras's masks: drawn once per call, the input's first, one per gate with recurrent_dropout."""
        per_gate = self._gates if (self._gates > 1 and self.recurrent_dropout > 0) else None

        def draw(like, rate):
            if not training or rate == 0 or (rate == 1 and not self._drops_at_rate_one):
                return None
            ones = tf.ones_like(like)
            if per_gate is None:
                return keras.random.dropout(ones, rate, seed=self.seed_generator)
            return tf.stack([keras.random.dropout(ones, rate, seed=self.seed_generator) for _ in range(per_gate)])

        dmask = draw(sequences[:, 0, :], self.dropout)
        rmask = draw(tf.zeros((tf.shape(sequences)[0], self.units), sequences.dtype), self.recurrent_dropout)
        return dmask, rmask

    def _initial_states(self, sequences, initial_state):
        if initial_state is None:
            if self.stateful:
                return [tf.cast(tf.convert_to_tensor(v), self.compute_dtype) for v in self._state_variables]
            zeros = tf.zeros((tf.shape(sequences)[0], self.units), self.compute_dtype)
            return [zeros] * self.cell.num_states
        states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
        if len(states) != self.cell.num_states:
            raise ValueError(
                f"{self.__class__.__name__} expects {self.cell.num_states} initial state "
                f"tensor(s), received: initial_state with {len(states)} tensor(s)"
            )
        states = [tf.cast(tf.convert_to_tensor(s), self.compute_dtype) for s in states]
        for s in states:
            if s.shape.rank != 2 or (s.shape[-1] is not None and s.shape[-1] != self.units):
                raise ValueError(
                    f"Each initial state of {self.__class__.__name__} must have shape "
                    f"(batch_size, {self.units}), received: initial_state with shape {tuple(s.shape)}"
                )
        return states

    def _check_mask(self, sequences, mask):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        if mask is None:
            return None
        mask = tf.convert_to_tensor(mask)
        expected = sequences.shape[:2]
        if mask.shape.rank != 2 or not mask.shape.is_compatible_with(expected):
            raise ValueError(
                f"{self.__class__.__name__} expects a mask of shape (batch_size, timesteps) "
                f"= {tuple(expected)}, received: mask with shape {tuple(mask.shape)}"
            )
        return tf.cast(mask, tf.bool)

    def _op(self, layout, options):
        key = (layout, options)
        if key not in self._ops:
            self._ops[key] = _rnn_op(self.cell, _Layout(*layout), options)
        return self._ops[key]

    def call(self, sequences, initial_state=None, mask=None, training=False):
        check_input_rank(self.__class__.__name__, "sequences", sequences.shape, rank=3)
        mask = self._check_mask(sequences, mask)
        states = self._initial_states(sequences, initial_state)
        dmask, rmask = self._dropout_masks(sequences, bool(training))
        # Trap 1: read the weights here, outside the custom gradient.
        tensors = [sequences, tf.convert_to_tensor(self.kernel), tf.convert_to_tensor(self.recurrent_kernel)]
        optional = [tf.convert_to_tensor(self.bias) if self.use_bias else None, mask, dmask, rmask]
        tensors += [t for t in optional if t is not None]
        layout = (self.cell.num_states,) + tuple(t is not None for t in optional)
        options = (self.go_backwards, self.return_sequences, self.zero_output_for_mask)
        output, *final_states = self._op(layout, options)(*tensors, *states)
        if self.stateful:
            for variable, state in zip(self._state_variables, final_states):
                variable.assign(tf.cast(state, variable.dtype))
        if self.return_state:
            return (output, *final_states)
        return output

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        batch_size = sequences_shape[0]
        if self.return_sequences:
            output_shape = (batch_size, sequences_shape[1], self.units)
        else:
            output_shape = (batch_size, self.units)
        if self.return_state:
            return (output_shape,) + ((batch_size, self.units),) * self.cell.num_states
        return output_shape

    def compute_mask(self, _, mask):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        output_mask = mask if self.return_sequences else None
        if self.return_state:
            return [output_mask] + [None] * self.cell.num_states
        return output_mask

    def get_config(self):
        base_config = super().get_config()
        config = {
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "recurrent_regularizer": keras.regularizers.serialize(self.recurrent_regularizer),
            "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            "activity_regularizer": keras.regularizers.serialize(self.activity_regularizer),
            "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
            "recurrent_constraint": keras.constraints.serialize(self.recurrent_constraint),
            "bias_constraint": keras.constraints.serialize(self.bias_constraint),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "go_backwards": self.go_backwards,
            "stateful": self.stateful,
            "unroll": self.unroll,
            "zero_output_for_mask": self.zero_output_for_mask,
        }
        return {**base_config, **config}


_SHARED_ARGS_DOC = """
        use_bias: Whether the layer uses a bias vector.
        kernel_initializer: Initializer for `kernel` (the input projection).
        recurrent_initializer: Initializer for `recurrent_kernel`.
        bias_initializer: Initializer for the bias vector.
        kernel_regularizer, recurrent_regularizer, bias_regularizer: Regularizers
            of the three weights.
        activity_regularizer: Regularizer applied to the output.
        kernel_constraint, recurrent_constraint, bias_constraint: Constraints of
            the three weights.
        dropout: Float in [0, 1], fraction of the input units to drop.
        recurrent_dropout: Float in [0, 1], fraction of the recurrent state to drop.
        seed: Random seed for dropout.
        return_sequences: Return the whole output sequence, not only the last output.
        return_state: Also return the final state(s).
        go_backwards: Process the sequence backwards and return the reversed sequence.
        stateful: Use each batch's final states as the next batch's initial states
            (needs a static batch size).
        unroll: Accepted for compatibility; the loop is always a `tf.while_loop`.
        zero_output_for_mask: Zero outputs at masked steps instead of repeating
            the previous output (set by `keras.layers.Bidirectional`).

    Call arguments:
        sequences: `(batch, timesteps, features)`.
        initial_state: Initial state tensor(s), `(batch, units)` each.
        mask: Boolean `(batch, timesteps)`; False steps are skipped: the state
            carries through unchanged and the previous output is repeated.
        training: Whether dropout applies.

    Output shape:
        `(batch, timesteps, units)` with `return_sequences`, else `(batch, units)`;
        followed by the final state(s) with `return_state`.
"""


@keras.saving.register_keras_serializable(package="keras_bp")
class SimpleRNN(_RNN):
    """Fully connected RNN, `h_t = activation(x_t W + b + h_{t-1} U)`, trained by hand-written BPTT.

    Drop-in for `keras.layers.SimpleRNN`: same arguments, weights `kernel`
    (input_dim, units), `recurrent_kernel` (units, units), `bias` (units,),
    and outputs. The step and its backward are in `_SimpleRNNCell`, the time
    loop in `rnn_forward` / `rnn_backward`.

    Args:
        units: Positive integer, dimensionality of the output space.
        activation: Activation name (default "tanh"; None means linear).
    """

    def __init__(
        self,
        units,
        activation="tanh",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        seed=None,
        **kwargs,
    ):
        units = check_positive_int("units", units)
        activation = activations.get(activation)
        super().__init__(
            units, _SimpleRNNCell(activation), activation, use_bias,
            kernel_initializer, recurrent_initializer, bias_initializer,
            kernel_regularizer, recurrent_regularizer, bias_regularizer, activity_regularizer,
            kernel_constraint, recurrent_constraint, bias_constraint,
            dropout, recurrent_dropout, seed,
            return_sequences, return_state, go_backwards, stateful, unroll, **kwargs,
        )  # fmt: skip

    _gates = 1
    _drops_at_rate_one = True


@keras.saving.register_keras_serializable(package="keras_bp")
class LSTM(_RNN):
    """Long Short-Term Memory layer (Hochreiter 1997) trained by hand-written BPTT.

    Drop-in for `keras.layers.LSTM`: same arguments, weights `kernel`
    (input_dim, 4 units), `recurrent_kernel` (units, 4 units), `bias`
    (4 units,) in Keras's gate order i, f, c, o, and outputs. Never uses cuDNN
    (`use_cudnn` is accepted and ignored). The step and its backward are in
    `_LSTMCell`, the time loop in `rnn_forward` / `rnn_backward`.

    Args:
        units: Positive integer, dimensionality of the output space.
        activation: Activation of the candidate and the cell output (default "tanh").
        recurrent_activation: Activation of the gates (default "sigmoid").
        unit_forget_bias: Add 1 to the forget gate's bias at initialization.
    """

    _gates = 4

    def __init__(
        self,
        units,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        unit_forget_bias=True,
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        use_cudnn="auto",
        **kwargs,
    ):
        units = check_positive_int("units", units)
        if use_cudnn not in ("auto", True, False):
            raise ValueError(f"use_cudnn must be 'auto', True or False, received: use_cudnn={use_cudnn!r}")
        activation = activations.get(activation)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.unit_forget_bias = bool(unit_forget_bias)
        self.use_cudnn = use_cudnn
        super().__init__(
            units, _LSTMCell(activation, self.recurrent_activation), activation, use_bias,
            kernel_initializer, recurrent_initializer, bias_initializer,
            kernel_regularizer, recurrent_regularizer, bias_regularizer, activity_regularizer,
            kernel_constraint, recurrent_constraint, bias_constraint,
            dropout, recurrent_dropout, seed,
            return_sequences, return_state, go_backwards, stateful, unroll, **kwargs,
        )  # fmt: skip

    def _bias_initializer(self):
        if not self.unit_forget_bias:
            return self.bias_initializer

        # Keras's unit_forget_bias: the forget block (i, f, c, o) starts at one.
        def initializer(_, *args, **kwargs):
            n = self.units
            return keras.ops.concatenate(
                [
                    self.bias_initializer((n,), *args, **kwargs),
                    keras.initializers.get("ones")((n,), *args, **kwargs),
                    self.bias_initializer((2 * n,), *args, **kwargs),
                ]
            )

        return initializer

    def get_config(self):
        config = super().get_config()
        config["recurrent_activation"] = activations.serialize(self.recurrent_activation)
        config["unit_forget_bias"] = self.unit_forget_bias
        config["use_cudnn"] = self.use_cudnn
        return config


@keras.saving.register_keras_serializable(package="keras_bp")
class GRU(_RNN):
    """Gated Recurrent Unit (Cho et al. 2014) trained by hand-written BPTT.

    Drop-in for `keras.layers.GRU`: same arguments, weights `kernel`
    (input_dim, 3 units), `recurrent_kernel` (units, 3 units), `bias` in
    Keras's gate order z, r, h, shaped (2, 3 units) with `reset_after=True`
    (input and recurrent biases) and (3 units,) without, and outputs. Never
    uses cuDNN. The step and its backward are in `_GRUCell`.

    Args:
        units: Positive integer, dimensionality of the output space.
        activation: Activation of the candidate (default "tanh").
        recurrent_activation: Activation of the gates (default "sigmoid").
        reset_after: Apply the reset gate after the recurrent product (True,
            Keras's default and cuDNN's convention) or before it.
    """

    _gates = 3

    def __init__(
        self,
        units,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        reset_after=True,
        use_cudnn="auto",
        **kwargs,
    ):
        units = check_positive_int("units", units)
        if use_cudnn not in ("auto", True, False):
            raise ValueError(f"use_cudnn must be 'auto', True or False, received: use_cudnn={use_cudnn!r}")
        activation = activations.get(activation)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.reset_after = bool(reset_after)
        self.use_cudnn = use_cudnn
        cell = _GRUCell(activation, self.recurrent_activation, self.reset_after)
        super().__init__(
            units, cell, activation, use_bias,
            kernel_initializer, recurrent_initializer, bias_initializer,
            kernel_regularizer, recurrent_regularizer, bias_regularizer, activity_regularizer,
            kernel_constraint, recurrent_constraint, bias_constraint,
            dropout, recurrent_dropout, seed,
            return_sequences, return_state, go_backwards, stateful, unroll, **kwargs,
        )  # fmt: skip

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def get_config(self):
        config = super().get_config()
        config["recurrent_activation"] = activations.serialize(self.recurrent_activation)
        config["reset_after"] = self.reset_after
        config["use_cudnn"] = self.use_cudnn
        return config


for _layer in (SimpleRNN, LSTM, GRU):
    _layer.__doc__ += "\n    Args (shared):" + _SHARED_ARGS_DOC
