"""The store of what each time step saves for the backward: recorded at step t, read back at step t.

    storage, arrays = StepStorage.start(steps, initial_states, states0, saved0)
    arrays = storage.record(arrays, t, states, new_states, saved)     t = 1 .. T-1
    cursor = storage.rewind(arrays, steps)
    saved, h_prev, cursor = storage.read(arrays, cursor, t)           t = T-1 .. 0

`arrays` and `cursor` are the loops' variables (TensorArrays and tensors);
`storage` is the layout, fixed by step 0: which tensors a step saves and which
states' histories are kept. Hidden behind it:

- De-duplication by identity. A tensor that a step saves twice (an activation
  that saves its output hands back the gate value itself) is stored once, and
  a saved tensor that is a state before or after the step (SimpleRNN's h_t,
  GRU's h_{t-1}, LSTM's c_{t-1} and c_t) comes from that state's history,
  written once a step: a write and a read less per step for each. States are
  told apart by identity too, so the loop runs the steps on `apart(states)`.
- The graph/eager split. Everything is kept by reference in TensorArrays (no
  copies). In a graph the backward pops each list from its end as it walks
  back, so a step's memory is freed once its backward is done (as TF's own
  gradient accumulators do); eagerly it reads entry t (and the read order is
  free).
"""

from typing import NamedTuple

import tensorflow as tf


class StepArrays(NamedTuple):
    """The stored tensors, TensorArrays: one per kept state and one per distinct saved tensor.

    history[k][t + 1] is kept state k after step t, history[k][0] the initial
    one; saved[j][t] is step t's distinct tensor j.
    """

    history: tuple
    saved: tuple


def apart(states):
    """The states, each a distinct tensor: the storage tells states apart by identity.

    One zeros tensor for both of LSTM's initial states would make the saved
    c_{t-1} look like h_{t-1}.
    """
    return tuple(tf.identity(s) if any(s is other for other in states[:k]) else s for k, s in enumerate(states))


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


def _array(first, size):
    # clear_after_read=False: eagerly, the backward reads each history entry
    # twice (as one step's previous state and the step before's new one).
    return tf.TensorArray(first.dtype, size=size, element_shape=first.shape, clear_after_read=False).write(0, first)


def _pop(handle, ta):
    handle, value = tf.raw_ops.TensorListPopBack(
        input_handle=handle, element_shape=tf.constant(-1), element_dtype=ta.dtype
    )
    value.set_shape(ta.element_shape)
    return handle, value


class StepStorage:
    """The layout of what every step saves, fixed by step 0 (see the module docstring)."""

    def __init__(self, structure, where, num_states):
        self._structure = structure  # step 0's `saved`, for its nesting
        self._where = where  # per saved entry: a distinct tensor's index, or ("prev" | "new", state)
        self._num_states = num_states
        # The states whose history is kept: h (for dU) and any that a step saves.
        self._kept = sorted({0} | {j[1] for j in where if isinstance(j, tuple)})

    @classmethod
    def start(cls, steps, initial_states, states0, saved0):
        """The layout of step 0's `saved`, and arrays for `steps` steps with step 0 recorded."""
        unique0, where = _flatten_saved(saved0, initial_states, states0)
        storage = cls(saved0, where, len(initial_states))
        history = tuple(_array(initial_states[k], steps + 1).write(1, states0[k]) for k in storage._kept)
        return storage, StepArrays(history, tuple(_array(u, steps) for u in unique0))

    def record(self, arrays, t, states, new_states, saved):
        """`arrays` with step t recorded: its `saved`, between `states` and `new_states`."""
        unique, where = _flatten_saved(saved, states, new_states)
        if where != self._where:
            raise AssertionError(f"The steps save differently ({where} != {self._where})")
        history = tuple(ta.write(t + 1, new_states[k]) for ta, k in zip(arrays.history, self._kept))
        return StepArrays(history, tuple(ta.write(t, u) for ta, u in zip(arrays.saved, unique)))

    def h_sequence(self, arrays, steps):
        """h after each step, (T, B, n) in loop order."""
        return arrays.history[0].gather(tf.range(1, steps + 1))

    def rewind(self, arrays, steps):
        """The backward's cursor, at the last step: what `read` carries from step to step.

        In a graph, each list's handle (the final states popped off each history,
        which has one entry more than the steps); eagerly, placeholders. Then
        the kept states after the last step.
        """
        if tf.executing_eagerly():
            handles = tuple(tf.zeros(()) for _ in arrays.saved + arrays.history)
            return handles, tuple(ta.read(steps) for ta in arrays.history)
        last = [_pop(ta.flow, ta) for ta in arrays.history]
        handles = tuple(ta.flow for ta in arrays.saved) + tuple(handle for handle, _ in last)
        return handles, tuple(value for _, value in last)

    def read(self, arrays, cursor, t):
        """Step t's `saved` as the step made it, h before the step, and the cursor for step t - 1.

        In a graph, steps are read from the last to the first, each once: each
        state popped as step t's previous one is carried on as step t-1's new one.
        """
        handles, new_kept = cursor
        if tf.executing_eagerly():
            prev_kept = tuple(ta.read(t) for ta in arrays.history)
            values = [ta.read(t) for ta in arrays.saved]
            new_kept = tuple(ta.read(t + 1) for ta in arrays.history)
        else:
            values, new_handles = [], []
            for ta, handle in zip(arrays.saved + arrays.history, handles):
                handle, value = _pop(handle, ta)
                values.append(value)
                new_handles.append(handle)
            handles = tuple(new_handles)
            n_saved = len(arrays.saved)
            values, prev_kept = values[:n_saved], tuple(values[n_saved:])
        saved = self._pack(values, self._at_states(prev_kept), self._at_states(new_kept))
        return saved, prev_kept[0], (handles, prev_kept)

    def _at_states(self, kept_values):
        """The kept states' values at their places among all the states (others None)."""
        states = [None] * self._num_states
        for k, value in zip(self._kept, kept_values):
            states[k] = value
        return tuple(states)

    def _pack(self, unique, prev_states, new_states):
        """A step's `saved` structure rebuilt from its distinct tensors and the states around it."""

        def value(j):
            if isinstance(j, tuple):
                return (prev_states if j[0] == "prev" else new_states)[j[1]]
            return unique[j]

        values = iter(value(j) for j in self._where)
        leaves = [None if leaf is None else next(values) for leaf in tf.nest.flatten(self._structure)]
        return tf.nest.pack_sequence_as(structure=self._structure, flat_sequence=leaves)
