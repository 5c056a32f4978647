"""Hyper-parameter sweeps over many seeds, run in parallel.

``sweep(run, grid, seeds)`` calls ``run(seed=s, **config)`` for every configuration
of ``grid`` and every seed, in joblib worker processes on this machine or on a Dask
cluster, and collects one row per run. A run that raises, or whose worker process
dies, becomes a row with an error instead of disappearing from the results.

On Dask the runs are submitted as one future each through the Client rather than
through joblib's dask backend: joblib 1.6 never completes a Parallel call whose dask
task fails at the scheduler (a KilledWorker after a worker died), because its
backend only signals successful futures back to the Parallel loop.
"""
import itertools
import math
import time
import traceback
import warnings

import numpy as np
from joblib import Parallel, delayed, parallel_config
from scipy.stats import trim_mean
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm


def _call(index, run, config, seed, threads):
    """Run one (config, seed) with ``threads`` BLAS/OpenMP threads and return (index, row
    fields); exceptions become an error."""
    start = time.perf_counter()
    try:
        with threadpool_limits(limits=threads):
            metrics = run(seed=seed, **config)
        if not isinstance(metrics, dict):
            raise TypeError(f"run must return a dict of metrics; got {type(metrics).__name__}")
        metrics = {str(name): float(value) for name, value in metrics.items()}
        error = None
    except Exception:
        metrics, error = {}, traceback.format_exc()
    return index, {"metrics": metrics, "time": time.perf_counter() - start, "error": error}


def _call_pickled(index, payload, config, seed, threads):
    """_call for a run serialised with cloudpickle (a dependency of dask.distributed)."""
    import cloudpickle

    return _call(index, cloudpickle.loads(payload), config, seed, threads)


def _lost(failure):
    return {"metrics": {}, "time": None,
            "error": f"the worker running this task died or was lost: {type(failure).__name__}: {failure}"}


def _run_local(run, tasks, n_jobs, threads, progress):
    """Row fields for every task, in task order, in joblib (loky) worker processes.

    Results come back in submission order, so a failure of the pool (a
    worker that died; run's own exceptions are caught in _call) stops the pass at
    the first unfinished run. That run is tried again alone: if it fails alone the
    failure is its own and becomes its row's error; then the rest are resubmitted.
    progress is updated as each row arrives.
    """
    results = {}

    def submit(indices):
        parallel = Parallel(n_jobs=n_jobs, batch_size=1, return_as="generator")
        try:
            for index, fields in parallel(delayed(_call)(i, run, *tasks[i], threads) for i in indices):
                results[index] = fields
                progress.update()
            return None
        except Exception as error:
            return error

    pending = list(range(len(tasks)))
    while pending and submit(pending) is not None:
        suspect = next(i for i in pending if i not in results)
        failure = submit([suspect])
        if failure is not None:
            results[suspect] = _lost(failure)
            progress.update()
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
            except Exception as failure:  # run's own exceptions are caught in _call_pickled
                return None, failure


def _run_dask(run, tasks, client, threads, progress):
    """Row fields for every task, in task order, one Dask future per task.

    A future fails when its worker died more often than the scheduler's allowed-failures;
    tasks queued on a dying worker can fail with it. Each failed task is therefore
    tried again alone, and becomes an error row only if it fails alone too. Results are
    fetched as soon as they exist: a finished task's result lives on its worker until
    fetched, and a later death of that worker (a retry that kills it again) would lose it.
    When the cluster has lost all its workers, the unfinished runs fail (_Workers).
    progress is updated as each row arrives.
    """
    import cloudpickle

    # Serialised with cloudpickle here: Dask would try plain pickle first, which sends a
    # function by reference to a module the workers may not be able to import.
    payload = cloudpickle.dumps(run)
    futures = [client.submit(_call_pickled, i, payload, *task, threads, pure=False)
               for i, task in enumerate(tasks)]
    fields = {}
    workers = _Workers(client)
    try:
        for i, future in enumerate(futures):
            result, failure = workers.outcome(future)
            if failure is None:
                fields[i] = result[1]
                progress.update()
        for i in range(len(tasks)):
            if i not in fields:  # one at a time: the next retry starts after this one ended
                futures[i] = retry = client.submit(_call_pickled, i, payload, *tasks[i], threads, pure=False)
                result, failure = workers.outcome(retry)
                fields[i] = result[1] if failure is None else _lost(failure)
                progress.update()
        return [fields[i] for i in range(len(tasks))]
    finally:
        client.cancel(futures)


def _configs(grid):
    if not isinstance(grid, dict):
        raise TypeError(f"grid must be a dict of lists (parameter name -> values); got {type(grid).__name__}")
    for name, values in grid.items():
        if not isinstance(name, str) or name == "seed":
            raise ValueError(f"grid keys must be parameter names other than 'seed'; got {name!r}")
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


def sweep(run, grid, seeds=15, scheduler=None, n_jobs=-1, threads=1, verbose=1):
    """Call ``run(seed=s, **config)`` for every configuration of ``grid`` (a dict of lists:
    their Cartesian product) and every seed; returns a SweepResult.

    run returns a dict of numeric metrics; it must be picklable (a module-level function,
    or a lambda/closure, which joblib sends with cloudpickle). seeds is a count (seeds
    0..seeds-1) or a list of seeds.

    Every run gets ``threads`` BLAS/OpenMP threads (threadpoolctl), wherever it runs:
    the thread count changes the rounding of matrix products, so fixing it is what
    makes a seed give the same numbers sequentially, in worker processes and on Dask.

    scheduler None runs on this machine in n_jobs joblib worker processes (loky; n_jobs=1
    runs in this process, where a run that kills its process kills the caller too). A
    dask.distributed Client, or a scheduler address such as 'tcp://host:8786', runs every
    run as a task on that Dask cluster (n_jobs is then unused: the cluster's workers and
    threads set the parallelism). There a run whose worker dies is retried as the
    scheduler's ``distributed.scheduler.allowed-failures`` says, then reported as failed.

    verbose: 0 silent, 1 a progress bar (runs done of all, elapsed time, runs/s). Runs
    that failed are counted in a RuntimeWarning at the end, with the first one's error.
    """
    if not callable(run):
        raise TypeError(f"run must be callable as run(seed=..., **config); got {run!r}")
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer; got {threads!r}")
    configs, seed_list = _configs(grid), _seeds(seeds)
    tasks = [(config, seed) for config in configs for seed in seed_list]
    if scheduler is not None:
        from dask.distributed import Client

        if not isinstance(scheduler, (Client, str)):
            raise TypeError(f"scheduler must be None, a dask.distributed Client or a scheduler "
                            f"address string; got {type(scheduler).__name__}")
    with tqdm(total=len(tasks), disable=not verbose, unit="run", desc="sweep") as progress:
        if scheduler is None:
            with parallel_config(backend="loky"):
                fields = _run_local(run, tasks, n_jobs, threads, progress)
        elif isinstance(scheduler, Client):
            fields = _run_dask(run, tasks, scheduler, threads, progress)
        else:
            with Client(scheduler, set_as_default=False) as client:
                fields = _run_dask(run, tasks, client, threads, progress)
    rows = [{"config": dict(config), "seed": seed, **row} for (config, seed), row in zip(tasks, fields)]
    result = SweepResult(configs, rows)
    if result.errors:
        warnings.warn(f"{len(result.errors)} of {len(rows)} runs failed; {result.first_error()} "
                      "(result.errors has every traceback)", RuntimeWarning, stacklevel=2)
    return result


def label(config):
    """'name=value, ...' for a configuration."""
    return ", ".join(f"{name}={value}" for name, value in config.items())


def iqm(values, axis=None):
    """Interquartile mean: the mean of the values left after dropping the lowest and
    the highest quarter (scipy.stats.trim_mean with 0.25). With axis, an array of them
    along that axis (axis=0 of runs × epochs: one per epoch)."""
    if axis is None:
        return float(trim_mean(np.asarray(values, np.float64), 0.25))
    return trim_mean(np.asarray(values, np.float64), 0.25, axis=axis)


def curves(histories, key="loss"):
    """The per-epoch values of key from several runs as one array (runs × epochs).

    histories is a list of fastnn History objects or of dicts of per-epoch lists
    (History.as_dict()), all recording the same metrics over the same number of epochs.
    A SweepResult does not qualify: its rows keep one number per metric and run, not
    curves; collect the histories of the runs in a list instead.
    """
    if isinstance(histories, (str, bytes, dict)) or not hasattr(histories, "__iter__"):
        raise TypeError(f"histories must be a list of History objects or dicts of per-epoch lists; "
                        f"got {type(histories).__name__}")
    records = []
    for i, history in enumerate(histories):
        if hasattr(history, "as_dict"):
            history = history.as_dict()
        if not isinstance(history, dict):
            raise TypeError(f"histories[{i}] must be a History or a dict of per-epoch lists; "
                            f"got {type(history).__name__}")
        records.append(history)
    if not records:
        raise ValueError("histories is empty: give at least one run's history")
    names = [sorted(name for name, value in record.items() if isinstance(value, (list, tuple, np.ndarray)))
             for record in records]
    for i, record_names in enumerate(names):
        if record_names != names[0]:
            raise ValueError(f"histories must all record the same metrics; histories[0] has {names[0]}, "
                             f"histories[{i}] has {record_names}")
    if key not in names[0]:
        raise ValueError(f"key {key!r} is not recorded by the histories; they record {names[0]}")
    lengths = [len(record[key]) for record in records]
    if len(set(lengths)) > 1 or not lengths[0]:
        raise ValueError(f"histories must all hold the same number of epochs, at least one; got {lengths}")
    for i, record in enumerate(records):
        if any(value is None for value in record[key]):
            raise ValueError(f"histories[{i}][{key!r}] has epochs with no value (None): a validation "
                             "metric needs validation data in every epoch")
    return np.array([record[key] for record in records], np.float64)


def median_and_worst(histories, key="loss"):
    """(median, worst): indices into histories of the median run and of the worst run by
    the final value of key, a loss (the worst is the highest). With an even number of
    runs the median is the lower of the middle two (see curves for what histories holds)."""
    final = curves(histories, key)[:, -1]
    order = np.argsort(final, kind="stable")
    return int(order[(len(order) - 1) // 2]), int(order[-1])


class SweepResult:
    """The rows of a sweep, one per run: {'config', 'seed', 'metrics', 'time', 'error'}
    (error is None, or the traceback or worker failure of a run that did not finish);
    configs lists the configurations in grid order."""

    def __init__(self, configs, rows):
        self.configs = configs
        self.rows = rows

    @property
    def errors(self):
        """The rows of runs that failed."""
        return [row for row in self.rows if row["error"] is not None]

    def first_error(self):
        """'the first, <config> seed <s>: <last line of its error>', or None when no run failed."""
        if not self.errors:
            return None
        row = self.errors[0]
        lines = row["error"].strip().splitlines() or [""]
        return f"the first, {label(row['config'])} seed {row['seed']}: {lines[-1]}"

    @property
    def metric_names(self):
        names = {}
        for row in self.rows:
            names.update(dict.fromkeys(row["metrics"]))
        return list(names)

    def values(self, metric):
        """{configuration label: [metric of each successful run, in seed order]}."""
        if metric not in self.metric_names:
            if len(self.errors) == len(self.rows):
                raise KeyError(f"no run reported metric {metric!r}: all {len(self.rows)} runs failed; "
                               f"{self.first_error()}")
            raise KeyError(f"no run reported metric {metric!r}; metrics: {self.metric_names}")
        return {label(config): [row["metrics"][metric] for row in self.rows
                                if row["config"] == config and metric in row["metrics"]]
                for config in self.configs}

    def summary(self, metric):
        """Per configuration: n (successful runs), failed, median, iqm (interquartile mean),
        q1 and q3 (quartiles), min, max and mean of metric; NaN where no run succeeded."""
        table = []
        for config, (name, values) in zip(self.configs, self.values(metric).items()):
            values = np.asarray(values, np.float64)
            failed = sum(1 for row in self.rows if row["config"] == config and row["error"] is not None)
            stats = {"config": config, "label": name, "n": len(values), "failed": failed}
            if len(values):
                q1, median, q3 = np.percentile(values, [25, 50, 75])
                stats.update(median=float(median), iqm=iqm(values), q1=float(q1), q3=float(q3),
                             min=float(values.min()), max=float(values.max()), mean=float(values.mean()))
            else:
                stats.update(dict.fromkeys(["median", "iqm", "q1", "q3", "min", "max", "mean"], math.nan))
            table.append(stats)
        return table

    def table(self, metric, digits=4):
        """summary(metric) as aligned text, one line per configuration."""
        summary = self.summary(metric)
        width = max(len("configuration"), *(len(s["label"]) for s in summary))
        columns = ["median", "iqm", "q1", "q3", "min", "max"]
        lines = [f"{'configuration':<{width}}  {'n':>3} {'failed':>6} " + " ".join(f"{c:>{digits + 4}}" for c in columns)]
        for s in summary:
            lines.append(f"{s['label']:<{width}}  {s['n']:>3} {s['failed']:>6} "
                         + " ".join(f"{s[c]:>{digits + 4}.{digits}f}" for c in columns))
        return "\n".join(lines)

    def boxplot(self, metric, title=None, path=None):
        """Box plots of metric over the seeds, one per configuration (fastnn.plot.boxplot)."""
        from . import plot

        return plot.boxplot(self.values(metric), ylabel=metric, title=title, path=path)

    def __len__(self):
        return len(self.rows)

    def __repr__(self):
        return f"SweepResult({len(self.configs)} configurations, {len(self.rows)} runs, {len(self.errors)} failed)"
