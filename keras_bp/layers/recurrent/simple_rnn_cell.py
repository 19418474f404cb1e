"""SimpleRNN's step, `h_t = f(x_t W + b + h_{t-1} U)`, forward with its backward beneath.

The interface the time loop (bptt.py) calls is in cell.py.
"""

from keras_bp.layers.recurrent.cell import Cell
from keras_bp.layers.recurrent.gates import gate_matmul, gate_matmul_dkernel, gate_matmul_dx


class SimpleRNNCell(Cell):
    """h_t = f(a),  a = x_t W + b + h_{t-1} U;  f = activation.

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

    def step_backward(self, saved, h_prev, dstates, U_t, rmask):
        (act_saved,) = saved
        (dh,) = dstates
        da = self.activation.backward(act_saved, dh)
        return da, gate_matmul_dkernel(h_prev, da, rmask), None, (gate_matmul_dx(da, U_t, rmask),)
