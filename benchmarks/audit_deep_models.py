"""GradientAudit on converted keras.applications models: false alarms, planted bugs caught, cost.

For each model (weights=None, small inputs, 10 classes): `keras_bp.convert`,
then `fit` for `--steps` steps on random images with `GradientAudit(every=1)`
(so `--steps` + 1 audits), counting audits that fail (false alarms: the
converted model's backward passes are right), how many were decided by the
float64 check, and the time of one audit (the first, with its traces, apart).
Then, on fresh copies of the same model, two planted bugs in a Conv2D in the
middle of the network (keras_bp.audit.planted): its kernel gradient 1.01x,
and its input gradient 0.99x; each must be caught at the first audit, the
first with that layer as the culprit, the second with it as `culprit_next`
(the culprit is a layer before it, whose gradients inherit the bug).

    python benchmarks/audit_deep_models.py                    # all six, ~30 min on 2 cores
    python benchmarks/audit_deep_models.py --models ResNet50 --steps 5

Prints one line per model and a table at the end. Not part of the CI run.
"""

import argparse
import os
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_bp  # noqa: E402
from keras_bp.audit.planted import plant_gradient_bug  # noqa: E402

MODELS = {
    "ResNet50": 64,
    "DenseNet121": 64,
    "Xception": 96,  # needs at least 71 x 71
    "NASNetMobile": 96,
    "MobileNetV2": 96,
    "EfficientNetB0": 64,
}


class _TimedAudit(keras_bp.callbacks.GradientAudit):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seconds = []

    def _audit(self, step):
        start = time.perf_counter()
        record = super()._audit(step)
        self.seconds.append(time.perf_counter() - start)
        return record


def _model(name, size, seed):
    keras.utils.set_random_seed(seed)
    base = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3), classes=10)
    model = keras_bp.convert(base)
    return model


def _compile(model):
    model.compile(keras_bp.optimizers.SGD(1e-3), keras_bp.losses.CategoricalCrossentropy())


def _data(size, n, seed):
    rng = np.random.RandomState(seed)
    x = rng.rand(n, size, size, 3).astype("float32")
    y = keras.utils.to_categorical(rng.randint(0, 10, n), 10).astype("float32")
    return x, y


def _middle_conv(model):
    convs = [layer for layer in model.layers if isinstance(layer, keras_bp.layers.Conv2D)]
    return convs[len(convs) // 2]


def run_model(name, size, steps, batch, seed=0):
    x, y = _data(size, steps * batch, seed)
    audit_batch = _data(size, batch, seed + 1)
    model = _model(name, size, seed)
    weights = model.get_weights()
    _compile(model)
    audit = _TimedAudit(audit_batch, every=1, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y, batch_size=batch, epochs=1, callbacks=[audit], verbose=0)
    records = audit.records
    result = dict(
        model=name,
        size=size,
        audits=len(records),
        false_alarms=sum(not r.passed for r in records),
        float64=sum(r.checked_in_float64 for r in records),
        worst_compute=max(max(v.compute_rel_error for v in r.variables if v.rel_error < np.inf) for r in records),
        first_s=audit.seconds[0],
        later_s=float(np.median(audit.seconds[1:])) if len(audit.seconds) > 1 else float("nan"),
        failed=sorted({p for r in records for p in r.failed_variables})[:5],
    )
    caught = []
    for position, factor in ((1, 1.01), (0, 0.99)):
        planted_model = _model(name, size, seed)
        planted_model.set_weights(weights)
        layer = _middle_conv(planted_model)
        plant_gradient_bug(layer, position=position, factor=factor)
        _compile(planted_model)
        audit = keras_bp.callbacks.GradientAudit(audit_batch, every=1000, verbose=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            planted_model.fit(x[:batch], y[:batch], batch_size=batch, epochs=1, callbacks=[audit], verbose=0)
        record = audit.records[0]
        named = record.culprit == layer.name if position else layer.name in record.next_layers
        caught.append(
            dict(
                bug=("kernel x1.01" if position else "input x0.99") + f" in {layer.name}",
                caught=not record.passed,
                named=named,
                culprit=record.culprit,
                culprit_next=", ".join(record.next_layers),
                failed=len(record.failed_variables),
            )
        )
    result["planted"] = caught
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    results = []
    for name in args.models:
        start = time.perf_counter()
        result = run_model(name, MODELS[name], args.steps, args.batch)
        results.append(result)
        print(
            f"{name}: {result['false_alarms']} false alarms in {result['audits']} audits "
            f"({result['float64']} decided in float64, worst float32 rel error "
            f"{result['worst_compute']:.2e}); planted: "
            + "; ".join(
                f"{p['bug']}: {'caught' if p['caught'] else 'MISSED'}, "
                f"{'named' if p['named'] else 'not named'} (culprit {p['culprit']}, next {p['culprit_next']})"
                for p in result["planted"]
            )
            + f"; {time.perf_counter() - start:.0f} s",
            flush=True,
        )
    print()
    print(f"{'model':<15} {'input':>6} {'audits':>6} {'false':>5} {'float64':>7} {'planted caught+named':>21} "
          f"{'1st audit s':>11} {'audit s':>8}")
    for r in results:
        planted = sum(p["caught"] and p["named"] for p in r["planted"])
        print(f"{r['model']:<15} {r['size']:>6} {r['audits']:>6} {r['false_alarms']:>5} {r['float64']:>7} "
              f"{planted:>19}/{len(r['planted'])} {r['first_s']:>11.1f} {r['later_s']:>8.2f}")


if __name__ == "__main__":
    main()
