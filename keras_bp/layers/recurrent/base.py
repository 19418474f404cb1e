"""The Keras layer around a cell that SimpleRNN, LSTM, GRU share: arguments, weights, states, call.

A layer holds a cell (cell.py), builds Keras's weights with the cell's gate
count, draws the dropout masks, reads the weights outside the op (Trap 1,
docs/traps.md) and calls the BPTT op (bptt.py) with `None` for what is absent.
"""

import inspect

import keras
import tensorflow as tf

from keras_bp import activations
from keras_bp._validation import check_input_rank, check_positive_int
from keras_bp._validation import check_unit_interval as check_rate
from keras_bp.layers._weight_options import add_weight_with_options, set_weight_options, weight_options_config
from keras_bp.layers.recurrent.bptt import LoopOptions, rnn_op


class BaseRNN(keras.layers.Layer):
    """What SimpleRNN, LSTM, GRU share: arguments, weights, states, dropout masks, call.

    A subclass mirrors Keras's signature, passes the shared arguments on with
    `super().__init__(**shared_arguments(locals()))` as its first statement,
    then sets `self.cell` and its own attributes, and adds its own arguments to
    `get_config`. A new shared argument is one keyword of `BaseRNN.__init__`
    (and, when Keras's layers have it, of their mirrored signatures).
    """

    # Keras's SimpleRNN drops every input at dropout=1.0; LSTM and GRU then skip dropout.
    _drops_at_rate_one = False

    def __init__(
        self,
        *,
        units,
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
        units = check_positive_int("units", units)
        activation = activations.get(activation)
        kwargs.pop("implementation", None)  # Keras's choice of kernel split; one math here.
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.units = units
        self.cell = None  # set by the subclass
        self.activation = activation
        self.use_bias = use_bias
        set_weight_options(
            self,
            kernel=(kernel_initializer, kernel_regularizer, kernel_constraint),
            recurrent=(recurrent_initializer, recurrent_regularizer, recurrent_constraint),
            bias=(bias_initializer, bias_regularizer, bias_constraint),
        )
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
        return (self.cell.gates * self.units,)

    def build(self, sequences_shape, initial_state_shape=None):
        check_input_rank(self.__class__.__name__, "sequences", sequences_shape, rank=3)
        input_dim = sequences_shape[-1]
        if input_dim is None:
            raise ValueError(
                f"The last dimension of the input to {self.__class__.__name__} must "
                f"be known, received: sequences shape {tuple(sequences_shape)}"
            )
        gates_units = self.cell.gates * self.units
        self.kernel = add_weight_with_options(self, "kernel", (input_dim, gates_units))
        self.recurrent_kernel = add_weight_with_options(
            self, "recurrent_kernel", (self.units, gates_units), prefix="recurrent"
        )
        if self.use_bias:
            self.bias = add_weight_with_options(
                self, "bias", self._bias_shape(), initializer=self._bias_initializer()
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
        """Keras's masks: drawn once per call, the input's first, one per gate with recurrent_dropout.

        LSTM and GRU with recurrent_dropout use one mask per gate (Keras's
        "implementation 1"), otherwise one shared mask; None where nothing drops.
        """
        gates = self.cell.gates
        per_gate = gates if (gates > 1 and self.recurrent_dropout > 0) else None

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

    def _initial_states(self, initial_state):
        """One tensor per state of the cell, or None where the op starts from zeros."""
        if initial_state is None:
            if self.stateful:
                return [tf.cast(tf.convert_to_tensor(v), self.compute_dtype) for v in self._state_variables]
            return [None] * self.cell.num_states
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

    def _op(self, options):
        if options not in self._ops:
            self._ops[options] = rnn_op(self.cell, options)
        return self._ops[options]

    def call(self, sequences, initial_state=None, mask=None, training=False):
        check_input_rank(self.__class__.__name__, "sequences", sequences.shape, rank=3)
        if not sequences.dtype.is_floating:
            # Keras's matmuls promote an integer input to the compute dtype; autocast leaves ints alone.
            sequences = tf.cast(sequences, self.compute_dtype)
        mask = self._check_mask(sequences, mask)
        states = self._initial_states(initial_state)
        dmask, rmask = self._dropout_masks(sequences, bool(training))
        # Trap 1 (docs/traps.md): read the weights here, outside the custom gradient.
        kernel = tf.convert_to_tensor(self.kernel)
        recurrent_kernel = tf.convert_to_tensor(self.recurrent_kernel)
        bias = tf.convert_to_tensor(self.bias) if self.use_bias else None
        op = self._op(LoopOptions(self.go_backwards, self.return_sequences, self.zero_output_for_mask))
        output, *final_states = op(sequences, kernel, recurrent_kernel, bias, mask, dmask, rmask, *states)
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
            **weight_options_config(self, "kernel", "recurrent", "bias", activity_regularizer=True),
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


# The names BaseRNN.__init__ takes, which shared_arguments passes on.
_SHARED = tuple(
    name for name, p in inspect.signature(BaseRNN.__init__).parameters.items() if p.kind is p.KEYWORD_ONLY
)


def shared_arguments(arguments):
    """BaseRNN's arguments by name, from a subclass's `__init__` arguments (its `locals()`) and its **kwargs.

    The subclass's own arguments (recurrent_activation, reset_after, ...) stay
    behind; whatever its **kwargs hold (zero_output_for_mask, name, dtype, ...)
    goes on.
    """
    return {**{name: arguments[name] for name in _SHARED if name in arguments}, **arguments["kwargs"]}


def check_use_cudnn(use_cudnn):
    """LSTM's and GRU's `use_cudnn`, accepted as Keras's is and ignored: the loop never uses cuDNN."""
    if use_cudnn not in ("auto", True, False):
        raise ValueError(f"use_cudnn must be 'auto', True or False, received: use_cudnn={use_cudnn!r}")
    return use_cudnn


SHARED_ARGS_DOC = """
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
