"""The ``fastnn`` command: ``fastnn train``, ``demo``, ``config``, ``bench`` and ``profile``."""
import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from . import bench as benchmarks
from . import datasets, kernels
from .bench import profile as profiling
from .bench.timing import Timer, measure
from .config import show_config
from .model import mlp
from .optim import CosineDecay, get_optimizer
from .train import EarlyStopping


def demo(batch=256, n_in=784, n_out=256, dtype=np.float32, repeats=20, seed=0, file=None):
    """One training step of a dense ReLU layer under a softmax cross-entropy
    loss on every backend; prints each one's loss, its deviation from the NumPy
    reference and its median time, and returns {backend: (loss, seconds)}."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, n_in)).astype(dtype)
    labels = rng.integers(0, n_out, batch)
    n_weights = n_in * n_out
    initial = np.concatenate([rng.standard_normal(n_weights) * np.sqrt(2 / n_in), np.zeros(n_out)])
    A, grad, dZ = (np.empty((batch, n_out), dtype) for _ in range(3))
    flat_grad = np.empty(n_weights + n_out, dtype)
    dW, db = flat_grad[:n_weights].reshape(n_in, n_out), flat_grad[n_weights:]

    def step(backend, params, velocity):
        W, b = params[:n_weights].reshape(n_in, n_out), params[n_weights:]
        backend.dense_forward(X, W, b, A, "relu")
        loss = backend.softmax_cross_entropy(A, labels, grad)
        backend.activation_backward(A, grad, dZ, "relu")
        backend.dense_backward(X, W, dZ, dW, db)
        backend.sgd_update(params, flat_grad, velocity, 0.1, 0.9, False, 0.0)
        return loss

    print(f"one training step: dense {batch}x{n_in} -> {n_out} relu, softmax cross-entropy, "
          f"backward, SGD with momentum; {np.dtype(dtype).name}", file=file)
    results, reference_params = {}, None
    for name in ["numpy"] + [n for n in kernels.available_backends() if n != "numpy"]:
        backend = kernels.get_backend(name)
        params, velocity = initial.astype(dtype), np.zeros(initial.size, dtype)
        loss = step(backend, params, velocity)
        if reference_params is None:
            reference_params = params.copy()
        error = np.abs(params - reference_params).max()
        seconds = measure({name: lambda: step(backend, params, velocity)}, repeats, min_time=0)[name]
        results[name] = (loss, seconds)
        print(f"  {name:7s} loss {loss:.6f}  max |params - numpy| {error:.1e}  "
              f"median {seconds * 1e3:7.3f} ms", file=file)
    return results


TEST_FRACTION = 0.2
# Where fastnn train and fastnn bench look for the MNIST files without --data-dir
# (bench.default_data_dir).
DATA_DIR_DEFAULT = "$FASTNN_DATA, else ../shared/data"
SPLIT_HELP = ("digits, circles and xor: a seeded stratified 80/20 split (--seed); mnist: the train "
              "and t10k files, or with t10k alone a fixed split of its first 80% for training and "
              "its last 20% for testing (8000 / 2000 images)")


def load_dataset(name, data_dir=None, seed=0):
    """(X_train, y_train, X_test, y_test, how it was split) for a built-in dataset."""
    if name == "mnist":
        X, y = datasets.load_mnist(data_dir, "t10k")
        try:
            return (*datasets.load_mnist(data_dir, "train"), X, y, "train / t10k files")
        except FileNotFoundError:
            n = round(len(y) * (1 - TEST_FRACTION))
            return X[:n], y[:n], X[n:], y[n:], f"t10k set, first {n} / last {len(y) - n}"
    generators = {"digits": datasets.digits, "circles": lambda: datasets.circles(seed=seed),
                  "xor": lambda: datasets.xor(seed=seed)}
    X, y = generators[name]()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=TEST_FRACTION, stratify=y,
                                                        random_state=seed)
    return X_train, y_train, X_test, y_test, "seeded stratified 80/20 split"


def _int_at_least(text, low):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}; got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}; got {value}")
    return value


def _positive_int(text):
    return _int_at_least(text, 1)


def _seed(text):
    return _int_at_least(text, 0)


def _batch_size(text):
    if text == "full":
        return text
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 or 'full'; got {text!r}") from None


def _finite_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number; got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number; got {text!r}")
    return value


def _fraction(text):
    value = _finite_float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1); got {text!r}")
    return value


def _positive_float(text):
    value = _finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0; got {text!r}")
    return value


def _non_negative_float(text):
    value = _finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0; got {text!r}")
    return value


def _hidden_sizes(text):
    try:
        return [_positive_int(size) for size in text.split(",")] if text.strip() else []
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1 such as 64,32; "
                                         f"got {text!r}") from None


def _add_train_parser(commands):
    parser = commands.add_parser(
        "train", help="train an MLP on a built-in dataset and report its test accuracy",
        description="Train an MLP on a built-in dataset, then print its test accuracy and the "
                    f"training throughput. Splits: {SPLIT_HELP}.")
    parser.add_argument("--dataset", choices=["digits", "circles", "xor", "mnist"], default="digits",
                        help="digits: scikit-learn's 8x8 digits; circles, xor: 1000 synthetic 2-D points; "
                             "mnist: IDX files from --data-dir (default: %(default)s)")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="directory holding the MNIST IDX files (raw or .gz), directly or in its "
                             f"mnist/ subdirectory (default: {DATA_DIR_DEFAULT})")
    parser.add_argument("--layers", type=_hidden_sizes, default="64", metavar="SIZES",
                        help="hidden layer sizes, comma-separated, '' for none; the input and output "
                             "sizes come from the data (default: %(default)s)")
    parser.add_argument("--activation", choices=["relu", "tanh", "sigmoid", "leaky_relu"], default="relu",
                        help="hidden layer activation (default: %(default)s)")
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="adam", help="(default: %(default)s)")
    parser.add_argument("--lr", type=_positive_float,
                        help="learning rate (default: adam 0.001, sgd 0.01)")
    parser.add_argument("--momentum", type=_non_negative_float, help="SGD momentum (default: 0)")
    parser.add_argument("--weight-decay", type=_non_negative_float, default=0.0,
                        help="L2 weight decay added to the gradient (default: %(default)s)")
    parser.add_argument("--schedule", choices=["constant", "cosine"], default="constant",
                        help="learning rate: constant, or cosine decay to 0 over the epochs "
                             "(default: %(default)s)")
    parser.add_argument("--dropout", type=_fraction, default=0.0,
                        help="dropout rate after every hidden layer (default: %(default)s)")
    parser.add_argument("--batch-size", type=_batch_size, default=32,
                        help="samples per update: an integer, 1 for online SGD, or 'full' "
                             "(default: %(default)s)")
    parser.add_argument("--epochs", type=_positive_int, default=20, help="(default: %(default)s)")
    parser.add_argument("--validation-split", type=_fraction, default=0.0, metavar="FRACTION",
                        help="hold out this fraction of the training set (seeded) and report its loss "
                             "and accuracy per epoch (default: %(default)s)")
    parser.add_argument("--early-stopping", type=_positive_int, metavar="PATIENCE",
                        help="stop after PATIENCE epochs without a better validation loss (the training "
                             "loss without --validation-split) and keep the best epoch's weights")
    parser.add_argument("--threads", type=_positive_int,
                        help="threads to train on (default: $FASTNN_NUM_THREADS, else one or two by "
                             "the size of a step and the cores free to this process)")
    parser.add_argument("--backend", choices=["numpy", "numba", "cython"],
                        help="kernel backend (default: $FASTNN_BACKEND or the fastest available)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                        help="(default: %(default)s)")
    parser.add_argument("--seed", type=_seed, default=0,
                        help="seeds the split, the synthetic data, the weights and the shuffling "
                             "(default: %(default)s)")
    parser.add_argument("--save", metavar="PATH", help="write the trained model to PATH")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def train(args, parser):
    """Run ``fastnn train``: returns the exit code."""
    if args.data_dir is not None and args.dataset != "mnist":
        parser.error("--data-dir applies to --dataset mnist only")
    if args.momentum is not None and args.optimizer != "sgd":
        parser.error("--momentum applies to --optimizer sgd only")
    if args.save and not Path(args.save).parent.is_dir():
        parser.error(f"--save: directory {str(Path(args.save).parent)!r} does not exist")
    try:
        backend = kernels.get_backend(args.backend)
    except ValueError as error:
        parser.error(f"--backend: {error}")
    data_dir = args.data_dir or benchmarks.default_data_dir()
    try:
        X_train, y_train, X_test, y_test, split = load_dataset(args.dataset, data_dir, args.seed)
    except (OSError, ValueError, ImportError) as error:
        default = "" if args.data_dir else f"; the default: {DATA_DIR_DEFAULT}"
        where = f" (--data-dir {data_dir}{default})" if args.dataset == "mnist" else ""
        return _fail("train", f"{_one_line(error)}{where}")
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    sizes = [X_train.shape[1], *args.layers, n_classes]

    def build():
        return mlp(sizes, activation=args.activation, dropout=args.dropout, dtype=args.dtype, seed=args.seed)

    def new_optimizer():
        options = {"weight_decay": args.weight_decay}
        if args.lr is not None:
            options["lr"] = args.lr
        if args.momentum is not None:
            options["momentum"] = args.momentum
        if args.schedule == "cosine":
            options["schedule"] = CosineDecay(args.epochs)
        return get_optimizer(args.optimizer, **options)

    model, optimizer = build(), new_optimizer()
    settings = f"{args.optimizer} lr {optimizer.lr:g}"
    if args.optimizer == "sgd":
        settings += f" momentum {optimizer.momentum:g}"
    extras = [f"{name} {value:g}" for name, value in (("dropout", args.dropout), ("weight decay", args.weight_decay))
              if value] + (["cosine decay"] if args.schedule == "cosine" else [])
    print(f"{args.dataset}: {len(X_train)} training / {len(X_test)} test samples, {X_train.shape[1]} "
          f"features, {n_classes} classes ({split})")
    print(f"model {'-'.join(map(str, sizes))} {args.activation}, {settings}{''.join(', ' + e for e in extras)}, "
          f"batch size {args.batch_size}, {args.epochs} epochs, {backend.name} backend, {args.dtype}")
    stopper = None if args.early_stopping is None else EarlyStopping(patience=args.early_stopping)
    with kernels.use_backend(backend.name):
        # A short fit of a throw-away copy compiles (or loads from Numba's cache) the code the
        # real fit runs, so that its samples/s measure training, not compilation.
        warm_rows = len(X_train) if args.batch_size == "full" else min(len(X_train), 2 * args.batch_size)
        with Timer() as warm_up:
            build().fit(X_train[:warm_rows], y_train[:warm_rows], optimizer=new_optimizer(), epochs=1,
                        batch_size=args.batch_size, seed=args.seed, verbose=0, n_threads=args.threads)
        print(f"warm-up (compiles on the first run only): {warm_up.seconds:.2f} s")
        try:
            with Timer() as training:
                history = model.fit(X_train, y_train, optimizer=optimizer, epochs=args.epochs,
                                    batch_size=args.batch_size, seed=args.seed, verbose=0 if args.quiet else 1,
                                    validation_split=args.validation_split, early_stopping=stopper,
                                    n_threads=args.threads)
        except ValueError as error:
            return _fail("train", _one_line(error))
        seconds = training.seconds
        accuracy = model.evaluate(X_test, y_test)["accuracy"]
    samples = (len(X_train) - int(round(args.validation_split * len(X_train)))) * len(history)
    if history.val_loss and history.val_loss[-1] is not None:
        print(f"validation accuracy {history.val_metric[-1]:.4f} after epoch {history.epoch[-1]}")
    if history.stop_reason == "early_stopping":
        print(f"early stopping after epoch {history.epoch[-1]}; kept epoch {history.best_epoch}")
    print(f"test accuracy {accuracy:.4f}")
    print(f"training: {samples:,} samples in {seconds:.2f} s, {samples / seconds:,.0f} samples/s")
    if args.save:
        try:
            model.save(args.save)
        except OSError as error:
            return _fail("train", f"cannot save the model: {_one_line(error)}")
        print(f"model saved to {args.save}")
    return 0


def _one_line(error):
    """An error's message on one line."""
    return " ".join(str(error).split())


def _fail(command, message):
    """Print ``fastnn COMMAND: error: MESSAGE`` on stderr; returns the exit status 2."""
    print(f"fastnn {command}: error: {message}", file=sys.stderr)
    return 2


def _add_bench_parser(commands):
    parser = commands.add_parser(
        "bench", help="run the benchmark cases; write results.json and PNG plots",
        description="Time the kernels of every backend, training throughput per batch size, time to "
                    "test accuracy on the MNIST digits, naive vs backprop gradient cost, and many models "
                    "at once (15 seeds one fit after another, by fastnn.sweep, as one fastnn.Stack, and "
                    "the peers' stacked models); write "
                    "results.json and PNG plots into --out. Run it as `env -u OPENBLAS_CORETYPE "
                    "-u OPENBLAS_L2_SIZE fastnn bench` (docs/benchmarks.md).")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a reduced set that runs in under a minute")
    size.add_argument("--full", action="store_true",
                      help="every kernel shape, and gradient nets up to 1e5 parameters (10-15 minutes)")
    parser.add_argument("--out", default="fastnn-bench", metavar="DIR", help="(default: %(default)s)")
    parser.add_argument("--data-dir", metavar="DIR",
                        help=f"where the MNIST t10k files are (default: {DATA_DIR_DEFAULT})")
    parser.add_argument("--no-peers", action="store_true",
                        help="leave PyTorch, JAX and scikit-learn out of the throughput and many-models cases")
    parser.add_argument("--study", choices=sorted(benchmarks.STUDIES),
                        help="also time the configuration study, 16 configurations x 15 seeds (full: minutes) "
                             "or 4 x 15 (quick), as one fastnn.Stack per configuration against fastnn.sweep")
    return parser


def bench(args):
    """Run ``fastnn bench``: returns the exit code."""
    plan = dict(benchmarks.PLANS["quick" if args.quick else "full" if args.full else "default"], study=args.study)
    try:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"fastnn bench: error: cannot create --out {args.out!r}: {error}", file=sys.stderr)
        return 1
    results = benchmarks.run(plan, args.data_dir, stream=sys.stderr, with_peers=not args.no_peers)
    for path in benchmarks.write_outputs(results, args.out):
        print(f"wrote {path}")
    cost = results["gradient_cost"]
    line = (f"gradient cost log-log slopes: naive {cost['naive_slope']:.2f}, backprop {cost['backprop_slope']:.2f}, "
            f"ratio {cost['ratio_slope']:.2f}")
    if cost["naive_slope_largest"] is not None:
        line += (f" (three largest sizes: naive {cost['naive_slope_largest']:.2f}, "
                 f"backprop {cost['backprop_slope_largest']:.2f})")
    print(line)
    if results["time_to_accuracy"]["skipped"]:
        print(f"time to accuracy skipped: {results['time_to_accuracy']['skipped']}")
    return 0


def _add_profile_parser(commands):
    parser = commands.add_parser(
        "profile", help="time one kernel on every backend, split a training step by kernel, or time the BLAS "
                        "providers",
        description="--kernel: every backend's variant of one kernel on the same arrays. --model: one "
                    "training step of the per-module path, kernel call by kernel call, with its share "
                    "of the step. --blas: the matrix products of a training step on every BLAS provider "
                    "on this machine (fastnn.set_blas, FASTNN_BLAS), on one thread and on every core.")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--kernel", choices=kernels.KERNELS, help="the kernel to time")
    what.add_argument("--model", metavar="SIZES", help="layer sizes of an MLP, e.g. 784,256,128,10")
    what.add_argument("--blas", action="store_true",
                      help="every BLAS provider's GFLOP/s on the products of a 784-256-128-10 step at --batch-size")
    parser.add_argument("--shape", metavar="B,IN,OUT",
                        help="--kernel: batch, input and output size of the layer (default: 256,784,256)")
    parser.add_argument("--batch-size", type=_positive_int, default=128,
                        help="--model, --blas (default: %(default)s)")
    parser.add_argument("--activation", choices=["relu", "tanh", "sigmoid", "leaky_relu"], default="relu",
                        help="--model (default: %(default)s)")
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd", help="--model (default: %(default)s)")
    parser.add_argument("--backend", choices=["numpy", "numba", "cython"],
                        help="--model (default: $FASTNN_BACKEND or the fastest available)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="(default: %(default)s)")
    parser.add_argument("--repeats", type=_positive_int, default=15,
                        help="kernel repeats, or profiled steps (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def profile(args, parser):
    """Run ``fastnn profile``: returns the exit code."""
    if args.shape and not args.kernel:
        parser.error("--shape applies to --kernel; --model and --blas take --batch-size")
    if args.blas:
        result = profiling.profile_blas(args.batch_size)
        print(json.dumps(result, indent=1) if args.json else profiling.format_blas(result))
        return 0
    try:
        sizes = profiling.parse_sizes(args.shape or "256,784,256", 3) if args.kernel else \
            profiling.parse_sizes(args.model)
        backend = kernels.get_backend(args.backend).name
    except ValueError as error:
        parser.error(str(error))
    if args.kernel:
        result = profiling.profile_kernel(args.kernel, sizes, args.dtype, repeats=args.repeats)
    else:
        result = profiling.profile_step(sizes, args.batch_size, args.activation, args.optimizer, backend,
                                        args.dtype, steps=args.repeats)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(profiling.format_kernel(result) if args.kernel else profiling.format_step(result))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastnn", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = _add_train_parser(commands)
    demo_parser = commands.add_parser("demo", help="run one training step on every kernel backend")
    demo_parser.add_argument("--batch-size", type=int, default=256)
    demo_parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    commands.add_parser("config", help="show backends, BLAS, OpenMP, Numba and versions")
    _add_bench_parser(commands)
    profile_parser = _add_profile_parser(commands)
    args = parser.parse_args(argv)
    try:
        kernels.get_backend()  # a bad FASTNN_BACKEND is an error of every command
    except ValueError as error:
        return _fail(args.command, _one_line(error))
    if args.command == "train":
        return train(args, train_parser)
    if args.command == "bench":
        return bench(args)
    if args.command == "profile":
        return profile(args, profile_parser)
    if args.command == "demo":
        if args.batch_size < 1:
            parser.error(f"--batch-size must be >= 1; got {args.batch_size}")
        demo(batch=args.batch_size, dtype=np.dtype(args.dtype))
    else:
        show_config()
    return 0


if __name__ == "__main__":
    sys.exit(main())
