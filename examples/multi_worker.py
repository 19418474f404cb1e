"""The MNIST MLP trained by N worker processes under MultiWorkerMirroredStrategy, its gradients audited on each.

    python examples/multi_worker.py --workers 2

The network of examples/mnist.py (keras_bp's Dense layers, loss and SGD;
`--layers keras` for Keras's own) trained with Keras's `model.fit` across N
processes on this machine, the way it runs across N machines:

- the launcher picks N free ports on 127.0.0.1 and starts N worker
  processes, worker i with the environment variable
  TF_CONFIG={"cluster": {"worker": ["127.0.0.1:P0", ...]}, "task": {"type": "worker", "index": i}};
- each worker switches on `keras_bp.distribute.enable_multi_worker_fit()`
  (Keras 3.15's own `fit` fails with two or more workers, keras#20585),
  creates the strategy, builds and compiles the model in its scope, and
  runs `fit` on a `tf.data` pipeline of the global batch (`--batch-size`,
  split evenly between the workers; shard policy DATA, set explicitly),
  with a `GradientAudit` attached, then `evaluate` and `predict`;
- one more process trains the same model alone, without a strategy, at
  the same global batch on the same data in the same order.

The last line compares the final weights:

    multi-worker: N workers, max weight difference between workers <x>, from one process <y>

The workers all-reduce their gradients, so x should be 0; y is float
round-off (the batch's gradient summed in a different order).

Network: TensorFlow's gRPC server listens on every interface of the
machine (it has no option to bind one address). By default (`--network
loopback`) the launcher therefore runs in a network namespace of its own
whose only interface is loopback (Linux `unshare --net --map-root-user`),
so the servers can only be reached on 127.0.0.1; where no namespace can be
made it stops and says so. `--network host` runs without one. Every process
is bounded by `--timeout` and stopped at the end.

Run: python examples/multi_worker.py [--workers 2] [--epochs 3] [--data-dir DIR]

The flags are examples/_cli.py's where they apply (`--help` lists them).
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _cli  # noqa: E402

NETWORKS = ("loopback", "host")
_WORKER_FLAG = "--_worker"  # internal: this process is a worker (TF_CONFIG set) or the one-process run
_INSIDE_FLAG = "--_inside"  # internal: the launcher, already in its private network namespace


# --- The command line ----------------------------------------------------------


def parse_args(argv=None):
    parser = _cli.new_parser(__doc__)
    parser.add_argument("--workers", type=_cli.at_least(1), default=2, metavar="N",
                        help="number of worker processes; default: 2")
    _cli.add_data_dir(parser)
    _cli.add_epochs(parser, 3)
    _cli.add_batch_size(parser, 32)
    parser.add_argument("--optimizer", choices=("SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "Nadam"),
                        default="SGD", help="default: SGD")
    _cli.add_learning_rate(parser, 0.01)
    parser.add_argument("--audit-every", type=_cli.at_least(1), default=100,
                        help="optimizer steps between gradient audits; default: 100")
    _cli.add_limit(parser)
    _cli.add_seed(parser, 0)
    _cli.add_layers(parser)
    _cli.add_jit_compile(parser, "false")
    _cli.add_verbose(parser, 0)
    parser.add_argument("--network", choices=NETWORKS, default="loopback",
                        help="loopback (default): run in a network namespace whose only interface is loopback; "
                             "host: without one (TensorFlow's servers then listen on every interface)")
    parser.add_argument("--timeout", type=_cli.at_least(1), default=900, metavar="SECONDS",
                        help="time limit of each process; default: 900")
    parser.add_argument("--results", metavar="DIR",
                        help="keep each process's weights, predictions, numbers (.npz, .json) and log in DIR")
    parser.add_argument(_WORKER_FLAG, metavar="NAME", help=argparse.SUPPRESS)
    parser.add_argument(_INSIDE_FLAG, action="store_true", help=argparse.SUPPRESS)
    args = _cli.parse(parser, argv)
    if args.batch_size % args.workers:
        parser.error(f"--batch-size must be a multiple of --workers (each worker takes an equal share of the "
                     f"global batch), received: --batch-size {args.batch_size} --workers {args.workers}")
    return args


# --- One training process: a worker, or the one-process run ----------------------


def train(args, name, results_dir):
    """Trains, evaluates and predicts; writes `name`.npz and `name`.json into results_dir."""
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_bp
    from _data import flat_one_hot, load_mnist
    from mnist import build_model

    multi_worker = "TF_CONFIG" in os.environ
    if multi_worker:
        fixes = keras_bp.distribute.enable_multi_worker_fit()  # before the strategy and any fit
        # The strategy first: it must exist before other TensorFlow ops run.
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        fixes = ()
        strategy = tf.distribute.get_strategy()

    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test), description = load_mnist(args.data_dir)
    x_train, y_train = flat_one_hot(x_train[: args.limit or None], y_train[: args.limit or None])
    x_test, y_test = flat_one_hot(x_test, y_test)
    print(f"{name}: data: {description}; training on {len(x_train)}", flush=True)

    options = tf.data.Options()
    # Trap 14 (docs/traps.md): with OFF every worker would read the same examples.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA

    def pipeline(*arrays, batch_size, drop_remainder=False):
        dataset = tf.data.Dataset.from_tensor_slices(arrays if len(arrays) > 1 else arrays[0])
        return dataset.batch(batch_size, drop_remainder=drop_remainder).with_options(options)

    # Shuffled once, here, the same in every process. Not `Dataset.shuffle`,
    # which reshuffles each time the data is opened: under a strategy, Keras
    # opens it once more before the first epoch (trap 15, docs/traps.md), so
    # the workers' epochs would not be the one-process run's.
    order = np.random.default_rng(args.seed).permutation(len(x_train))
    x_train, y_train = x_train[order], y_train[order]
    # Whole global batches only: a last, smaller one would be split unevenly,
    # and the workers' mean of per-worker means would no longer be the batch mean.
    train_data = pipeline(x_train, y_train, batch_size=args.batch_size, drop_remainder=True)
    with strategy.scope():
        model = build_model(args.optimizer, args.learning_rate, args.jit_compile, args.layers)
    audit = keras_bp.callbacks.GradientAudit((x_train[:32], y_train[:32]), every=args.audit_every, verbose=0)
    model.fit(train_data, epochs=args.epochs, callbacks=[audit], verbose=args.verbose,
              shuffle=False)  # shuffled above
    loss, accuracy = model.evaluate(pipeline(x_test, y_test, batch_size=256), verbose=0)
    predictions = model.predict(pipeline(x_test, batch_size=256), verbose=0)

    weights = model.get_weights()
    np.savez(os.path.join(results_dir, f"{name}.npz"), predictions=predictions,
             **{f"weight_{k}": w for k, w in enumerate(weights)})
    numbers = {
        "name": name,
        "replicas": strategy.num_replicas_in_sync,
        "fixes": list(fixes),
        "steps": int(model.optimizer.iterations.numpy()),
        "loss": float(loss),
        "accuracy": float(accuracy),
        "audits": len(audit.records),
        "audits_passed": sum(r.passed for r in audit.records),
        "audit_summary": audit.summary(),
    }
    with open(os.path.join(results_dir, f"{name}.json"), "w") as f:
        json.dump(numbers, f)
    if multi_worker:
        barrier(strategy, results_dir)
    print(f"{name}: done", flush=True)


def barrier(strategy, results_dir, seconds=60):
    """None leaves while another still needs it: a last all-reduce, then a mark per worker in results_dir.

    The all-reduce alone is not enough: a worker that has its result may
    still be serving a peer's last receive of that same all-reduce, and if it
    exits then, the peer fails with gRPC's "Socket closed". So each worker,
    once its all-reduce has returned, writes `.done_<task>` and waits (up to
    `seconds`) until every worker's mark is there: by then every all-reduce
    has returned everywhere.
    """
    import tensorflow as tf

    def one():
        return tf.distribute.get_replica_context().all_reduce("SUM", tf.ones(()))

    @tf.function
    def all_workers():
        return strategy.run(one)

    all_workers()
    resolver = strategy.cluster_resolver
    marks = [os.path.join(results_dir, f".done_{task}") for task in range(resolver.cluster_spec().num_tasks("worker"))]
    open(marks[resolver.task_id], "w").close()
    deadline = time.monotonic() + seconds
    while not all(os.path.exists(mark) for mark in marks) and time.monotonic() < deadline:
        time.sleep(0.05)


def _exit_with_parent_or_deadline(parent, seconds):
    """A watchdog: ends this process when its launcher is gone or its time is up."""
    deadline = time.monotonic() + seconds

    def watch():
        while time.monotonic() < deadline and os.getppid() == parent:
            time.sleep(0.5)
        print("worker: launcher gone or time limit reached; exiting", file=sys.stderr, flush=True)
        os._exit(124)

    threading.Thread(target=watch, daemon=True).start()


# --- The launcher ------------------------------------------------------------------


def free_ports(n):
    """n ports that are free on 127.0.0.1 now (held together while picked, so they differ)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports, index):
    """Worker `index`'s TF_CONFIG for a cluster of workers on 127.0.0.1 at `ports`."""
    return {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}


def run_processes(commands, timeout, log_dir, show=None):
    """Runs (name, argv, env) commands at once; returns {name: exit status} (None: stopped by us).

    Each process gets its own session and writes to log_dir/<name>.log (the
    one named `show` writes to this process's output instead). When one
    fails, the others are stopped (a worker whose peer died would wait for
    it), and every process still running at `timeout` seconds or at the end
    is killed by its id.
    """
    processes = {}
    logs = []
    try:
        for name, argv, env in commands:
            if name == show:
                out = None
            else:
                out = open(os.path.join(log_dir, f"{name}.log"), "w")
                logs.append(out)
            processes[name] = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT if out else None,
                                               start_new_session=True)
        deadline = time.monotonic() + timeout
        status = {}
        while len(status) < len(processes) and time.monotonic() < deadline:
            for name, process in processes.items():
                if name not in status and process.poll() is not None:
                    status[name] = process.returncode
            if any(code != 0 for code in status.values()):
                break
            time.sleep(0.2)
        return {name: status.get(name) for name in processes}
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)  # its own session: the process and its children
                process.wait()
        for out in logs:
            out.close()


def only_loopback():
    """Whether this process's network namespace has no interface but loopback."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def bring_up_loopback():
    """Sets the loopback interface up (a new network namespace starts with it down)."""
    import fcntl
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, siocgifflags, request))[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sH22x", b"lo", flags | iff_up))


def private_network_command():
    """The command prefix that runs a program in a new network namespace, or None where none can be made."""
    unshare = shutil.which("unshare")
    if unshare is None or not sys.platform.startswith("linux"):
        return None
    prefix = [unshare, "--net", "--map-root-user", "--kill-child"]
    try:
        probe = subprocess.run(prefix + ["true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return prefix if probe.returncode == 0 else None


def launch(args, argv):
    """Starts the workers and the one-process run, compares them; returns the exit status."""
    if args.network == "loopback" and not args._inside and not only_loopback():
        prefix = private_network_command()
        if prefix is None:
            print("error: --network loopback needs a network namespace of its own (Linux `unshare --net "
                  "--map-root-user`), which cannot be made here. TensorFlow's servers listen on every "
                  "interface; to run anyway, pass --network host.", file=sys.stderr)
            return 2
        command = prefix + [sys.executable, os.path.abspath(__file__), *argv, _INSIDE_FLAG]
        try:
            return subprocess.run(command, timeout=args.timeout + 60).returncode
        except subprocess.TimeoutExpired:  # --kill-child: the namespace's processes die with unshare
            print(f"error: the run did not finish in {args.timeout} s", file=sys.stderr)
            return 1
    if args._inside:
        bring_up_loopback()
        if not only_loopback():
            print("error: the private network namespace has interfaces besides loopback", file=sys.stderr)
            return 2

    results_dir = args.results or tempfile.mkdtemp(prefix="multi_worker_")
    os.makedirs(results_dir, exist_ok=True)
    try:
        ports = free_ports(args.workers)
        where = "a network namespace with loopback only" if only_loopback() else "the host's network"
        print(f"cluster: {args.workers} workers on 127.0.0.1, ports {', '.join(map(str, ports))} ({where})",
              flush=True)
        script = [sys.executable, os.path.abspath(__file__), *argv, "--results", results_dir]
        single_env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
        commands = [(f"worker{i}", script + [_WORKER_FLAG, f"worker{i}"],
                     dict(single_env, TF_CONFIG=json.dumps(tf_config(ports, i)))) for i in range(args.workers)]
        commands.append(("single", script + [_WORKER_FLAG, "single"], single_env))
        for name, _, _ in commands:
            _remove(os.path.join(results_dir, f"{name}.json"))
        for i in range(args.workers):
            _remove(os.path.join(results_dir, f".done_{i}"))  # a reused --results folder's marks
        show = "worker0" if args.verbose else None
        status = run_processes(commands, args.timeout, results_dir, show=show)
        failed = [name for name, code in status.items() if code != 0]
        if failed:
            for name in failed:
                code = status[name]
                print(f"error: {name} " + ("was stopped" if code is None else f"exited with status {code}"),
                      file=sys.stderr)
                _print_log_tail(results_dir, name)
            return 1
        return report(results_dir, args.workers)
    finally:
        if args.results is None:
            shutil.rmtree(results_dir, ignore_errors=True)


def report(results_dir, workers):
    """Prints each process's numbers, then the comparison line; returns 0."""
    import numpy as np

    names = [f"worker{i}" for i in range(workers)] + ["single"]
    numbers, weights = {}, {}
    for name in names:
        with open(os.path.join(results_dir, f"{name}.json")) as f:
            numbers[name] = json.load(f)
        with np.load(os.path.join(results_dir, f"{name}.npz")) as saved:
            weights[name] = [saved[f"weight_{k}"] for k in range(len(saved.files) - 1)]
    for name in names:
        n = numbers[name]
        audit = n["audit_summary"].splitlines()[0]
        print(f"{name}: {n['steps']} steps, test loss {n['loss']:.4f}, accuracy {n['accuracy']:.4f}; {audit}")

    def max_difference(a, b):
        return max(float(np.max(np.abs(x - y))) for x, y in zip(weights[a], weights[b]))

    between = max(max_difference(f"worker{i}", "worker0") for i in range(workers))
    from_one = max(max_difference(f"worker{i}", "single") for i in range(workers))
    print(f"multi-worker: {workers} workers, max weight difference between workers {between:.3g}, "
          f"from one process {from_one:.3g}")
    return 0


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _print_log_tail(results_dir, name, lines=30):
    path = os.path.join(results_dir, f"{name}.log")
    if os.path.exists(path):
        with open(path, errors="replace") as f:
            tail = f.read().splitlines()[-lines:]
        print("\n".join(f"  {name}| {line}" for line in tail), file=sys.stderr)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args._worker:
        _exit_with_parent_or_deadline(os.getppid(), args.timeout)
        train(args, args._worker, args.results)
        sys.stdout.flush()
        sys.stderr.flush()
        # NOTE: an interpreter exit can wait on TensorFlow's gRPC threads; the results are written.
        os._exit(0)
    return launch(args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
