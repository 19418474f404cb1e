"""LoraLayer: LoRA's adapters on a layer's one adapted weight (the kernel of Dense and Conv, Embedding's table).

LoRA (low-rank adaptation, Hu et al. 2021) freezes a weight W and learns a
low-rank update to it:

    W_eff = W + s A B          s = lora_alpha / lora_rank
    A: W.shape[:-1] + (r,)     B: (r, W.shape[-1])       r = lora_rank

with A drawn from `a_initializer` (he_uniform) and B from `b_initializer`
(zeros), so that W_eff = W when fine-tuning starts. Each layer's op takes A
and B as inputs (None without LoRA) and derives their gradients itself (see
dense.py, conv.py, embedding.py). This mixin holds what the three layers
share, as Keras 3.15.1 has it: `enable_lora` and its errors, the adapters'
names (`lora_<weight>_a`, `lora_<weight>_b`), the merged weight that the
layer's `kernel` or `embeddings` reads, and Keras's file format, in which the
merged W_eff is stored in W's place and the adapters are not stored (loading
zeroes them), so that a LoRA layer's weights load into a plain layer and a
plain layer's into a LoRA one.
"""

import keras

from keras_bp._validation import check_non_negative, check_non_negative_int, check_positive_int


class LoraLayer(keras.layers.Layer):
    """Mixin: LoRA on the weight `"_" + _lora_weight` (a subclass names it, and calls `_make_ops`)."""

    _lora_weight = None  # "kernel" or "embeddings"
    _lora_noun = None  # how Keras's errors call it: "kernel", "embedding"

    def _init_lora(self, lora_rank, lora_alpha):
        """Stores the constructor's LoRA options; `build` then enables LoRA when `lora_rank` is set.

        A `lora_rank` of None or 0 means no LoRA (Keras reads 0 so too).
        """
        self.lora_rank = None if lora_rank is None else check_non_negative_int("lora_rank", lora_rank)
        if lora_alpha is not None:
            check_non_negative("lora_alpha", lora_alpha)
        self.lora_alpha = lora_alpha if lora_alpha is not None else self.lora_rank
        self.lora_enabled = False

    def _build_lora(self):
        """The end of `build`: a constructor's (or a config's) `lora_rank` enables LoRA."""
        if self.lora_rank:
            # NOTE: Keras 3.15's Dense and Embedding call enable_lora(lora_rank)
            # here, dropping the constructor's lora_alpha; its Conv layers and
            # keras_bp's keep it, as the docstring of lora_alpha promises.
            self.enable_lora(self.lora_rank, lora_alpha=self.lora_alpha)

    def enable_lora(self, rank, lora_alpha=None, a_initializer="he_uniform", b_initializer="zeros"):
        """Freezes the weight W and adds the trainable adapters A and B (see the module docstring).

        Args:
            rank: Positive integer r, the rank of the update A B.
            lora_alpha: The update is scaled by `lora_alpha / rank`; defaults to `rank`.
            a_initializer: Initializer of A, `W.shape[:-1] + (rank,)`.
            b_initializer: Initializer of B, `(rank, W.shape[-1])`; zeros keeps the
                layer's outputs unchanged until the adapters train.

        Raises:
            ValueError: the weight has a constraint (a constraint on W_eff cannot be
                kept by training A and B), the layer is not built, or LoRA is
                already enabled.
        """
        name, noun = self._lora_weight, self._lora_noun
        constraint = getattr(self, f"{name}_constraint")
        if constraint:
            raise ValueError(
                f"Lora is incompatible with {noun} constraints, received: {name}_constraint={constraint!r}. "
                f"In order to enable lora on this layer, remove the `{name}_constraint` argument."
            )
        if not self.built:
            raise ValueError(
                "Cannot enable lora on a layer that isn't yet built. Build it first "
                "(call it on an input, or call `build(input_shape)`), then call `enable_lora`."
            )
        if self.lora_enabled:
            raise ValueError(
                f"lora is already enabled (lora_rank={self.lora_rank}), received: rank={rank!r}. "
                "This can only be done once per layer."
            )
        rank = check_positive_int("rank", rank)
        if lora_alpha is not None:
            check_non_negative("lora_alpha", lora_alpha)
        weight = self._lora_frozen()
        # Keras keeps the adapters in float32 whatever the policy (no under- or
        # overflow while fine-tuning); a float64 layer keeps them in float64.
        dtype = "float64" if self.variable_dtype == "float64" else "float32"
        regularizer = getattr(self, f"{name}_regularizer")
        self._tracker.unlock()
        a = self.add_weight(
            name=f"lora_{name}_a", shape=tuple(weight.shape[:-1]) + (rank,),
            initializer=keras.initializers.get(a_initializer), dtype=dtype, regularizer=regularizer,
        )
        b = self.add_weight(
            name=f"lora_{name}_b", shape=(rank, weight.shape[-1]),
            initializer=keras.initializers.get(b_initializer), dtype=dtype, regularizer=regularizer,
        )
        setattr(self, f"lora_{name}_a", a)
        setattr(self, f"lora_{name}_b", b)
        weight.trainable = False
        self._tracker.lock()
        self.lora_enabled = True
        self.lora_rank = rank
        self.lora_alpha = lora_alpha if lora_alpha is not None else rank
        self._make_ops()

    def _make_ops(self):
        """Sets the layer's manual-gradient op(s) for its activation and `_lora_scale`."""
        raise NotImplementedError

    @property
    def _lora_scale(self):
        """s = lora_alpha / lora_rank with LoRA on, else None."""
        return self.lora_alpha / self.lora_rank if self.lora_enabled else None

    def _lora_frozen(self):
        """W, the variable LoRA adapts (frozen once LoRA is on)."""
        return getattr(self, "_" + self._lora_weight)

    def _lora_adapters(self):
        """(A, B) with LoRA on, else (None, None)."""
        if not self.lora_enabled:
            return None, None
        name = self._lora_weight
        return getattr(self, f"lora_{name}_a"), getattr(self, f"lora_{name}_b")

    def _lora_merged(self):
        """W, or W + s A B in the compute dtype with LoRA on: what Keras's `kernel` (`embeddings`) reads."""
        if not self.built:
            raise AttributeError(f"You must build the layer before accessing `{self._lora_weight}`.")
        weight = self._lora_frozen()
        if not self.lora_enabled:
            return weight
        a, b = self._lora_adapters()
        return keras.ops.cast(weight + self._lora_scale * keras.ops.matmul(a, b), self.compute_dtype)

    def _lora_config(self):
        """`lora_rank` and `lora_alpha` for `get_config`, only when set (as Keras writes them)."""
        return {"lora_rank": self.lora_rank, "lora_alpha": self.lora_alpha} if self.lora_rank else {}

    def _stored_variables(self):
        """The weights Keras's format stores, in order: every weight but the adapters."""
        adapters = [v for v in self._lora_adapters() if v is not None]
        return [v for v in self.weights if not any(v is a for a in adapters)]

    def save_own_variables(self, store):
        """Stores the weights in Keras's format: W + s A B in W's place, the adapters left out."""
        if not self.built:
            return
        frozen = self._lora_frozen()
        for i, v in enumerate(self._stored_variables()):
            store[str(i)] = self._lora_merged() if v is frozen else v

    def load_own_variables(self, store):
        """Loads Keras's format; with LoRA on, the merged weight goes into W and A, B restart at zero."""
        if not self.lora_enabled:
            self._check_load_own_variables(store)
        if not self.built:
            return
        for i, v in enumerate(self._stored_variables()):
            v.assign(store[str(i)])
        for adapter in self._lora_adapters():
            if adapter is not None:
                adapter.assign(keras.ops.zeros(adapter.shape, adapter.dtype))
