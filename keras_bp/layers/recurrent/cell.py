"""The interface of a recurrent cell: what the time loop calls at each step.

A cell is the math of one time step; the loop (bptt.py) runs it over the
sequence and handles masks, the input projection and the weight sums. With k
gates of n units, a cell has:

    gates, num_states: k, and how many (B, n) states it carries (h first).
    prepare(U) -> what the steps use of the recurrent kernel U (n, k n): U, or
        a tuple of its parts (GRU without reset_after), made once outside the
        loop; each part of g gates is (n, g n).
    step_forward(xp, states, U, b_rec, rmask) -> (new_states, saved)
        xp: the step's input projection x_t @ W + b_in (B, k n); states: the
        states before the step; U: what prepare(U) gave (in gate_matmul's
        layout for rmask); b_rec: the recurrent bias or None; rmask: the
        recurrent dropout mask or None. saved: a tuple of tensors for the
        backward, which may include the states around the step.
    step_backward(saved, h_prev, dstates, U_t, rmask) -> (dxp, dU_t, db_rec_t, dstates_prev)
        dstates: dL/d(states after the step); h_prev: the output before it;
        U_t: what prepare(U) gave, each part transposed (for gate_matmul_dx).
        dxp: dL/d(the step's input projection) (B, k n); dU_t: the step's term
        of dL/dU (n, k n); db_rec_t: its term of the recurrent bias's gradient
        (GRU with reset_after), else None; dstates_prev: dL/d(states before).
    bias_parts(b) -> (b_in, b_rec): the input and the recurrent bias (None).
    bias_grad(db_in, db_rec) -> db, the bias's gradient from the sums over all
        steps of dxp and of db_rec_t.

`Cell` gives the defaults of a cell with no recurrent bias and one recurrent
kernel; a cell's class docstring has its derivation.
"""


class Cell:
    """Defaults for a cell whose bias is all on the input side and whose steps use U as it is."""

    def prepare(self, U):
        return U

    def bias_parts(self, bias):
        return bias, None

    def bias_grad(self, db_in, db_rec):
        return db_in
