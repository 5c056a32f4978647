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
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import aligned, kernels, threads
from .kernels import abi
from .engine_layout import check_layout, check_shape, is_view
from .layers import Dense, Identity, LeakyReLU, ReLU, Sigmoid, Tanh
from .losses import MSE, BCEWithLogits, SoftmaxCrossEntropy
from .optim import SGD, Adam
from .sparse import SparseRows
from .validation import check_positive_int

ENGINE_MODULES = {"numba": "numba_engine", "cython": "cython_engine"}
ACTIVATIONS = (Identity, ReLU, LeakyReLU, Sigmoid, Tanh)
LOSSES = (SoftmaxCrossEntropy, MSE, BCEWithLogits)
WORKSPACES_KEPT = 4
# The first layer multiplies a sparse X entry by entry (the csr_ kernels: each stored
# entry adds its row of W) where that was measured faster than densifying each batch for
# BLAS: on one thread per model, for batches of CSR_MIN_BATCH up to the engine module's
# CSR_MAX_BATCH rows (a model alone) or CSR_MAX_BATCH_STACKED (the models of a stack on
# threads of their own), with at most CSR_MAX_DENSITY of X's entries stored; a dense X
# that qualifies is made sparse first (docs/engine.md has the measurements).
CSR_MIN_BATCH = 8
CSR_MAX_DENSITY = 0.25
DENSITY_SAMPLE = 65536


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


def plan(engine, model, loss, optimizer, verbose=0, sparse_online=False):
    """The engine module fit should use, or None for the per-module path.

    engine: 'auto' (the engine when the model is supported and the selected backend
    is numba or cython; with verbose >= 1, one line on stderr says why not), True (the
    engine or an error saying why not), False. sparse_online: whether fit trains a
    sparse X one sample at a time, which the engine's online loops do not take.
    """
    if engine is False:
        return None
    if engine not in ("auto", True):
        raise ValueError(f"engine must be 'auto', True or False; got {engine!r}")
    reason = unsupported(model, loss, optimizer)
    if reason is None and sparse_online:
        reason = "the engine trains a sparse X in mini-batches (batch_size >= 2), not online"
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
    up to ``batch`` rows, as kernels/abi.py describes: one model's, which the models of a
    stack use in turn, and the epoch-start backup of each of n_models models."""

    def __init__(self, model, batch, layers, alphas, n_models=1):
        dtype = model.dtype
        self.layers, self.alphas = layers, alphas
        size = int(layers[-1, abi.OUT_OFFSET] + batch * layers[-1, abi.N_OUT])
        self.acts = aligned.zeros(size, dtype)
        self.deltas = aligned.zeros(size, dtype)
        self.twork = np.zeros((batch, model.n_outputs), dtype)
        self.wwork = np.zeros(batch, dtype)
        self.lwork = np.zeros(batch, np.int64)
        self.backup = aligned.zeros((n_models, 3, model.n_params), dtype)
        self.checked_views = []  # the arrays whose views check_layout last passed (engine_layout.py)


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


def workspace(model, batch, n_models=1):
    """The Workspace of model (the first of a stack of n_models) for this batch size and
    layer table, allocated on first use and keyed by everything that sizes or fills it
    (batch, dtype, the table, the number of models), so a model whose layout or activations
    changed never gets an old one; the few most recently used are kept, so that fits called
    one after another do not allocate (and fault in) their backup again."""
    layers, alphas = layer_table(model, batch)
    key = (batch, n_models, model.dtype.str, layers.tobytes(), alphas.tobytes())
    kept = _workspaces.setdefault(model, OrderedDict())
    if key in kept:
        kept.move_to_end(key)
    else:
        kept[key] = Workspace(model, batch, layers, alphas, n_models)
        while len(kept) > WORKSPACES_KEPT:
            kept.popitem(last=False)
    return kept[key]


def _csr_pays(X, batch, module, n_threads, model_threads=1):
    """Whether the first layer should multiply X (dense or SparseRows) by the csr_ kernels
    at this batch size on n_threads threads (the engine's or BLAS's) per model, with
    model_threads models training side by side, as measured (CSR_MIN_BATCH above)."""
    limit = getattr(module, "CSR_MAX_BATCH_STACKED" if model_threads > 1 else "CSR_MAX_BATCH", 0)
    if n_threads > 1 or not CSR_MIN_BATCH <= batch <= limit:
        return False
    return _stored_fraction(X) <= CSR_MAX_DENSITY


def _stored_fraction(X):
    """The fraction of X's entries stored (SparseRows) or nonzero (dense X: counted on about
    DENSITY_SAMPLE entries of evenly spaced rows, which tell a density from CSR_MAX_DENSITY
    as well as all of them; counting all 8192 x 784 took 4-10 ms a fit)."""
    n_rows, n_cols = X.shape
    if n_rows == 0 or n_cols == 0:
        return 0.0
    if isinstance(X, SparseRows):
        return X.nnz / (n_rows * n_cols)
    rows = X[::max(1, n_rows * n_cols // DENSITY_SAMPLE)]
    return np.count_nonzero(rows) / rows.size


def _writable(a):
    """a itself, or a writable copy: compiled code is specialised on read-only arrays."""
    return a if a.flags.writeable else a.copy()


# (loop, key of the argument types) of the Numba calls compiles has seen in this process:
# typing the arguments in Python took 0.3 ms a fit, as long as a 10-sample fit trains.
_seen_types = set()


def compiles(run, args):
    """Whether calling the engine loop ``run`` with args compiles it first: a Numba loop
    with no machine code for these argument types in this process or in Numba's on-disk
    cache. False for the Cython engine, for argument types seen before, and where Numba's
    cache cannot be read as expected (the notice is then left out, never the training)."""
    dispatcher = getattr(run, "compiled", None)
    if dispatcher is None:
        return False
    try:
        types_key = getattr(run, "types_key", None)
        if types_key is not None:
            key = (run.__name__, types_key(args))
            if key in _seen_types:
                return False
            _seen_types.add(key)
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


class OneModel:
    """One Sequential as the stack of one model that fit and the Engine train: its buffers as
    (1, P) views, its optimizer bound as a single fit binds it (its state carries over
    between fit calls). fastnn.Stack has the same attributes for K models."""

    def __init__(self, model):
        self.models = [model]
        self.params, self.grads = model.params[np.newaxis], model.grads[np.newaxis]
        self.optimizer, self.loss = model.optimizer, model.loss

    def bind(self, optimizer):
        """Bind optimizer to the model: sets self.optimizers and self.state ((1, P) views);
        returns self."""
        model = self.models[0]
        self.optimizers = optimizer.for_models(1)
        optimizer.bind(model.n_params, model.dtype)
        self.state = {name: optimizer.state[name][np.newaxis] for name in optimizer.state_names}
        model.optimizer = self.optimizer = optimizer
        return self


class Engine:
    """Compiled training of a stack of models (one model: a stack of one) with one loss and
    optimizer kind on prepared arrays.

    ``group`` holds the models and their buffers as (K, P) arrays (OneModel above, or a
    fastnn.Stack): ``models``, ``params``, ``grads``, ``optimizers`` (one per
    model, bound) and ``state`` ({state name: (K, P) array}, whose row k is model k's
    optimizer's state).
    """

    def __init__(self, module, group, loss, X, targets, weight, batch, clip_norm, n_threads=1):
        """n_threads as fit's (None: threads.thread_count's choice); self.threads are the engine's
        own threads, self.blas_threads those BLAS should run with."""
        self.group, self.batch = group, batch
        model = group.models[0]
        # A stack trains its models on threads of their own (model_threads), a share each;
        # one model, or a stack on one thread, on the engine's or BLAS's threads.
        self.model_threads = threads.model_threads(n_threads, len(group.models))
        own = threads.own_threads(module, clip_norm, model, batch)
        count = 1 if self.model_threads > 1 else threads.thread_count(n_threads, model, batch, own)
        # The engine's threads spin at barriers: more threads than cores would wait for
        # one another's time slices at every layer.
        self.threads = min(count, threads.available_cores()) if own else 1
        self.blas_threads = 1 if own else count
        self.run_epochs = module.run_online if batch == 1 else module.run_batches
        dtype = model.dtype
        self.sparse_product = _csr_pays(X, batch, module, max(self.threads, self.blas_threads), self.model_threads)
        if isinstance(X, SparseRows) or self.sparse_product:
            x = X if isinstance(X, SparseRows) else SparseRows.from_dense(X)
            if x.indptr[0] != 0:  # a slice of rows: its own arrays from position 0
                x = SparseRows.from_scipy(x.to_scipy(), dtype)
            self.X = np.zeros((0, x.shape[1]), dtype)
            self.csr = tuple(_writable(a) for a in (x.values, x.indices, x.indptr))
        else:
            self.X = _writable(X)
            self.csr = (np.zeros(0, dtype), np.zeros(0, np.int64), np.zeros(0, np.int64))
        # Each thread of models gathers its batches' rows of a sparse X for the csr_ loops
        # into arrays of its own, sized for the batch's rows with the most entries.
        most = batch * int(np.diff(self.csr[2]).max()) if self.sparse_product else 0
        self.batch_csr = [(np.zeros(most, dtype), np.zeros(most, np.int64),
                           np.zeros(batch + 1 if self.sparse_product else 0, np.int64))
                          for _ in range(self.model_threads)]
        self.n_samples = len(X)
        self.loss_code = loss.engine_code(targets)
        if self.loss_code == abi.CROSS_ENTROPY:
            self.labels, self.targets = _writable(targets), np.zeros((0, model.n_outputs), dtype)
        else:
            self.labels, self.targets = np.zeros(0, np.int64), _writable(targets)
        self.weights = np.zeros(0, dtype) if weight is None else _writable(weight)
        self.optimizer_code = abi.SGD if isinstance(group.optimizers[0], SGD) else abi.ADAM
        self.clip_norm = 0.0 if clip_norm is None else float(clip_norm)
        self.work = workspace(model, batch, len(group.models))
        self.works = [self.work] + [Workspace(model, batch, self.work.layers, self.work.alphas, 0)
                                    for _ in range(self.model_threads - 1)]
        self.backup = self.work.backup
        self.no_orders = np.zeros((0, 0, 0), np.int64)
        self.checked = False  # whether run asked if its first call compiles
        check_layout(self)
        self._state()

    def _hyper(self):
        """The optimizers' hyper-parameters as a record array of abi.HYPER, one per model."""
        hyper = np.zeros(len(self.group.optimizers), abi.HYPER)
        for record, opt in zip(hyper, self.group.optimizers):
            record["lr"], record["weight_decay"], record["clip_norm"] = opt.lr, opt.weight_decay, self.clip_norm
            if isinstance(opt, SGD):
                record["momentum"], record["nesterov"] = opt.momentum, opt.nesterov
            else:
                record["beta1"], record["beta2"] = opt.betas
                record["eps"], record["decoupled"] = opt.eps, opt.decoupled
        return hyper

    def _state(self):
        """The optimizers' state as (K, P) arrays (SGD: velocity and an empty one; Adam: m and
        v), checked against the parameters and against each optimizer's own buffers: an
        optimizer may have been re-bound since the last call."""
        group = self.group
        params, opt = group.params, group.optimizers[0]
        written = [params, group.grads, self.backup]
        state = []
        for name in opt.state_names:
            buffer = group.state.get(name)
            check_shape("optimizer state", buffer, params.shape, params.dtype, name)
            for k, optimizer in enumerate(group.optimizers):
                own = optimizer.state.get(name)
                check_shape("optimizer state", own, params.shape[1:], params.dtype, name)
                if not is_view(own, buffer, k * params.shape[1], params.shape[1:]):
                    raise ValueError(f"engine: optimizer state {name} of model {k} is not row {k} of the stack's")
            for other in written:
                if np.may_share_memory(buffer, other):
                    raise ValueError(f"engine: optimizer state {name} must not overlap the model's or another "
                                     "state buffer")
            written.append(buffer)
            state.append(buffer)
        return (state + [np.zeros((len(params), 0), params.dtype)]) if isinstance(opt, SGD) else state

    def run(self, orders, n_epochs, active=None, record_updates=False):
        """Train the active models (a bool per model; None: all) for n_epochs in one call;
        orders is (n_orders, n_epochs, n) with n_orders 1 (one order for all) or one per
        model, or None (in order).

        Returns, per model, (per-epoch loss sums, per-epoch metric sums, Failure or None,
        update losses) for the epochs it completed, or None for an inactive model; the
        update losses are each update's batch loss in order (record_updates), else None.
        The optimizers' step counts are updated.
        """
        group, work = self.group, self.work
        k, n = len(group.models), self.n_samples
        n_epochs = check_positive_int("n_epochs", n_epochs)
        if orders is not None:
            n_orders = k if getattr(orders, "ndim", 0) == 3 and len(orders) == k else 1
            check_shape("orders", orders, (n_orders, n_epochs, n), np.int64)
            if not (orders.min() >= 0 and orders.max() < n):
                raise ValueError(f"engine: orders must hold sample indices in [0, {n})")
        active = np.ones(k, bool) if active is None else np.asarray(active, bool)
        if active.shape != (k,):
            raise ValueError(f"engine: active must hold a bool for each of the {k} models; got shape {active.shape}")
        state_a, state_b = self._state()
        stats = np.zeros((k, n_epochs, 2), np.float64)
        n_batches = -(-n // self.batch)
        update_losses = np.zeros((k, n_epochs, n_batches) if record_updates else (k, 0, 0), np.float64)
        steps = np.array([opt.steps for opt in group.optimizers], np.int64)
        done, failed_batch, failed_loss = np.zeros(k, np.int64), np.zeros(k, np.int64), np.zeros(k)
        args = (abi.Model(group.params, group.grads, state_a, state_b, work.layers, work.alphas, self._hyper(),
                          steps, active.astype(np.int64)),
                abi.Data(self.X, self.labels, self.targets, self.weights, *self.csr,
                         self.no_orders if orders is None else orders),
                abi.Work(work.acts, work.deltas, work.twork, work.wwork, work.lwork, *self.batch_csr[0], self.backup,
                         stats, update_losses, done, failed_batch, failed_loss),
                abi.Run(self.optimizer_code, self.loss_code, n_epochs, self.batch, self.threads,
                        int(self.sparse_product)))
        started = None if self.checked else _compiling_notice(self.run_epochs, args, group.params.dtype)
        self.checked = True
        self._run_shares(args, active)
        if started is not None:
            print(f"fastnn: compiled in {time.perf_counter() - started:.1f} s (with a training chunk)",
                  file=sys.stderr, flush=True)
        results = []
        for m, optimizer in enumerate(group.optimizers):
            if not active[m]:
                results.append(None)
                continue
            optimizer.steps = int(steps[m])
            completed, failure = int(done[m]), None
            if completed < n_epochs:
                backup = self.backup[m]
                state = {name: backup[1 + i] for i, name in enumerate(optimizer.state_names)}
                failure = Failure(completed, int(failed_batch[m]), float(failed_loss[m]), backup[0], state,
                                  optimizer.steps - int(failed_batch[m]))
            results.append((stats[m, :completed, 0], stats[m, :completed, 1], failure,
                            update_losses[m, :completed].ravel() if record_updates else None))
        return results

    def _run_shares(self, args, active):
        """Run the compiled loop on args: in one call, or with model_threads, a call per
        thread on its contiguous share of the models (about as many active ones each) with a
        workspace of its own. Every per-model array is sliced to the share's rows (views:
        the loop writes the stack's arrays)."""
        shares = min(self.model_threads, int(active.sum()))
        if shares <= 1:
            self.run_epochs(*args)
            return
        model, data, work, run = args
        counts = np.cumsum(active)  # active models in rows 0..r
        ends = [int(np.searchsorted(counts, counts[-1] * (i + 1) / shares)) + 1 for i in range(shares - 1)]
        bounds = list(zip([0, *ends], [*ends, len(active)]))

        def share(lo, hi, space, csr):
            rows = slice(lo, hi)
            orders = data.orders[rows] if len(data.orders) > 1 else data.orders
            self.run_epochs(
                model._replace(params=model.params[rows], grads=model.grads[rows], state_a=model.state_a[rows],
                               state_b=model.state_b[rows], hyper=model.hyper[rows], steps=model.steps[rows],
                               active=model.active[rows]),
                data._replace(orders=orders),
                work._replace(acts=space.acts, deltas=space.deltas, twork=space.twork, wwork=space.wwork,
                              lwork=space.lwork, svalues=csr[0], sindices=csr[1], sindptr=csr[2],
                              backup=work.backup[rows], stats=work.stats[rows],
                              update_losses=work.update_losses[rows], done=work.done[rows],
                              failed_batch=work.failed_batch[rows], failed_loss=work.failed_loss[rows]),
                run)

        with ThreadPoolExecutor(shares - 1) as pool:
            others = [pool.submit(share, lo, hi, space, csr)
                      for (lo, hi), space, csr in zip(bounds[1:], self.works[1:], self.batch_csr[1:])]
            share(*bounds[0], self.works[0], self.batch_csr[0])
            for other in others:
                other.result()
