"""Hyper-parameter sweeps over many seeds, run in parallel.

``sweep(run, grid, seeds)`` calls ``run(seed=s, **config)`` for every configuration
of ``grid`` and every seed, in joblib worker processes on this machine or on a Dask
cluster, and collects one row per run. A run that raises, or whose worker process
dies, becomes a row with an error instead of disappearing from the results.

``sweep(spec, grid, seeds, data=(X, y[, X_test, y_test]))`` with an MLPSpec trains the
runs as stacks (fastnn.Stack): the runs whose configurations differ only in the seed
and in the optimizer's scalar hyper-parameters (STACKED) are the models of one stack,
trained by one Stack.fit, one task per stack. Model k of a stack ends with the numbers
of a fit of that model alone, so the rows are those of single fits.

On Dask the runs are submitted as one future each through the Client rather than
through joblib's dask backend: joblib 1.6 never completes a Parallel call whose dask
task fails at the scheduler (a KilledWorker after a worker died), because its
backend only signals successful futures back to the Parallel loop. What every task
shares (the run, or the data) is sent to the workers once.
"""
import dataclasses
import inspect
import itertools
import time
import traceback
import warnings

import numpy as np
from joblib import Parallel, delayed, parallel_config
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from .init import get_initializer
from .kernels.contract import finite_number
from .layers import ACTIVATION_MODULES, float_dtype
from .losses import get_loss
from .model import mlp
from .optim import OPTIMIZERS
from .sweep_results import SweepResult, curves, iqm, label, median_and_worst
from .validation import check_positive_int

__all__ = ["MLPSpec", "STACKED", "SweepResult", "curves", "iqm", "label", "median_and_worst", "sweep"]

# The MLPSpec fields that may differ between the models of one stack: the optimizer's
# scalar hyper-parameters, which a stack takes per model (Optimizer.for_models).
STACKED = ("lr", "momentum", "weight_decay", "betas", "eps")
_OPTIMIZER_FIELDS = STACKED + ("nesterov", "decoupled")


@dataclasses.dataclass(frozen=True)
class MLPSpec:
    """An MLP and its training, for ``sweep(spec, grid, seeds, data=...)``: the arguments
    of fastnn.mlp (sizes, activation, init, dtype, loss) and of fit (optimizer, 'sgd' or
    'adam', with its hyper-parameters; epochs, batch_size, clip_norm), with their defaults.

    A hyper-parameter left None takes the optimizer's default; one the optimizer does
    not take (momentum for Adam, betas for SGD) is refused. The grid's keys are field
    names: each configuration is this spec with the grid's values replaced
    (dataclasses.replace), checked as the spec is. Run (config, seed) is
    ``mlp(sizes, activation, init=init, dtype=dtype, loss=loss, seed=seed)`` trained by
    ``fit(X, y, optimizer=..., epochs=epochs, batch_size=batch_size, clip_norm=clip_norm,
    seed=seed)``.
    """

    sizes: tuple
    activation: str = "relu"
    init: object = None
    dtype: str = "float32"
    loss: object = None
    optimizer: str = "adam"
    lr: float = None
    momentum: float = None
    nesterov: bool = False
    weight_decay: float = None
    betas: tuple = None
    eps: float = None
    decoupled: bool = False
    epochs: int = 10
    batch_size: object = None
    clip_norm: float = None

    def __post_init__(self):
        if isinstance(self.sizes, (str, bytes)) or not hasattr(self.sizes, "__iter__") or len(self.sizes) < 2:
            raise ValueError(f"MLPSpec sizes must list at least an input and an output size; got {self.sizes!r}")
        # Fields normalised to hashable values (stack_key); the dataclass is frozen.
        object.__setattr__(self, "sizes", tuple(check_positive_int(f"sizes[{i}]", size)
                                                for i, size in enumerate(self.sizes)))
        if self.activation not in ACTIVATION_MODULES:
            raise ValueError(f"MLPSpec activation must be one of {sorted(ACTIVATION_MODULES)}; got {self.activation!r}")
        if self.init is not None:
            get_initializer(self.init)
        object.__setattr__(self, "dtype", float_dtype(self.dtype).name)
        if self.loss is not None:
            get_loss(self.loss)
        if self.betas is not None:
            object.__setattr__(self, "betas", tuple(self.betas))
        self.make_optimizer()
        check_positive_int("epochs", self.epochs)
        batch = self.batch_size
        if batch not in (None, "full") and (isinstance(batch, (bool, str)) or not isinstance(batch, (int, np.integer))
                                            or batch < 1):
            raise ValueError(f"MLPSpec batch_size must be None, 'full' or a positive integer; got {batch!r}")
        if self.clip_norm is not None:
            finite_number("clip_norm", self.clip_norm, 0.0, low_inclusive=False)

    def make_optimizer(self):
        """The optimizer of one run (a new one, with the hyper-parameters given)."""
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"MLPSpec optimizer must be one of {sorted(OPTIMIZERS)}; got {self.optimizer!r}")
        kind = OPTIMIZERS[self.optimizer]
        accepted = inspect.signature(kind).parameters
        options = {}
        for name in _OPTIMIZER_FIELDS:
            value = getattr(self, name)
            if value is None or value is False:
                continue
            if name not in accepted:
                raise ValueError(f"MLPSpec {name}={value!r} does not apply to optimizer {self.optimizer!r}, which "
                                 f"takes {[n for n in _OPTIMIZER_FIELDS if n in accepted]}")
            options[name] = value
        optimizer = kind(**options)
        if optimizer.n_models is not None:
            raise ValueError(f"MLPSpec hyper-parameters are one value per run (the grid lists the values to "
                             f"sweep); got {options}")
        return optimizer

    def stack_key(self):
        """What the runs of one stack share: every field but the STACKED ones."""
        return tuple((field.name, getattr(self, field.name)) for field in dataclasses.fields(self)
                     if field.name not in STACKED)


def _stacked_optimizer(specs):
    """One optimizer for a stack whose model k is trained as specs[k] says (Optimizer.of_models)."""
    return OPTIMIZERS[specs[0].optimizer].of_models([spec.make_optimizer() for spec in specs])


def _train_stack(specs, seeds, data):
    """Train one stack, model (c, s) built and trained as specs[c] says with seeds[s]
    (configuration major); returns each model's metrics: the last epoch's train_loss and
    train_<metric> (as its History records them), test_loss and test_<metric> on the
    test data when given, and diverged (1.0 when a non-finite loss stopped it)."""
    X, y, *test = data
    spec = specs[0]
    per_model = [each for each in specs for _ in seeds]
    model_seeds = [seed for _ in specs for seed in seeds]
    stack = mlp(spec.sizes, spec.activation, init=spec.init, dtype=spec.dtype, seed=model_seeds, loss=spec.loss)
    histories = stack.fit(X, y, optimizer=_stacked_optimizer(per_model), epochs=spec.epochs,
                          batch_size=spec.batch_size, clip_norm=spec.clip_norm, seed=model_seeds, verbose=0)
    metrics = []
    for history in histories:
        trained = {"train_loss": history.loss[-1], f"train_{history.metric_name}": history.metric[-1]} \
            if len(history) else {}
        metrics.append({**trained, "diverged": float(history.diverged)})
    if test:
        for name, values in stack.evaluate(*test).items():
            for each, value in zip(metrics, values):
                each[f"test_{name}"] = float(value)
    return metrics


def _one_run(run, config, seed):
    """[the metrics of run(seed=seed, **config)], checked to be a dict of numbers."""
    metrics = run(seed=seed, **config)
    if not isinstance(metrics, dict):
        raise TypeError(f"run must return a dict of metrics; got {type(metrics).__name__}")
    return [{str(name): float(value) for name, value in metrics.items()}]


def _rows(index, size, threads, work, *args):
    """(index, the row fields of the size runs that ``work(*args)`` performs), run with
    ``threads`` BLAS/OpenMP threads; work returns each run's metrics. An exception
    becomes every run's error; each run's time is an equal share of the whole."""
    start = time.perf_counter()
    try:
        with threadpool_limits(limits=threads):
            metrics = work(*args)
        error = None
    except Exception:
        metrics, error = [{} for _ in range(size)], traceback.format_exc()
    seconds = (time.perf_counter() - start) / size
    return index, [{"metrics": each, "time": seconds, "error": error} for each in metrics]


def _call(index, run, config, seed, threads):
    """Run one (config, seed) of a run callable: (index, [its row fields])."""
    return _rows(index, 1, threads, _one_run, run, config, seed)


def _fit_stack(index, data, specs, seeds, threads):
    """Train the stack of specs × seeds on data: (index, the row fields of its models)."""
    return _rows(index, len(specs) * len(seeds), threads, _train_stack, specs, seeds, data)


def _unpickled(call, index, payload, *task):
    """call(index, shared, *task) for what every task shares, sent serialised with
    cloudpickle (a dependency of dask.distributed)."""
    import cloudpickle

    return call(index, cloudpickle.loads(payload), *task)


def _lost(failure, size):
    """The row fields of the size runs of a task whose worker died or was lost."""
    error = f"the worker running this task died or was lost: {type(failure).__name__}: {failure}"
    return [{"metrics": {}, "time": None, "error": error} for _ in range(size)]


def _run_local(call, shared, tasks, sizes, n_jobs, progress):
    """The row fields of every task (``call(i, shared, *tasks[i])``, sizes[i] rows), in
    task order, in joblib (loky) worker processes.

    Results come back in submission order, so a failure of the pool (a
    worker that died; a run's own exceptions are caught in _rows) stops the pass at
    the first unfinished task. That task is tried again alone: if it fails alone the
    failure is its own and becomes its rows' error; then the rest are resubmitted.
    progress is updated as each task's rows arrive.
    """
    results = {}

    def submit(indices):
        parallel = Parallel(n_jobs=n_jobs, batch_size=1, return_as="generator")
        try:
            for index, fields in parallel(delayed(call)(i, shared, *tasks[i]) for i in indices):
                results[index] = fields
                progress.update(len(fields))
            return None
        except Exception as error:
            return error

    pending = list(range(len(tasks)))
    while pending and submit(pending) is not None:
        suspect = next(i for i in pending if i not in results)
        failure = submit([suspect])
        if failure is not None:
            results[suspect] = _lost(failure, sizes[suspect])
            progress.update(sizes[suspect])
        pending = [i for i in pending if i not in results]
    return [results[i] for i in range(len(tasks))]


# A Dask cluster without a worker for this long has lost its workers for good (a restart
# takes seconds): the sweep's unfinished runs become error rows instead of waiting forever.
WORKERLESS_SECONDS = 60.0
POLL_SECONDS = 1.0


class _Workers:
    """Watches a Dask client's cluster for having no workers (see WORKERLESS_SECONDS)."""

    def __init__(self, client):
        self.client = client
        self.none_since = None

    def lost(self):
        """Whether the cluster has had no worker for WORKERLESS_SECONDS."""
        if self.client.nthreads():
            self.none_since = None
        elif self.none_since is None:
            self.none_since = time.monotonic()
        return self.none_since is not None and time.monotonic() - self.none_since >= WORKERLESS_SECONDS

    def present(self):
        """Wait until the cluster has a worker: True, or False when it has lost its workers."""
        while not self.client.nthreads():
            if self.lost():
                return False
            time.sleep(POLL_SECONDS)
        return True

    def outcome(self, future):
        """(result, None) of the future, or (None, its failure); the failure is a
        RuntimeError when the cluster has lost its workers (a result held by a worker
        that died is computed again, which needs one)."""
        while True:
            if not future.done() and self.lost():
                return None, RuntimeError(f"the Dask cluster has had no worker for {WORKERLESS_SECONDS:g} s")
            try:
                return future.result(timeout=POLL_SECONDS), None
            except TimeoutError:
                pass
            except Exception as failure:  # a run's own exceptions are caught in _rows
                return None, failure


def _run_dask(call, shared, tasks, sizes, client, progress):
    """The row fields of every task (as _run_local), in task order, one Dask future per task.

    shared, what every task takes, goes to every worker once (scattered with broadcast)
    instead of inside every task. A future fails when its worker died more often than the
    scheduler's allowed-failures; tasks queued on a dying worker can fail with it. Each
    failed task is therefore tried again alone, and becomes error rows only if it fails
    alone too. Results are fetched as soon as they exist: a finished task's result lives
    on its worker until fetched, and a later death of that worker (a retry that kills it
    again) would lose it. When the cluster has lost all its workers, the unfinished tasks
    fail (_Workers). progress is updated as each task's rows arrive.
    """
    import cloudpickle

    # Serialised with cloudpickle here: Dask would try plain pickle first, which sends a
    # function by reference to a module the workers may not be able to import.
    serialised = [cloudpickle.dumps(shared)]
    payloads = client.scatter(serialised, broadcast=True)

    def submit(i):
        return client.submit(_unpickled, call, i, payloads[-1], *tasks[i], pure=False)

    futures = [submit(i) for i in range(len(tasks))]
    fields = {}
    workers = _Workers(client)
    try:
        for i, future in enumerate(futures):
            result, failure = workers.outcome(future)
            if failure is None:
                fields[i] = result[1]
                progress.update(sizes[i])
        for i in range(len(tasks)):
            if i not in fields:  # one at a time: the next retry starts after this one ended
                if payloads[-1].status != "finished":  # the workers that held it died: send it again
                    if not workers.present():
                        fields[i] = _lost(RuntimeError(f"the Dask cluster has had no worker for "
                                                       f"{WORKERLESS_SECONDS:g} s"), sizes[i])
                        progress.update(sizes[i])
                        continue
                    payloads += client.scatter(serialised, broadcast=True)
                futures[i] = retry = submit(i)
                result, failure = workers.outcome(retry)
                fields[i] = result[1] if failure is None else _lost(failure, sizes[i])
                progress.update(sizes[i])
        return [fields[i] for i in range(len(tasks))]
    finally:
        client.cancel(futures + payloads)


def _configs(grid, names=None):
    """The configurations of grid, in grid order; names: the keys it may have (None: any)."""
    if not isinstance(grid, dict):
        raise TypeError(f"grid must be a dict of lists (parameter name -> values); got {type(grid).__name__}")
    for name, values in grid.items():
        if not isinstance(name, str) or name == "seed":
            raise ValueError(f"grid keys must be parameter names other than 'seed'; got {name!r}")
        if names is not None and name not in names:
            raise ValueError(f"grid keys must be MLPSpec fields {list(names)}; got {name!r}")
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__") or not len(values):
            raise ValueError(f"grid[{name!r}] must be a non-empty list of values; got {values!r}")
    names = list(grid)
    return [dict(zip(names, combination)) for combination in itertools.product(*grid.values())]


def _seeds(seeds):
    if isinstance(seeds, (int, np.integer)):
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1 or a list of seeds; got {seeds}")
        return list(range(int(seeds)))
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must not be empty")
    return seeds


def _data(data):
    """data as a tuple (X, y) or (X, y, X_test, y_test); fit and evaluate check the arrays."""
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 4):
        raise TypeError("data must be a tuple (X, y) or (X, y, X_test, y_test) for an MLPSpec; got "
                        + (f"{len(data)} items" if isinstance(data, (tuple, list)) else type(data).__name__))
    return tuple(data)


def _plan(run, grid, seeds, threads, data):
    """(configs, the (call, shared, tasks, row indices of each task)) of a sweep: one task
    per run of a run callable, one per stack of an MLPSpec (its configurations that
    share a stack_key, in grid order; rows numbered configuration major)."""
    if isinstance(run, MLPSpec):
        configs = _configs(grid, [field.name for field in dataclasses.fields(MLPSpec)])
        specs = [dataclasses.replace(run, **config) for config in configs]
        stacks = {}
        for c, spec in enumerate(specs):
            stacks.setdefault(spec.stack_key(), []).append(c)
        tasks = [([specs[c] for c in members], seeds, threads) for members in stacks.values()]
        rows = [[c * len(seeds) + s for c in members for s in range(len(seeds))] for members in stacks.values()]
        return configs, (_fit_stack, _data(data), tasks, rows)
    if not callable(run):
        raise TypeError(f"run must be an MLPSpec or callable as run(seed=..., **config); got {run!r}")
    if data is not None:
        raise TypeError("data is for an MLPSpec; a run callable brings its own data")
    configs = _configs(grid)
    tasks = [(config, seed, threads) for config in configs for seed in seeds]
    return configs, (_call, run, tasks, [[i] for i in range(len(tasks))])


def sweep(run, grid, seeds=15, scheduler=None, n_jobs=-1, threads=1, verbose=1, data=None):
    """Run every configuration of ``grid`` (a dict of lists: their Cartesian product) with
    every seed; returns a SweepResult, one row per configuration and seed.

    run is a callable, called as ``run(seed=s, **config)``, or an MLPSpec, trained on
    ``data``. A callable returns a dict of numeric metrics; it must be picklable (a
    module-level function, or a lambda/closure, which joblib sends with cloudpickle).
    seeds is a count (seeds 0..seeds-1) or a list of seeds.

    An MLPSpec is swept as stacks: the runs whose configurations differ only in the seed
    and in STACKED hyper-parameters (lr, momentum, weight_decay, betas, eps) are the
    models of one fastnn.Stack, trained together by one Stack.fit in one task; each seed
    seeds its model's initial weights and shuffling, so every row holds the numbers of a
    single fit with that seed. data is (X, y) or (X, y, X_test, y_test); the metrics are
    train_loss and train_accuracy (train_r2 under MSE) of the last epoch, test_loss and
    test_accuracy (test_r2) on the test data, and diverged (1.0 for a run that a
    non-finite loss stopped). A stack whose fit raises gives the error to all its rows;
    each row's time is its share of its stack's.

    Every task gets ``threads`` BLAS/OpenMP threads (threadpoolctl), wherever it runs:
    the thread count changes the rounding of matrix products, so fixing it is what
    makes a seed give the same numbers sequentially, in worker processes and on Dask.

    scheduler None runs on this machine in n_jobs joblib worker processes (loky; n_jobs=1
    runs in this process, where a run that kills its process kills the caller too). A
    dask.distributed Client, or a scheduler address such as 'tcp://host:8786', runs every
    task as a future on that Dask cluster (n_jobs is then unused: the cluster's workers and
    threads set the parallelism); the run callable or the data go to each worker once. There
    a task whose worker dies is retried as the scheduler's
    ``distributed.scheduler.allowed-failures`` says, then reported as failed.

    verbose: 0 silent, 1 a progress bar (runs done of all, elapsed time, runs/s). Runs
    that failed are counted in a RuntimeWarning at the end, with the first one's error.
    """
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer; got {threads!r}")
    seed_list = _seeds(seeds)
    configs, (call, shared, tasks, task_rows) = _plan(run, grid, seed_list, threads, data)
    if scheduler is not None:
        from dask.distributed import Client

        if not isinstance(scheduler, (Client, str)):
            raise TypeError(f"scheduler must be None, a dask.distributed Client or a scheduler "
                            f"address string; got {type(scheduler).__name__}")
    sizes = [len(rows) for rows in task_rows]
    with tqdm(total=sum(sizes), disable=not verbose, unit="run", desc="sweep") as progress:
        if scheduler is None:
            with parallel_config(backend="loky"):
                fields = _run_local(call, shared, tasks, sizes, n_jobs, progress)
        elif isinstance(scheduler, Client):
            fields = _run_dask(call, shared, tasks, sizes, scheduler, progress)
        else:
            with Client(scheduler, set_as_default=False) as client:
                fields = _run_dask(call, shared, tasks, sizes, client, progress)
    by_row = {row: each for rows, task in zip(task_rows, fields) for row, each in zip(rows, task)}
    runs = [(config, seed) for config in configs for seed in seed_list]
    rows = [{"config": dict(config), "seed": seed, **by_row[i]} for i, (config, seed) in enumerate(runs)]
    result = SweepResult(configs, rows)
    if result.errors:
        warnings.warn(f"{len(result.errors)} of {len(rows)} runs failed; {result.first_error()} "
                      "(result.errors has every traceback)", RuntimeWarning, stacklevel=2)
    return result
