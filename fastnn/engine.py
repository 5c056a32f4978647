"""The training engine: whole epochs of a Dense + activation network in one compiled call.

``fit`` asks :func:`plan` whether the model, loss and optimizer suit the
engine; when they do, an :class:`Engine` holds the prepared arrays and the
workspaces (allocated once per model and batch size) and runs chunks of
epochs in the backend's compiled loop (kernels/numba_engine.py or
kernels/cython_engine.pxi), with the arguments kernels/abi.py names. Anything
else falls back to the per-module path in fastnn/train.py, which computes the
same numbers one layer call at a time. How many threads it trains on is
fastnn/threads.py's choice.
"""
import sys
import time
import weakref
from collections import OrderedDict

import numpy as np

from . import kernels, threads
from .kernels import abi
from .kernels.contract import BLAS_MAX_DIM, disjoint
from .layers import Dense, Identity, LeakyReLU, ReLU, Sigmoid, Tanh
from .losses import MSE, BCEWithLogits, SoftmaxCrossEntropy
from .optim import SGD, Adam
from .validation import check_positive_int

ENGINE_MODULES = {"numba": "numba_engine", "cython": "cython_engine"}
ACTIVATIONS = (Identity, ReLU, LeakyReLU, Sigmoid, Tanh)
LOSSES = (SoftmaxCrossEntropy, MSE, BCEWithLogits)
WORKSPACES_KEPT = 4


def engine_module(backend_name):
    """The compiled engine of a backend, or None when that backend has none; for cython,
    its AVX2 + FMA build where the CPU has both and it was built."""
    module_name = ENGINE_MODULES.get(backend_name)
    if module_name is None:
        return None
    try:
        return kernels.import_build(module_name)
    except ImportError:
        return None


def unsupported(model, loss, optimizer):
    """Why the engine cannot train this model, loss and optimizer; None when it can."""
    if not getattr(model, "trains_as_chain", False):
        return ("the engine trains Sequential models whose forward and backward are Sequential's; got "
                f"{type(model).__name__}")
    previous = None
    for layer in model.layers:
        if type(layer) is Dense:
            previous = layer
            continue
        if type(layer) not in ACTIVATIONS:
            return f"the engine supports Dense layers and {[a.__name__ for a in ACTIVATIONS]}; got {layer!r}"
        if type(previous) is not Dense:
            return f"{layer!r} must follow a Dense layer for the engine"
        previous = layer
    if type(model.layers[0]) is not Dense:
        return "the engine needs a Dense layer first"
    if type(loss) not in LOSSES:
        return f"the engine supports the losses {[c.__name__ for c in LOSSES]}; got {loss!r}"
    if type(optimizer) not in (SGD, Adam):
        return f"the engine supports SGD and Adam; got {optimizer!r}"
    return None


def plan(engine, model, loss, optimizer, verbose=0):
    """The engine module fit should use, or None for the per-module path.

    engine: 'auto' (the engine when the model is supported and the selected backend
    is numba or cython; with verbose >= 1, one line on stderr says why not), True (the
    engine or an error saying why not), False.
    """
    if engine is False:
        return None
    if engine not in ("auto", True):
        raise ValueError(f"engine must be 'auto', True or False; got {engine!r}")
    reason = unsupported(model, loss, optimizer)
    backend = kernels.get_backend().name
    module = engine_module(backend)
    if reason is None and module is None:
        reason = f"the selected backend {backend!r} has no compiled engine (use numba or cython)"
    if reason is not None:
        if engine is True:
            raise ValueError(f"engine=True: {reason}")
        if verbose:
            print(f"fastnn: fit trains without the compiled engine, one module call at a time (slower): "
                  f"{reason}", file=sys.stderr, flush=True)
        return None
    return module


def layer_table(model, batch):
    """The compiled loops' layer table for batches of up to ``batch`` rows (int64, the
    columns of kernels/abi.py: offsets, sizes and activation codes) and the float64
    leaky_relu slopes."""
    dense = model.dense_layers
    layers = np.zeros((len(dense), len(abi.LAYER_COLUMNS)), np.int64)
    alphas = np.zeros(len(dense), np.float64)
    w_offset, inputs, outputs = 0, 0, batch * model.n_features
    for i, (layer, (code, alpha)) in enumerate(zip(dense, _activation_codes(model))):
        layers[i] = (w_offset, layer.in_features, layer.out_features, code, inputs, outputs)
        alphas[i] = alpha
        w_offset += layer.n_params
        inputs, outputs = outputs, outputs + batch * layer.out_features
    return layers, alphas


class Workspace:
    """Buffers for training a model laid out as ``layers`` (layer_table's) with batches of
    up to ``batch`` rows, as kernels/abi.py describes."""

    def __init__(self, model, batch, layers, alphas):
        dtype = model.dtype
        self.layers, self.alphas = layers, alphas
        size = int(layers[-1, abi.OUT_OFFSET] + batch * layers[-1, abi.N_OUT])
        self.acts = np.zeros(size, dtype)
        self.deltas = np.zeros(size, dtype)
        self.twork = np.zeros((batch, model.n_outputs), dtype)
        self.wwork = np.zeros(batch, dtype)
        self.lwork = np.zeros(batch, np.int64)
        self.backup = np.zeros((3, model.n_params), dtype)


def _activation_codes(model):
    """(activation code, alpha) after each Dense layer; identity where none follows."""
    codes = []
    for layer in model.layers:
        if type(layer) is Dense:
            codes.append((kernels.ACTIVATIONS["identity"], 0.0))
        else:
            codes[-1] = (kernels.ACTIVATIONS[layer.name], float(layer.alpha))
    return codes


_workspaces = weakref.WeakKeyDictionary()


def workspace(model, batch):
    """The model's Workspace for this batch size and layer table, allocated on first use
    and keyed by everything that sizes or fills it (batch, dtype, the table), so a model
    whose layout or activations changed never gets an old one; the few most recently
    used are kept."""
    layers, alphas = layer_table(model, batch)
    key = (batch, model.dtype.str, layers.tobytes(), alphas.tobytes())
    kept = _workspaces.setdefault(model, OrderedDict())
    if key in kept:
        kept.move_to_end(key)
    else:
        kept[key] = Workspace(model, batch, layers, alphas)
        while len(kept) > WORKSPACES_KEPT:
            kept.popitem(last=False)
    return kept[key]


def _is_view(view, buffer, start, shape):
    """Whether view is the C-contiguous (shape) block of the flat buffer from index start."""
    address = buffer.__array_interface__["data"][0] + start * buffer.itemsize
    return (isinstance(view, np.ndarray) and view.shape == shape and view.dtype == buffer.dtype
            and view.flags.c_contiguous and view.__array_interface__["data"][0] == address)


def _check_shape(name, a, shape, dtype, detail=""):
    """ValueError unless a is a writable C-contiguous array of this shape and dtype; the
    message names it by name and detail (joined only then: run checks on every call)."""
    if not (isinstance(a, np.ndarray) and a.shape == shape and a.dtype == dtype and a.flags.c_contiguous
            and a.flags.writeable):
        name = f"{name} {detail}".strip()
        raise ValueError(f"engine: {name} must be a writable C-contiguous {np.dtype(dtype)} array of shape "
                         f"{shape}; got {getattr(a, 'dtype', type(a).__name__)} of shape {np.shape(a)}")


def _writable(a):
    """a itself, or a writable copy: compiled code is specialised on read-only arrays."""
    return a if a.flags.writeable else a.copy()


def compiles(run, args):
    """Whether calling the engine loop ``run`` with args compiles it first: a Numba loop
    with no machine code for these argument types in this process or in Numba's on-disk
    cache. False for the Cython engine, and where Numba's cache cannot be read as
    expected (the notice is then left out, never the training)."""
    dispatcher = getattr(run, "compiled", None)
    if dispatcher is None:
        return False
    try:
        signature = tuple(dispatcher.typeof_pyval(a) for a in args)
        if signature in dispatcher.overloads:
            return False
        cache = dispatcher._cache
        return cache._index_key(signature, dispatcher.targetctx.codegen()) not in cache._cache_file._load_index()
    except Exception:  # Numba internals of another version
        return False


def _compiling_notice(run, args, dtype):
    """A line on stderr before a call of run that compiles it: the first fit of the Numba
    engine for a dtype and loop spends tens of seconds there, once (Numba caches it).
    Returns the start time, or None when nothing compiles."""
    if not compiles(run, args):
        return None
    loop = "online" if run.__name__ == "run_online" else "mini-batch"
    print(f"fastnn: compiling the Numba engine's {loop} loop for {np.dtype(dtype).name} (first run "
          "only: later runs load it from Numba's cache) ...", file=sys.stderr, flush=True)
    return time.perf_counter()


class Failure:
    """Where a chunk stopped on a non-finite loss, and the state at that epoch's start."""

    def __init__(self, epoch, batch, value, params, state, steps):
        self.epoch, self.batch, self.value = epoch, batch, value
        self.params, self.state, self.steps = params, state, steps


class Engine:
    """Compiled training of one model with one loss and optimizer on prepared arrays."""

    def __init__(self, module, model, loss, optimizer, X, targets, weight, batch, clip_norm, n_threads=1):
        """n_threads as fit's (None: threads.thread_count's choice); self.threads are the engine's
        own threads, self.blas_threads those BLAS should run with."""
        self.model, self.optimizer, self.batch = model, optimizer, batch
        own = threads.own_threads(module, clip_norm, model, batch)
        count = threads.thread_count(n_threads, model, batch, own)
        # The engine's threads spin at barriers: more threads than cores would wait for
        # one another's time slices at every layer.
        self.threads = min(count, threads.available_cores()) if own else 1
        self.blas_threads = 1 if own else count
        self.run_epochs = module.run_online if batch == 1 else module.run_batches
        self.X = _writable(X)
        dtype = model.dtype
        self.loss_code = loss.engine_code(targets)
        if self.loss_code == abi.CROSS_ENTROPY:
            self.labels, self.targets = _writable(targets), np.zeros((0, model.n_outputs), dtype)
        else:
            self.labels, self.targets = np.zeros(0, np.int64), _writable(targets)
        self.weights = np.zeros(0, dtype) if weight is None else _writable(weight)
        self.optimizer_code = abi.SGD if isinstance(optimizer, SGD) else abi.ADAM
        self.clip_norm = 0.0 if clip_norm is None else float(clip_norm)
        self.work = workspace(model, batch)
        self.no_orders = np.zeros((0, 0), np.int64)
        self.checked = False  # whether run asked if its first call compiles
        self._check_layout()

    def _check_layout(self):
        """ValueError unless the arrays agree on the layout the compiled loops trust: each
        Dense layer's W, b, dW, db are the views of the flat buffers the layer table points
        at, the table covers the buffers exactly, X has the first layer's inputs and the
        targets the last layer's outputs, the workspace has the table's sizes, every size
        fits BLAS, and nothing the loops write overlaps another array. Run once per fit,
        before any compiled code."""
        model, work, batch = self.model, self.work, self.batch
        params, grads, dtype = model.params, model.grads, model.dtype
        layers = work.layers
        _check_shape("params", params, params.shape, dtype)
        _check_shape("grads", grads, params.shape, dtype)
        end = inputs = 0
        width = int(layers[0, abi.N_IN])
        for i, layer in enumerate(model.dense_layers):
            w, n_in, n_out, _, in_offset, out_offset = (int(v) for v in layers[i])
            if (w, n_in, in_offset, out_offset) != (end, width, inputs, inputs + batch * n_in):
                raise ValueError(f"engine: layer {i} of the layer table does not follow layer {i - 1}")
            end, width, inputs = w + n_in * n_out + n_out, n_out, out_offset
            for name, view, buffer, start, shape in (
                    ("W", layer.W, params, w, (n_in, n_out)), ("b", layer.b, params, w + n_in * n_out, (n_out,)),
                    ("dW", layer.dW, grads, w, (n_in, n_out)), ("db", layer.db, grads, w + n_in * n_out, (n_out,))):
                if not _is_view(view, buffer, start, shape):
                    raise ValueError(f"engine: {name} of {layer!r} (Dense layer {i}) is not its view of the "
                                     "model's flat buffers; the model was changed after it was built")
        n, n_in, n_out = len(self.X), int(layers[0, abi.N_IN]), int(layers[-1, abi.N_OUT])
        if end != params.size:
            raise ValueError(f"engine: the layer table does not cover the model's {params.size} parameters")
        if max(batch, n_out, *layers[:, abi.N_IN]) > BLAS_MAX_DIM:
            raise ValueError(f"engine: batch size and layer sizes must be at most {BLAS_MAX_DIM} (BLAS's sizes)")
        _check_shape("X", self.X, (n, n_in), dtype)
        _check_shape("labels", self.labels, (n if self.loss_code == abi.CROSS_ENTROPY else 0,), np.int64)
        if self.labels.size and not (self.labels.min() >= 0 and self.labels.max() < n_out):
            raise ValueError(f"engine: labels must lie in [0, {n_out})")
        _check_shape("targets", self.targets, (0 if self.loss_code == abi.CROSS_ENTROPY else n, n_out), dtype)
        _check_shape("sample weights", self.weights, (n if self.weights.size else 0,), dtype)
        size = int(layers[-1, abi.OUT_OFFSET]) + batch * n_out
        for name, a, shape, kind in (("acts", work.acts, (size,), dtype), ("deltas", work.deltas, (size,), dtype),
                                     ("twork", work.twork, (batch, n_out), dtype), ("wwork", work.wwork, (batch,), dtype),
                                     ("lwork", work.lwork, (batch,), np.int64),
                                     ("backup", work.backup, (3, params.size), dtype)):
            _check_shape(f"workspace {name}", a, shape, kind)
        self._state()
        disjoint({"params": params, "grads": grads, "acts": work.acts, "deltas": work.deltas, "twork": work.twork,
                  "wwork": work.wwork, "lwork": work.lwork, "backup": work.backup},
                 {"X": self.X, "labels": self.labels, "targets": self.targets, "sample weights": self.weights})

    def _hyper(self):
        """The optimizer's hyper-parameters as a record array of one abi.HYPER."""
        opt = self.optimizer
        hyper = np.zeros(1, abi.HYPER)
        hyper["lr"], hyper["weight_decay"], hyper["clip_norm"] = opt.lr, opt.weight_decay, self.clip_norm
        if isinstance(opt, SGD):
            hyper["momentum"], hyper["nesterov"] = opt.momentum, opt.nesterov
        else:
            hyper["beta1"], hyper["beta2"] = opt.betas
            hyper["eps"], hyper["decoupled"] = opt.eps, opt.decoupled
        return hyper

    def _state(self):
        """The optimizer's state buffers (SGD: velocity and an empty one; Adam: m and v), checked
        against the parameters: the optimizer may have been re-bound since the last call."""
        opt, params = self.optimizer, self.model.params
        state = [opt.state.get(name) for name in opt.state_names]
        written = [params, self.model.grads, self.work.backup]
        for name, buffer in zip(opt.state_names, state):
            _check_shape("optimizer state", buffer, params.shape, params.dtype, name)
            for other in written:
                if np.may_share_memory(buffer, other):
                    raise ValueError(f"engine: optimizer state {name} must not overlap the model's or another "
                                     "state buffer")
            written.append(buffer)
        return (state[0], np.zeros(0, params.dtype)) if isinstance(opt, SGD) else tuple(state)

    def run(self, orders, n_epochs):
        """Train n_epochs in one call; orders is (n_epochs, n) or None (in order).

        Returns (per-epoch loss sums, per-epoch metric sums, Failure or None) for the
        epochs completed; the optimizer's step count is updated.
        """
        model, work = self.model, self.work
        n_epochs = check_positive_int("n_epochs", n_epochs)
        if orders is not None:
            _check_shape("orders", orders, (n_epochs, len(self.X)), np.int64)
            if not (orders.min() >= 0 and orders.max() < len(self.X)):
                raise ValueError(f"engine: orders must hold sample indices in [0, {len(self.X)})")
        state_a, state_b = self._state()
        stats = np.zeros((n_epochs, 2), np.float64)
        args = (abi.Model(model.params, model.grads, state_a, state_b, work.layers, work.alphas, self._hyper()),
                abi.Data(self.X, self.labels, self.targets, self.weights, self.no_orders if orders is None else orders),
                abi.Work(work.acts, work.deltas, work.twork, work.wwork, work.lwork, work.backup, stats),
                abi.Run(self.optimizer_code, self.loss_code, self.optimizer.steps, n_epochs, self.batch, self.threads))
        started = None if self.checked else _compiling_notice(self.run_epochs, args, model.dtype)
        self.checked = True
        done, index, steps, value = self.run_epochs(*args)
        if started is not None:
            print(f"fastnn: compiled in {time.perf_counter() - started:.1f} s (with a training chunk)",
                  file=sys.stderr, flush=True)
        self.optimizer.steps = int(steps)
        failure = None
        if done < n_epochs:
            names = self.optimizer.state_names
            state = {name: work.backup[1 + i, :len(self.optimizer.state[name])] for i, name in enumerate(names)}
            failure = Failure(int(done), int(index), float(value), work.backup[0], state, int(steps) - int(index))
        return stats[:done, 0], stats[:done, 1], failure

