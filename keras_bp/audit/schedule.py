"""When a check runs during `fit`: every `every` optimizer steps, on a built model, retraced when the model changes.

GradientAudit and GradientMonitor (keras_bp.health) both check at the start
of training and then at the first batch end at or after each multiple of
`every` optimizer steps, on a model that is built, with a function traced
once per model and compile.
"""

from keras_bp.audit import _keras

__all__ = ["Schedule", "ensure_built", "trace_key"]


class Schedule:
    """Which batch ends a check is due at, counted in optimizer steps (`optimizer.iterations`).

    Counting the optimizer's steps makes `steps_per_execution > 1` work: a
    check runs at the first batch end at or after each multiple of `every`.
    """

    def __init__(self, every):
        self.every = every
        self.last = -1  # the step of the latest check
        self._epoch_start = 0

    def start_epoch(self, model):
        """Called at the start of training and of each epoch; returns the optimizer step now."""
        self._epoch_start = step(model)
        return self._epoch_start

    def due_after_batch(self, model, batch):
        """The optimizer step if a check is due at the end of batch `batch` of this epoch, else None."""
        # `batch` is the epoch's index of the last step run (with
        # steps_per_execution > 1 calls come every few steps), so the step
        # count is known without reading the variable, a device sync, after
        # every batch. Read it only where a check is due, to check at the
        # optimizer's own count (which a skipped mixed-precision step may
        # hold back).
        if not self._due(self._epoch_start + batch + 1):
            return None
        now = step(model)
        return now if self._due(now) else None

    def mark(self, checked_step):
        """Notes that a check ran at `checked_step`."""
        self.last = checked_step

    def _due(self, at):
        return at // self.every > self.last // self.every


def step(model):
    """The optimizer's step count, read now."""
    return int(model.optimizer.iterations.numpy())


def ensure_built(model, spec):
    """Builds an unbuilt (subclassed) model from the check batch's `element_spec`.

    Without a distribution strategy, Keras's TF trainer builds subclassed
    models only when it traces the train step, after `on_train_begin`; they
    are built symbolically here, the way Keras does under a strategy.
    """
    if not all(layer.built for layer in _keras.layers(model, include_self=True)):
        _keras.symbolic_build(model, spec)


def trace_key(model):
    """What a check's traced function captures: a new model or a recompile needs a new trace.

    The model's variables, compiled loss, optimizer and dtype policy are
    captured; a second fit of the same model reuses the trace.
    """
    return (
        id(model),
        id(_keras.compiled_loss(model)),
        id(model.optimizer),
        tuple(id(v) for v in model.trainable_variables),
        bool(model.jit_compile),
    )
