"""AdditiveAttention: Bahdanau-style scores S_ij = sum_d w_d tanh(q_id + k_jd); the rest is Attention's op.

The forward, the masks, the dropout and every gradient are derived once in
keras_bp/layers/attention.py: this layer is `Attention` with the tanh score
function, w its `scale` of shape (dim,) and neither the scalar inside the
tanh nor the one outside the sum:

    dw_d = sum over batch, i, j of dS_ij tanh(q_id + k_jd)
    dq_i = sum_j dZ_ij,   dk_j = sum_i dZ_ij,   dZ = dS w (1 - tanh^2(q_i + k_j))
"""

import keras

from keras_bp.layers.attention import TANH, Attention, weight_tensor


@keras.saving.register_keras_serializable(package="keras_bp")
class AdditiveAttention(Attention):
    """Additive attention, a.k.a. Bahdanau-style attention (drop-in for `keras.layers.AdditiveAttention`).

    Args:
        use_scale: If `True`, a weight `scale` of shape `(dim,)`
            (Glorot-uniform initialized) weighs each feature's tanh.
        dropout: Float in [0, 1], the fraction of the attention weights to
            drop in training.

    Call arguments and output: as `Attention`'s.
    """

    def __init__(self, use_scale=True, dropout=0.0, **kwargs):
        super().__init__(use_scale=use_scale, dropout=dropout, **kwargs)

    def build(self, input_shape):
        self._validate_inputs(input_shape)
        dim = input_shape[0][-1]
        self.scale = None
        if self.use_scale:
            self.scale = self.add_weight(
                name="scale", shape=[dim], initializer="glorot_uniform", dtype=self.dtype, trainable=True
            )

    def _score(self):
        return TANH, (None, weight_tensor(self.scale), None)

    def get_config(self):
        config = super().get_config()
        del config["score_mode"]
        return config
