"""Recurrent layers (SimpleRNN, LSTM, GRU) trained by hand-written backpropagation through time.

One module per job:
    gates.py            gate products x @ K, each gate's block with its own dropout mask
    cell.py             the interface of a cell: what the time loop calls at each step
    simple_rnn_cell.py, lstm_cell.py, gru_cell.py
                        each cell's step, forward with its backward beneath
    storage.py          what each step saves, recorded at step t, read back at step t
    bptt.py             the time loop: rnn_forward, rnn_backward, the op
    base.py             the Keras layer the three share around their cell
    simple_rnn.py, lstm.py, gru.py
                        the layers, drop-ins for Keras's
"""

from keras_bp.layers.recurrent.gru import GRU
from keras_bp.layers.recurrent.lstm import LSTM
from keras_bp.layers.recurrent.simple_rnn import SimpleRNN

__all__ = ["GRU", "LSTM", "SimpleRNN"]
