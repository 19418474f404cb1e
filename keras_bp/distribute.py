"""`model.fit` under MultiWorkerMirroredStrategy: an opt-in fix of Keras's TensorFlow trainer (keras#20585).

    import keras_bp
    keras_bp.distribute.enable_multi_worker_fit()   # before fit / evaluate / predict
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = ...; model.compile(...)
    model.fit(dataset, epochs=...)

With two or more workers, Keras 3's own `fit` and `evaluate` fail on the
TensorFlow backend, for Keras's layers as for keras_bp's
(keras-team/keras#20585). Two places in
keras/src/backend/tensorflow/trainer.py take a branch that only runs with
more than one worker (`_collective_all_reduce_multi_worker`), and both are
wrong there:

1. `TensorFlowTrainer._maybe_symbolic_build` hands the whole first batch,
   an `(x, y)` tuple of per-replica values, to `strategy.reduce`, which
   takes one value, not a nested structure: `ValueError: Attempt to convert
   a value (PerReplica:{...}) with an unsupported type ... to a Tensor`.
   The batch is only used for its shapes and dtypes (Keras builds the model
   from symbolic tensors of them). The fix takes the batch as the first
   local replica sees it, which is what the one-process branch ends up
   building from, and runs no collective at all.
2. `reduce_per_replica` averages each step's outputs (the loss and the
   metrics, scalars) across workers with `strategy.reduce("MEAN", v,
   axis=0)`: `ValueError: Invalid reduction dimension 0 for input with 0
   dimensions`. The fix uses `axis=None`, the mean across replicas only,
   the same as Keras's one-process branch (`tf.reduce_mean` over the
   stacked local results, axis 0); `axis=0` would also average a
   non-scalar metric (per-class values) over its own first axis.

Why a fix of those two functions rather than a training loop over
`strategy.run`: a loop of our own would have to rebuild what `fit` does
around the step (callbacks, progress bar, History, validation,
`steps_per_execution`, `evaluate` and `predict`) and drift from it with
every Keras release. The fix instead wraps the two functions and changes
only the two reductions, only in the branch Keras takes with more than one
worker; every other call goes to Keras's own code unchanged, so a single
process, `MirroredStrategy` and one-worker runs are bit for bit what they
were. The gradients themselves never pass through either function (Keras's
optimizer all-reduces them), so the training math is Keras's own.

Which Keras versions it applies to is decided by the installed code, not by
a version number: a fix is applied only when the function it replaces is
there and its source still contains the faulty line (`reduce(` of the whole
`maybe_distributed_data_batch`, `strategy.reduce("MEAN", v, axis=0)`; all
white space ignored). A Keras that fixes or rewrites either function gets
no fix for it, and `enable_multi_worker_fit()` returns what it did. Checked
in the published wheels: both faulty lines are in 3.6.0, 3.9.2, 3.12.0,
3.14.0 and 3.15.1 (the installed version when this was written); 3.3.3 has
the second only (it has no `_maybe_symbolic_build`); 3.0.0 has neither (its
multi-worker branch sums instead, not examined further). Nothing happens on
import: the user switches the fix on, and `disable_multi_worker_fit()`
restores Keras's functions.

Call it before the first `fit`, `evaluate` or `predict` of the model: the
reduction is traced into Keras's step functions when they first run. Other
multi-worker matters (which `TF_CONFIG` each worker gets, the shard policy,
the audit on each worker) are in docs/distribute.md.
"""

import functools
import inspect

import tensorflow as tf
from keras.src import tree
from keras.src.backend.tensorflow import trainer as _trainer

__all__ = [
    "disable_multi_worker_fit",
    "enable_multi_worker_fit",
    "multi_worker_fit_bugs",
]

# The faulty line of each function, white space removed: a fix is applied
# only while the installed function still contains it.
_FAULTY_LINES = {
    "symbolic_build": 'data_batch=self.distribute_strategy.reduce("MEAN",maybe_distributed_data_batch,',
    "scalar_mean": 'returnstrategy.reduce("MEAN",v,axis=0)',
}

# What each fix replaces: (owner, attribute name).
_TARGETS = {
    "symbolic_build": (getattr(_trainer, "TensorFlowTrainer", None), "_maybe_symbolic_build"),
    "scalar_mean": (_trainer, "reduce_per_replica"),
}

# Keras's originals while a fix is applied, by fix name.
_originals = {}


def multi_worker_fit_bugs():
    """Which of the two faults of keras#20585 the installed Keras has.

    Returns:
        A tuple of names, in a fixed order: `"symbolic_build"` (the whole
        first batch reduced with `strategy.reduce` before the first step)
        and `"scalar_mean"` (each step's scalar loss and metrics reduced
        with `axis=0`); empty for a Keras that has neither. Decided by the
        source of Keras's functions (see the module docstring), whether or
        not the fix is applied now.
    """
    return tuple(name for name in _FAULTY_LINES if _has_faulty_line(name))


def enable_multi_worker_fit():
    """Fixes Keras's `fit`, `evaluate` and `predict` under MultiWorkerMirroredStrategy (keras#20585).

    Applies each fix that the installed Keras needs (`multi_worker_fit_bugs`)
    and nothing else; a no-op for a Keras without the faults. Calling it
    again changes nothing. Outside a multi-worker MultiWorkerMirroredStrategy
    the fixed functions call Keras's own, unchanged.

    Returns:
        The names of the fixes in force after the call (a tuple, empty when
        the installed Keras needs none).
    """
    return _enable(multi_worker_fit_bugs())


def disable_multi_worker_fit():
    """Restores Keras's own functions; returns the names of the fixes removed."""
    removed = tuple(name for name in _FAULTY_LINES if name in _originals)
    for name in removed:
        owner, attribute = _TARGETS[name]
        setattr(owner, attribute, _originals.pop(name))
    return removed


def _enable(names):
    """Applies the named fixes (the tests apply one alone); returns the names in force."""
    for name in names:
        if name in _originals:
            continue
        owner, attribute = _TARGETS[name]
        original = getattr(owner, attribute)
        setattr(owner, attribute, _FIXES[name](original))
        _originals[name] = original
    return tuple(name for name in _FAULTY_LINES if name in _originals)


def _has_faulty_line(name):
    owner, attribute = _TARGETS[name]
    if owner is None or not hasattr(_trainer, "_collective_all_reduce_multi_worker"):
        return False  # a Keras laid out differently: nothing we know how to fix
    function = _originals.get(name) or getattr(owner, attribute, None)
    if function is None:
        return False
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return False  # no source to check (a frozen install): leave Keras alone
    return _FAULTY_LINES[name] in "".join(source.split())


def _multi_worker(strategy):
    # Keras's own test for the branch that holds both faults, so the fixes
    # apply exactly where Keras's code would fail.
    return _trainer._collective_all_reduce_multi_worker(strategy)


def _fix_symbolic_build(original):
    @functools.wraps(original)
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is None or strategy is None or not _multi_worker(strategy):
            return original(self, iterator=iterator, data_batch=data_batch)
        # NOTE: keras#20585, fault 1. The batch is only read for its shapes
        # and dtypes: the first local replica's part has them, and taking
        # it needs no collective (Keras resets the iterator afterwards).
        for _, _, it in iterator:
            data_batch = tree.map_structure(
                lambda v: strategy.experimental_local_results(v)[0]
                if isinstance(v, tf.distribute.DistributedValues)
                else v,
                next(it),
            )
            break
        return original(self, data_batch=data_batch)

    return _maybe_symbolic_build


def _fix_scalar_mean(original):
    @functools.wraps(original)
    def reduce_per_replica(values, strategy, reduction):
        # "auto" is "mean" for every strategy but TPUStrategy, which is never multi-worker here.
        if reduction not in ("auto", "mean") or not _multi_worker(strategy):
            return original(values, strategy, reduction)
        # NOTE: keras#20585, fault 2. axis=None: the mean over replicas
        # only, as in Keras's one-process branch; axis=0 fails on scalars.
        return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)

    return reduce_per_replica


_FIXES = {"symbolic_build": _fix_symbolic_build, "scalar_mean": _fix_scalar_mean}
