"""Harness cases for the recurrent family: SimpleRNN, LSTM, GRU and Embedding.

Sequences stay short (T = 3) and narrow (2 features, 2 units) so the float64
finite differences see the whole Jacobian; each option that changes the math
of the time loop (return_sequences, go_backwards, return_state, masks,
reset_after, initial states, dropout masks) has a case. Options that need more
than one call or a wrapper (stateful, Bidirectional, TimeDistributed, masks
from Embedding and Masking) are in tests/test_recurrent.py.
"""

import keras
import numpy as np

from keras_bp import layers
from tests.harness import LayerCase


def _pair(name, **kwargs):
    ours, theirs = getattr(layers, name), getattr(keras.layers, name)
    return (lambda: ours(**kwargs)), (lambda: theirs(**kwargs))


def _with_states(*state_shapes):
    def make_inputs(rng):
        return [rng.standard_normal((2, 3, 2)).astype("float32")] + [
            rng.standard_normal(shape).astype("float32") for shape in state_shapes
        ]

    return make_inputs


# Masked steps at the start, the middle and the end, and a sample with none.
MASK = np.array([[True, True, False], [False, True, True]])

CASES = [
    LayerCase("simple-rnn", *_pair("SimpleRNN", units=2), (2, 3, 2)),
    LayerCase("lstm-sequences", *_pair("LSTM", units=2, return_sequences=True), (2, 3, 2)),
    LayerCase("gru", *_pair("GRU", units=2), (2, 3, 2)),
    LayerCase("simple-rnn-relu-no-bias-dropout",
              *_pair("SimpleRNN", units=2, activation="relu", use_bias=False, dropout=0.3, recurrent_dropout=0.4,
                     seed=1, return_sequences=True),
              (2, 3, 2), call_kwargs={"training": True}, fit=False),
    LayerCase("lstm-backwards-states",
              *_pair("LSTM", units=2, go_backwards=True, return_sequences=True, return_state=True),
              (2, 3, 2), fit=False),
    LayerCase("lstm-mask", *_pair("LSTM", units=2, return_sequences=True), (2, 3, 2),
              call_kwargs={"mask": MASK}, fit=False),
    # recurrent_dropout switches LSTM and GRU to one dropout mask per gate.
    LayerCase("lstm-dropout-per-gate-training",
              *_pair("LSTM", units=2, dropout=0.3, recurrent_dropout=0.3, seed=5, return_sequences=True),
              (2, 2, 2), call_kwargs={"training": True}, fit=False),
    LayerCase("gru-reset-before-mask-initial-state", *_pair("GRU", units=2, reset_after=False), (2, 3, 2),
              make_inputs=_with_states((2, 2)), call_kwargs={"mask": MASK}, fit=False),
    LayerCase("gru-backwards-no-bias-initial-state",
              *_pair("GRU", units=2, go_backwards=True, use_bias=False, return_sequences=True), (2, 3, 2),
              make_inputs=_with_states((2, 2)), fit=False),
    LayerCase("simple-rnn-initial-state-mask-zero-output",
              *_pair("SimpleRNN", units=2, return_sequences=True, zero_output_for_mask=True), (2, 3, 2),
              make_inputs=_with_states((2, 2)), call_kwargs={"mask": MASK}, fit=False),
    LayerCase("embedding", *_pair("Embedding", input_dim=5, output_dim=3), (2, 4),
              make_inputs=lambda rng: [rng.randint(0, 5, (2, 4)).astype("int32")]),
    LayerCase("embedding-mask-zero-int64", *_pair("Embedding", input_dim=6, output_dim=2, mask_zero=True), (3, 2),
              make_inputs=lambda rng: [rng.randint(0, 6, (3, 2)).astype("int64")], fit=False),
]
