"""The fit loop: full-batch, mini-batch and online SGD over a Sequential model.

Data are validated and converted once; each epoch draws one seeded
permutation; each step is forward, fused loss + gradient, backward, optional
clipping by global norm, and one optimizer kernel over the flat parameters.
"""
import contextlib
import copy
import time
import warnings

import numpy as np
from tqdm.auto import tqdm

from . import engine as engines
from .atomic import deferred_interrupt, watching_interrupts
from .grad import forward_backward
from .history import History
from .init import as_generator, check_seed
from .kernels.contract import finite_number
from .kernels.gemm import bf16_products
from .kernels.reference import LOSS_LIMIT
from .layers import Module
from .losses import SoftmaxCrossEntropy, get_loss
from .optim import get_optimizer
from .sparse import SparseRows
from .threads import blas_threads, requested_threads, thread_count
from .validation import check_batch_size, check_fraction, check_positive_int, check_precision, check_sample_weight


class EarlyStopping:
    """Stop when the monitored loss has not improved by min_delta for patience epochs.
    With restore_best_weights, fit ends on the best epoch's weights, whether it stopped
    early or ran all its epochs."""

    def __init__(self, patience=10, min_delta=0.0, restore_best_weights=True):
        self.patience = check_positive_int("patience", patience)
        self.min_delta = float(min_delta)
        if not self.min_delta >= 0:
            raise ValueError(f"min_delta must be >= 0; got {min_delta}")
        self.restore_best_weights = bool(restore_best_weights)

    def start(self):
        self.best, self.best_epoch, self.best_params, self.waited = np.inf, None, None, 0

    def update(self, epoch, value, params):
        """Record this epoch's monitored value; True when training should stop."""
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.waited = value, epoch, 0
            if self.restore_best_weights:
                self.best_params = params.copy()
            return False
        self.waited += 1
        return self.waited >= self.patience


def _validation(model, loss, X, targets, weight, validation_data, validation_split, rng):
    """Split off or prepare validation arrays: returns the training arrays and the
    validation arrays (None when there is no validation)."""
    if validation_data is not None:
        if validation_split:
            raise ValueError("give validation_data or validation_split, not both")
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError("validation_data must be a pair (X_val, y_val) or a triple with sample weights")
        X_val = model.check_input(validation_data[0], "validation_data X")
        y_val = loss.targets(validation_data[1], model.n_outputs, model.dtype)
        if len(y_val) != len(X_val):
            raise ValueError(f"validation_data X and y have {len(X_val)} and {len(y_val)} samples")
        w_val = check_sample_weight(validation_data[2] if len(validation_data) == 3 else None,
                                    len(X_val), model.dtype)
        return (X, targets, weight), (X_val, y_val, w_val)
    fraction = check_fraction("validation_split", validation_split)
    if not fraction:
        return (X, targets, weight), None
    n_val = int(round(fraction * len(X)))
    if n_val < 1 or n_val >= len(X):
        raise ValueError(f"validation_split={fraction} leaves {n_val} of {len(X)} samples for validation; "
                         "it must leave at least one on each side")
    order = rng.permutation(len(X))
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    pick = (lambda a, rows: None if a is None else a[rows] if isinstance(a, SparseRows)
            else np.ascontiguousarray(a[rows]))
    return (pick(X, train), pick(targets, train), pick(weight, train)), \
        (pick(X, val), pick(targets, val), pick(weight, val))


def _detached(a, group):
    """a, or a copy where it shares memory with the models' buffers, which training writes:
    fit trains on the data as they were when it was called."""
    if isinstance(a, SparseRows):
        return SparseRows(_detached(a.values, group), a.indices, a.indptr, a.shape[1])
    if a is not None and (np.may_share_memory(a, group.params) or np.may_share_memory(a, group.grads)):
        return a.copy()
    return a


def _clip_by_global_norm(grads, max_norm):
    norm = float(np.sqrt(np.dot(grads, grads)))
    if norm > max_norm:
        grads *= grads.dtype.type(max_norm / norm)


def fit(model, X, y, loss=None, optimizer="adam", epochs=10, batch_size=None, *, shuffle=True, seed=None,
        sample_weight=None, validation_data=None, validation_split=0.0, early_stopping=None,
        clip_norm=None, callbacks=(), verbose=1, lr=None, engine="auto", n_threads=None, loss_every=None,
        precision=None):
    """Train ``model`` in place and return a History.

    loss: a Loss, its class or name (default: softmax cross-entropy, or the model's last loss).
    optimizer: an Optimizer, or 'sgd'/'adam' (with ``lr`` if given). Its state carries over
    between fit calls on the same model; a new optimizer starts fresh.
    batch_size: an int (mini-batch), 1 (online SGD: one update per sample) or 'full'
    (full-batch gradient descent: one update per epoch); None means 32, or all samples
    when there are fewer. A size above the number of training samples is clipped to it,
    with a warning. The last batch of an epoch may be short.
    shuffle, seed: one permutation per epoch from a Generator seeded by ``seed``.
    validation_data (X_val, y_val[, w_val]) or validation_split (a seeded random fraction).
    early_stopping: True or an EarlyStopping; monitors the validation loss (the training
    loss when there is no validation data).
    clip_norm: rescale the gradient when its global L2 norm exceeds this.
    callbacks: callables ``callback(history)`` after every epoch; returning True stops.
    verbose: 0 silent, 1 a progress bar with loss, accuracy and samples/s (and, when
    engine='auto' cannot use the compiled engine, one line on stderr saying why).
    The first fit of the Numba engine for a dtype and loop compiles it (tens of seconds,
    once: Numba caches the machine code on disk); a line on stderr says so before it starts
    and how long it took, whatever verbose says.
    engine: 'auto' trains Sequential models of Dense layers and activations with the
    compiled engine of the numba or cython backend (fastnn.engine), other models one
    module call at a time; True insists on the engine (an error says why it cannot);
    False always takes the per-module path. Both compute the same numbers.
    n_threads: BLAS threads for the engine (default: FASTNN_NUM_THREADS, else one or
    two by the size of a step).
    loss_every: N records history.update_loss, the mean training loss of every N updates
    (1: every update's), for curves finer than an epoch; None (the default) records none,
    and the compiled loop then does no work for it.
    precision: None (products in the model's dtype) or 'bf16', mixed precision for float32
    models on CPUs with AVX512-BF16: every matrix product of the step (the validation
    predictions too) rounds its operands to bf16 and sums in float32; weights, optimizer
    state, bias, activations, loss and update stay float32. Online steps (batch 1) multiply
    vectors, not matrices, and stay float32. While such a fit runs, the float32 products of
    every thread of the process are bf16 ones.

    A loss that is not finite or exceeds kernels.reference.LOSS_LIMIT (1e18) stops training
    with a RuntimeWarning and history.diverged = True; the model keeps the current weights
    if they are finite, within LOSS_LIMIT and predict finite outputs on X, else those (and
    the optimizer state) of the start of the epoch. A KeyboardInterrupt leaves the model at its last completed step; the
    partial History is at model.history and the interrupt propagates. The engine's chunks
    of epochs and every optimizer step are applied whole (fastnn.atomic): the weights,
    optimizer state, step and epoch counts and the History then describe one moment.

    ``model`` may also be a fastnn.Stack: see Stack.fit for what differs.
    """
    stacked = not isinstance(model, Module)
    group = model if stacked else engines.OneModel(model)
    histories = _fit_group(group, X, y, loss, optimizer, epochs, batch_size, shuffle, seed, sample_weight,
                           validation_data, validation_split, early_stopping, clip_norm, callbacks, verbose, lr,
                           engine, n_threads, loss_every, precision)
    return histories if stacked else histories[0]


def _fit_group(group, X, y, loss, optimizer, epochs, batch_size, shuffle, seed, sample_weight, validation_data,
               validation_split, early_stopping, clip_norm, callbacks, verbose, lr, engine, n_threads, loss_every,
               precision):
    """fit for the K models of group (OneModel or a Stack); returns their Histories."""
    models = group.models
    first, k = models[0], len(models)
    precision = check_precision(precision, first.dtype)
    rngs = _generators(seed, k, not isinstance(group, engines.OneModel), needed=shuffle or bool(validation_split))
    loss = get_loss(loss or group.loss or SoftmaxCrossEntropy())
    epochs = check_positive_int("epochs", epochs)
    if loss_every is not None:
        loss_every = check_positive_int("loss_every", loss_every)
    if optimizer is group.optimizer and lr is not None:
        raise ValueError("lr applies to an optimizer given by name; set it on the optimizer instance")
    optimizer = get_optimizer(optimizer, **({} if lr is None else {"lr": lr}))
    X = first.check_input(X)
    targets = loss.targets(y, first.n_outputs, first.dtype)
    if len(targets) != len(X):
        raise ValueError(f"X and y must have the same number of samples; got {len(X)} and {len(targets)}")
    weight = check_sample_weight(sample_weight, len(X), first.dtype)
    X, targets, weight = (_detached(a, group) for a in (X, targets, weight))
    if clip_norm is not None:
        clip_norm = finite_number("clip_norm", clip_norm, 0.0, low_inclusive=False)
    stopper = EarlyStopping() if early_stopping is True else early_stopping or None
    if stopper is not None and not isinstance(stopper, EarlyStopping):
        raise TypeError(f"early_stopping must be True, False/None or an EarlyStopping; got {early_stopping!r}")
    for callback in callbacks:
        if not callable(callback):
            raise TypeError(f"callbacks must be callables taking the History; got {callback!r}")
    if len(rngs) > 1 and validation_split:
        raise ValueError("validation_split with one seed per model would hold out different samples for each "
                         "model; give validation_data, or one seed for all models")
    (X, targets, weight), validation = _validation(
        first, loss, X, targets, weight, validation_data, validation_split, rngs[0])
    batch = min(32, len(X)) if batch_size is None else check_batch_size(batch_size, len(X))

    requested = requested_threads(n_threads)
    module = engines.plan(engine, first, loss, optimizer, verbose, isinstance(X, SparseRows) and batch == 1)

    group.bind(optimizer)
    optimizers = group.optimizers
    group.loss = loss
    histories = [History(loss.metric_name, loss_every) for _ in models]
    for model, history in zip(models, histories):
        model.loss, model.history = loss, history
    stoppers = [] if stopper is None else [stopper] if k == 1 else [copy.deepcopy(stopper) for _ in models]
    for each in stoppers:
        each.start()
    n = len(X)
    runner = threads = None
    if module is not None:
        runner = engines.Engine(module, group, loss, X, targets, weight, batch, clip_norm, requested)
        threads = blas_threads(runner.blas_threads)
    products = contextlib.nullcontext()
    if precision == "bf16" and batch > 1:  # online steps multiply vectors: float32, as in the engine
        products = bf16_products(runner.blas_threads if runner else thread_count(requested, first, batch))
    # Epochs run one at a time when Python has work after each (validation, callbacks,
    # early stopping, a schedule) or on the per-module path; otherwise the engine
    # trains chunks of epochs sized to last about CHUNK_SECONDS.
    per_epoch = runner is None or validation is not None or bool(callbacks) or stopper is not None \
        or optimizer.schedule is not None
    # A disabled tqdm still costs ~20 us to make: a silent fit has none.
    progress = tqdm(total=epochs, unit="epoch", leave=True) if verbose else None
    for model in models:
        model.train(True)
    active = np.ones(k, bool)
    done = pending = 0
    chunk = 1
    # What a chunk holds per epoch: shuffled indices, and the update losses when recorded.
    entries = max(n * len(rngs), k * -(-n // batch) if loss_every is not None else 0)
    try:
        with threads or contextlib.nullcontext(), products, watching_interrupts():
            while done < epochs and active.any():
                count = min(chunk, epochs - done)
                with deferred_interrupt():
                    start = time.perf_counter()
                    for m in np.flatnonzero(active):
                        optimizers[m].start_epoch(count)
                    pending = count
                    orders = _orders(rngs, active, n, count) if shuffle else None
                # A Ctrl-C waits for the engine's chunk and its record (the models, optimizers
                # and histories then agree); the per-module path stops after an optimizer step.
                with contextlib.nullcontext() if runner is None else deferred_interrupt():
                    if runner is None:
                        results = [_module_epoch(model, loss, opt, X, targets, weight,
                                                 None if orders is None else orders[m if len(orders) > 1 else 0, 0],
                                                 batch, clip_norm, loss_every is not None) if active[m] else None
                                   for m, (model, opt) in enumerate(zip(models, optimizers))]
                    else:
                        results = runner.run(orders, count, active, loss_every is not None)
                    with deferred_interrupt():
                        seconds = time.perf_counter() - start
                        running = np.flatnonzero(active)
                        completed = max(len(results[m][0]) for m in running)
                        diverged = set()
                        for m in running:
                            losses, metrics, failure, update_losses = results[m]
                            if update_losses is not None:
                                histories[m].record_updates(update_losses)
                            if _record(models[m], loss, histories[m], stoppers[m] if stoppers else None,
                                       validation, done, n, losses, metrics, seconds, per_epoch):
                                active[m] = False
                            if failure is not None:
                                optimizers[m].epochs -= count - len(losses) - 1
                                _diverged(models[m], optimizers[m], histories[m], done + len(losses), failure.batch,
                                          failure.value, failure.params, (failure.state, failure.steps), X,
                                          f"model {m}: " if k > 1 else "")
                                active[m] = False
                                diverged.add(m)
                        done += completed
                        pending = 0
                if verbose and completed:
                    progress.update(completed)
                    _show(progress, histories, active, n * k * completed / seconds)
                if not per_epoch:
                    chunk = _next_chunk(count, seconds, entries)
                for m in [m for m in running if m not in diverged] if callbacks else ():
                    if any([callback(histories[m]) for callback in callbacks]):
                        active[m] = False
                        if histories[m].stop_reason == "completed":
                            histories[m].stop_reason = "callback"
    except KeyboardInterrupt:
        for m in np.flatnonzero(active):
            optimizers[m].epochs -= pending
            histories[m].stop_reason = "interrupted"
        raise
    finally:
        for model, history in zip(models, histories):
            model.train(False)
            if loss_every is not None:
                history.end_updates()
        if progress is not None:
            progress.close()
    for model, each in zip(models, stoppers):
        if each.best_params is not None:
            model.params[...] = each.best_params
    return histories


def _generators(seed, k, stacked, needed=True):
    """The shuffling Generators: [one for all models] from a seed, or for a stack given a
    sequence of k seeds, one per model. Unless needed (a fit that neither shuffles nor
    splits), the seeds themselves, checked: a Generator from fresh entropy costs 15-35 us."""
    make = as_generator if needed else check_seed
    if not stacked or not isinstance(seed, (list, tuple, range, np.ndarray)):
        return [make(seed)]
    if len(seed) != k:
        raise ValueError(f"seed must be one seed (one batch order for all models) or one per model; got "
                         f"{len(seed)} seeds for a stack of {k} models")
    return [make(each) for each in seed]


def _orders(rngs, active, n, count):
    """The sample orders of count epochs, (1 or K, count, n): one order for all models, or
    one per model from its own Generator (which an inactive model does not advance)."""
    if len(rngs) == 1:
        return _epoch_orders(rngs[0], n, count)[np.newaxis]
    orders = np.empty((len(rngs), count, n), np.int64)
    for m, rng in enumerate(rngs):
        orders[m] = _epoch_orders(rng, n, count) if active[m] else np.arange(n)
    return orders


def _record(model, loss, history, stopper, validation, done, n, losses, metrics, seconds, per_epoch):
    """Record a model's epochs of a chunk (sums over its n samples) in its history (one
    epoch: with validation and early stopping); True when early stopping stops it."""
    if len(losses) == 1 and per_epoch:
        return _end_epoch(model, loss, history, stopper, validation, done, losses[0] / n, metrics[0] / n, seconds)
    if len(losses):
        history.record_many(done + 1, (np.asarray(losses) / n).tolist(), (np.asarray(metrics) / n).tolist(), seconds)
    return False


def _epoch_orders(rng, n, count):
    """count epochs' sample orders, (count, n): the permutations count successive
    rng.permutation(n) calls would give, drawn at once."""
    orders = np.tile(np.arange(n), (count, 1))
    return rng.permuted(orders, axis=1, out=orders)


CHUNK_SECONDS = 0.05
MAX_ORDER_ENTRIES = 1 << 22


def _next_chunk(count, seconds, entries):
    """Epochs for the next engine call: enough to last about CHUNK_SECONDS, with at
    most MAX_ORDER_ENTRIES shuffled indices or update losses (``entries`` per epoch)."""
    wanted = int(count * CHUNK_SECONDS / max(seconds, 1e-6))
    return max(1, min(wanted, MAX_ORDER_ENTRIES // entries))


def _module_epoch(model, loss, optimizer, X, targets, weight, order, batch, clip_norm, record_updates):
    """One epoch of the per-module path: forward, loss and backward by module calls, then
    clipping and one optimizer step per batch. Returns ([loss sum], [metric sum], None,
    each update's loss or None), as Engine.run; ([], [], Failure, None) when a batch's
    loss is not finite (its update is skipped)."""
    epoch_params = model.params.copy()
    epoch_state = {k: v.copy() for k, v in optimizer.state.items()}
    epoch_steps = optimizer.steps
    Xe, te, we = (X, targets, weight) if order is None else (
        X[order], targets[order], None if weight is None else weight[order])
    total_loss = total_metric = 0.0
    update_losses = []
    for lo in range(0, len(X), batch):
        xb, tb = Xe[lo:lo + batch], te[lo:lo + batch]
        wb = None if we is None else we[lo:lo + batch]
        value, outputs = forward_backward(model, xb, tb, loss, wb)
        if not value <= LOSS_LIMIT:
            return [], [], engines.Failure(0, lo // batch, value, epoch_params, epoch_state, epoch_steps), None
        if clip_norm is not None:
            _clip_by_global_norm(model.grads, float(clip_norm))
        optimizer.step(model.params, model.grads)
        total_loss += value * len(xb)
        total_metric += loss.score(outputs, tb) * len(xb)
        update_losses.append(value)
    return [total_loss], [total_metric], None, (np.array(update_losses) if record_updates else None)


def _end_epoch(model, loss, history, stopper, validation, epoch, train_loss, train_metric, seconds):
    """Record the epoch (with validation) and ask early stopping; True to stop."""
    val_loss = val_metric = None
    if validation is not None:
        X_val, y_val, w_val = validation
        outputs = model.outputs(X_val)
        val_loss = loss(outputs, y_val, np.empty_like(outputs), w_val)
        val_metric = loss.score(outputs, y_val)
    history.record(epoch + 1, train_loss, train_metric, val_loss, val_metric, seconds)
    if stopper is None:
        return False
    if stopper.update(epoch + 1, train_loss if val_loss is None else val_loss, model.params):
        history.stop_reason = "early_stopping"
        history.best_epoch = stopper.best_epoch
        return True
    history.best_epoch = stopper.best_epoch
    return False


def _sane(model, X):
    """Whether the model's weights lie within LOSS_LIMIT and predict finite outputs on X."""
    if not np.abs(model.params).max() <= LOSS_LIMIT:
        return False
    with np.errstate(all="ignore"):
        return bool(np.isfinite(model.outputs(X)).all())


def _diverged(model, optimizer, history, epoch, step, value, epoch_params, epoch_state, X, which=""):
    if not _sane(model, X):
        model.params[...] = epoch_params
        for name, buffer in epoch_state[0].items():
            optimizer.state[name][...] = buffer
        optimizer.steps = epoch_state[1]
    history.diverged = True
    history.stop_reason = "diverged"
    warnings.warn(f"{which}the training loss became {value} in epoch {epoch + 1}, step {step + 1}; "
                  "training stopped with the last finite weights (lower the learning rate?)",
                  RuntimeWarning, stacklevel=6)


def _show(progress, histories, active, samples_per_second):
    """The progress bar's figures: the model's last epoch, or for a stack the models still
    training and the median of their last epoch's loss and metric."""
    if len(histories) > 1:
        last = [h for h in histories if len(h)]
        progress.set_postfix({"models": f"{active.sum()}/{len(histories)}",
                              "median loss": f"{np.median([h.loss[-1] for h in last]):.4f}",
                              "samples/s": f"{samples_per_second:,.0f}"}, refresh=False)
        return
    history = histories[0]
    postfix = {"loss": f"{history.loss[-1]:.4f}", history.metric_name[:3]: f"{history.metric[-1]:.4f}"}
    if history.val_loss[-1] is not None:
        postfix["val_loss"] = f"{history.val_loss[-1]:.4f}"
        postfix[f"val_{history.metric_name[:3]}"] = f"{history.val_metric[-1]:.4f}"
    postfix["samples/s"] = f"{samples_per_second:,.0f}"
    progress.set_postfix(postfix, refresh=False)
