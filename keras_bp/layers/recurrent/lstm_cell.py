"""LSTM's step (Hochreiter 1997, Keras's gate order i, f, c, o), forward with its backward beneath.

The interface the time loop (bptt.py) calls is in cell.py.
"""

import tensorflow as tf

from keras_bp.layers.recurrent.cell import Cell
from keras_bp.layers.recurrent.gates import gate_matmul, gate_matmul_dkernel, gate_matmul_dx


class LSTMCell(Cell):
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
