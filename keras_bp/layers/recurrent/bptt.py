"""Backpropagation through time: one cell's steps run over a sequence, forward, then back.

The op that `rnn_op(cell, options)` makes does, for a sequence x (batch B, time
T, features D), kernel W (D, k n), recurrent kernel U (n, k n) (k gates of n
units each; the cell's interface is in cell.py):

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

Dropout masks (the input's, the recurrent state's; None without dropout) are
drawn by the layer once per call and applied at every step, in the backward too.

Saved for the backward (`Saved`), and their memory (n units, k gates, per step
B x n each unless said): the input x (B, T, D); h at every step, (T + 1) x B x n,
for dU; and what each cell's step saves: SimpleRNN its output (h itself),
LSTM c_{t-1}, c_t (c at every step, (T + 1) x B x n) and i, f, g, o (f(c_t)
is recomputed in the backward), GRU h_{t-1} (h itself), z, r, hh (and u_h
with reset_after). In all about B x T x n x (k + 2) numbers, kept by
reference in storage.py's TensorArrays.

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
"""

from typing import NamedTuple, Optional

import tensorflow as tf

from keras_bp.core import manual_gradient
from keras_bp.layers.recurrent.gates import gate_matmul, gate_matmul_dkernel, gate_matmul_dx, per_gate_once
from keras_bp.layers.recurrent.storage import StepArrays, StepStorage, apart


class LoopOptions(NamedTuple):
    """The layer's options that change the loop (static: one op per combination)."""

    go_backwards: bool
    return_sequences: bool
    zero_output_for_mask: bool


class Saved(NamedTuple):
    """What rnn_forward saves for rnn_backward."""

    x: tf.Tensor  # (B, T, D), the op's input as it is (held by its producer anyway)
    kernel: tf.Tensor  # W (D, k n)
    recurrent_kernel: tf.Tensor  # U (n, k n)
    has_bias: bool
    step_mask: Optional[tf.Tensor]  # (T, B, 1) bool, in loop order; None without a mask
    dmask: Optional[tf.Tensor]  # input dropout mask, (B, D) or per gate (k, B, D)
    rmask: Optional[tf.Tensor]  # recurrent dropout mask, (B, n) or per gate (k, B, n)
    storage: StepStorage  # the layout of what each step saved
    arrays: StepArrays  # what each step saved


def _time_major(x):
    return tf.transpose(x, [1, 0] + list(range(2, x.shape.rank)))


def _steps(x):
    return x.shape[1] if x.shape[1] is not None else tf.shape(x)[1]


def _step_input(x, t, steps, go_backwards):
    """The input of loop step t, (B, D), read from x (B, T, D) as it is.

    NOTE: one gather per step. x is the op's input, held by its producer
    anyway: a time-major copy would add B x T x D to the forward's memory
    and, kept for the backward, to its peak.
    """
    return tf.gather(x, steps - 1 - t if go_backwards else t, axis=1)


def rnn_forward(cell, options, x, kernel, recurrent_kernel, bias, mask, dmask, rmask, *initial_states):
    """The forward of the op: runs `cell` over the sequence (see the module docstring).

    Inputs (positional; None where absent): x (B, T, D), kernel, recurrent_kernel,
    bias, mask (B, T), input dropout mask, recurrent dropout mask, then one
    initial state (B, n) per state of the cell (None: zeros).
    Outputs: (y, *final_states); y is (B, T, n) with return_sequences, else (B, n).
    """
    go_backwards, return_sequences, zero_output_for_mask = options
    b_in, b_rec = cell.bias_parts(bias) if bias is not None else (None, None)
    steps = _steps(x)
    # An absent initial state starts from zeros, as in Keras; one tensor per state.
    initial_states = tuple(
        tf.zeros((tf.shape(x)[0], recurrent_kernel.shape[0]), x.dtype) if s is None else s for s in initial_states
    )

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

    initial_states = apart(initial_states)
    # The first step runs outside the loop: it tells the storage what a step saves.
    states0, saved0, output0 = step(0, initial_states, tf.zeros_like(initial_states[0]))
    storage, arrays = StepStorage.start(steps, initial_states, states0, saved0)
    # With a mask the outputs differ from h (repeated or zeroed): keep them apart.
    if mask is not None:
        output_ta = tf.TensorArray(output0.dtype, size=steps, element_shape=output0.shape, clear_after_read=False)
        output_ta = (output_ta.write(0, output0),)
    else:
        output_ta = ()

    def body(t, states, prev_output, arrays, output_ta):
        new_states, saved, output = step(t, states, prev_output)
        arrays = storage.record(arrays, t, states, new_states, saved)
        output_ta = tuple(ta.write(t, output) for ta in output_ta)
        return t + 1, new_states, output, arrays, output_ta

    _, final_states, last_output, arrays, output_ta = tf.while_loop(
        lambda t, *_: t < steps,
        body,
        (tf.constant(1), states0, output0, arrays, output_ta),
        maximum_iterations=steps - 1 if isinstance(steps, int) else None,
    )

    if return_sequences:
        y = _time_major(output_ta[0].stack() if output_ta else storage.h_sequence(arrays, steps))
    else:
        y = last_output
    # NOTE: the saved arrays go to the backward as they are: stacking them
    # here and unstacking them there would copy every saved tensor twice.
    saved = Saved(x, kernel, recurrent_kernel, bias is not None, step_mask, dmask, rmask, storage, arrays)
    return (y, *final_states), saved


def rnn_backward(cell, options, saved, dy, *dfinal_states):
    """Backpropagation through time (see the module docstring for the formulas).

    Returns one gradient per input of rnn_forward, None for the absent ones and
    for the masks.
    """
    go_backwards, return_sequences, zero_output_for_mask = options
    x, kernel, step_mask, dmask, rmask = saved.x, saved.kernel, saved.step_mask, saved.dmask, saved.rmask
    storage, arrays = saved.storage, saved.arrays
    steps = _steps(x)
    # The kernels transposed once, for the products by K^T at every step (gate_matmul_dx).
    recurrent_t = tf.nest.map_structure(tf.transpose, cell.prepare(saved.recurrent_kernel))
    kernel_t = tf.transpose(kernel)

    if step_mask is not None:
        mask_ta = tf.TensorArray(tf.bool, size=steps).unstack(step_mask)
    dx_ta = tf.TensorArray(x.dtype, size=steps, element_shape=(x.shape[0], x.shape[2]))

    def body(t, dstates, doutput, dx_ta, grads, cursor):
        # dstates: dL/d(states after step t); doutput: dL/d(output_t) carried
        # from later steps, which only a mask creates (a masked step repeats it).
        step_saved, h_prev, cursor = storage.read(arrays, cursor, t)
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
        return t - 1, dprev, doutput, dx_ta.write(t, gate_matmul_dx(dxp, kernel_t, dmask)), grads, cursor

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
    grads = (tf.zeros_like(kernel), tf.zeros_like(saved.recurrent_kernel), tf.zeros(bias_size, x.dtype),
             tf.zeros(bias_size, x.dtype))
    _, dinitial, _, dx_ta, grads, _ = tf.while_loop(
        lambda t, *_: t >= 0,
        body,
        (steps - 1, tuple(dfinal_states), doutput, dx_ta, grads, storage.rewind(arrays, steps)),
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
    db = cell.bias_grad(db_in, db_rec) if saved.has_bias else None
    # No gradient for the boolean mask and the dropout masks (constants of the call).
    return (_time_major(dx), dw, du, db, None, None, None, *dinitial)


def rnn_op(cell, options):
    """The manual-gradient op of `cell`'s loop with `options` (a LoopOptions), called as rnn_forward is."""

    def forward(*inputs):
        return rnn_forward(cell, options, *inputs)

    def backward(saved, dy, *dstates):
        return rnn_backward(cell, options, saved, dy, *dstates)

    return manual_gradient(forward, backward, name=type(cell).__name__.lower())
