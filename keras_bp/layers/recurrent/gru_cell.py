"""GRU's step (Cho et al. 2014, Keras's gate order z, r, h), forward with its backward beneath.

The interface the time loop (bptt.py) calls is in cell.py.
"""

import tensorflow as tf

from keras_bp.layers.recurrent.cell import Cell
from keras_bp.layers.recurrent.gates import gate_matmul, gate_matmul_dkernel, gate_matmul_dx, slice_mask


class GRUCell(Cell):
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
            u_z, u_r = tf.split(gate_matmul(h_prev, U_zr, slice_mask(rmask, 0, 2)), 2, axis=-1)
        z, z_saved = sigma.forward(x_z + u_z)
        r, r_saved = sigma.forward(x_r + u_r)
        if self.reset_after:
            hh, hh_saved = act.forward(x_h + r * u_h)
            saved = (h_prev, z, r, hh, u_h, z_saved, r_saved, hh_saved)
        else:
            u_h = gate_matmul(r * h_prev, U_h, slice_mask(rmask, 2, 3))
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
        d_rh = gate_matmul_dx(da_h, U_h_t, slice_mask(rmask, 2, 3))
        da_r = sigma.backward(r_saved, d_rh * h_prev)
        da_zr = tf.concat([da_z, da_r], axis=-1)
        dh_prev = dh * z + d_rh * r + gate_matmul_dx(da_zr, U_zr_t, slice_mask(rmask, 0, 2))
        dxp = tf.concat([da_zr, da_h], axis=-1)
        du = tf.concat(
            [
                gate_matmul_dkernel(h_prev, da_zr, slice_mask(rmask, 0, 2)),
                gate_matmul_dkernel(r * h_prev, da_h, slice_mask(rmask, 2, 3)),
            ],
            axis=-1,
        )
        return dxp, du, None, (dh_prev,)

    def bias_parts(self, bias):
        if self.reset_after:
            return bias[0], bias[1]
        return bias, None

    def bias_grad(self, db_in, db_rec):
        if self.reset_after:
            return tf.stack([db_in, db_rec])
        return db_in
