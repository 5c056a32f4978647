import json
import os
import subprocess
import sys

import numpy as np
import pytest

cloudpickle = pytest.importorskip("cloudpickle")

from fastnn import datasets, mlp  # noqa: E402
from fastnn.sweeps import SweepResult, curves, iqm, median_and_worst, sweep  # noqa: E402

# Worker processes cannot import this test module by name (pytest imports it from a
# path), so the runs below travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def arithmetic(seed, a, b):
    return {"sum": a + b + seed, "product": a * b * seed}


def train_circles(seed, lr):
    """A small real training run: its numbers depend on the seed and the learning rate."""
    X, y = datasets.circles(200, noise=0.1, seed=seed)
    model = mlp([2, 8, 2], activation="tanh", seed=seed)
    model.fit(X[:150], y[:150], optimizer="sgd", lr=lr, epochs=5, batch_size=10, seed=seed, verbose=0)
    return model.evaluate(X[150:], y[150:])


def fails_for_b2(seed, a, b):
    if b == 2 and seed == 1:
        raise RuntimeError("bad configuration")
    return {"sum": a + b + seed}


def dies_for_one_run(seed, crash):
    if crash and seed == 1:
        os._exit(3)
    return {"value": 10 * crash + seed}


def blas_threads(seed, k):
    from threadpoolctl import threadpool_info

    return {"threads": min(pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas")}


def metrics_by_run(result):
    return [(tuple(row["config"].items()), row["seed"], row["metrics"]) for row in result.rows]


def test_rows_cover_the_grid_times_seeds_in_order():
    result = sweep(arithmetic, {"a": [1, 2], "b": [10, 20, 30]}, seeds=3, n_jobs=1)
    assert isinstance(result, SweepResult) and len(result) == 18
    assert result.configs == [{"a": a, "b": b} for a in (1, 2) for b in (10, 20, 30)]
    expected = [({"a": a, "b": b}, s) for a in (1, 2) for b in (10, 20, 30) for s in range(3)]
    assert [(row["config"], row["seed"]) for row in result.rows] == expected
    for row in result.rows:
        a, b, s = row["config"]["a"], row["config"]["b"], row["seed"]
        assert row["metrics"] == {"sum": a + b + s, "product": a * b * s}
        assert row["error"] is None and row["time"] >= 0
    assert result.metric_names == ["sum", "product"]
    assert result.values("sum")["a=2, b=30"] == [32, 33, 34]


def test_summary_statistics():
    values = [0, 0, 0, 1, 2, 3, 4, 100]
    result = sweep(lambda seed, k: {"m": values[seed] * k}, {"k": [1, 2]}, seeds=8, n_jobs=1)
    first, second = result.summary("m")
    assert first["label"] == "k=1" and first["n"] == 8 and first["failed"] == 0
    assert first["median"] == 1.5
    assert first["iqm"] == 1.5  # the lowest and highest two dropped: mean of 0, 1, 2, 3
    assert (first["q1"], first["q3"]) == (np.percentile(values, 25), np.percentile(values, 75))
    assert (first["min"], first["max"], first["mean"]) == (0, 100, 13.75)
    assert second["median"] == 3.0 and second["iqm"] == 3.0
    assert iqm(range(1, 16)) == 8.0  # 15 values: the middle 9 (4..12) remain
    assert "k=1" in result.table("m") and "iqm" in result.table("m")


def test_iqm_along_an_axis():
    runs = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [100.0, 1000.0]])
    np.testing.assert_allclose(iqm(runs, axis=0), [2.5, 25.0])
    np.testing.assert_allclose(iqm(runs.T, axis=1), [2.5, 25.0])


def test_median_and_worst_by_final_loss():
    final = [0.3, 0.9, 0.1, 0.5, 0.2]  # sorted: 0.1 (2), 0.2 (4), 0.3 (0), 0.5 (3), 0.9 (1)
    histories = [{"loss": [1.0, loss], "accuracy": [0.5, 0.6]} for loss in final]
    np.testing.assert_array_equal(curves(histories)[:, -1], final)
    assert median_and_worst(histories) == (0, 1)
    assert median_and_worst(histories[:4]) == (0, 1)  # 0.1, 0.3, 0.5, 0.9: the lower middle one
    assert median_and_worst(histories, key="accuracy") == (2, 4)  # all tied: run order decides


def test_a_run_that_raises_is_a_row_with_its_error():
    result = sweep(fails_for_b2, {"a": [1], "b": [1, 2]}, seeds=[0, 1, 2], n_jobs=1)
    assert len(result) == 6
    (failed,) = result.errors
    assert failed["config"] == {"a": 1, "b": 2} and failed["seed"] == 1
    assert "RuntimeError: bad configuration" in failed["error"] and failed["metrics"] == {}
    assert result.values("sum") == {"a=1, b=1": [2, 3, 4], "a=1, b=2": [3, 5]}
    assert [s["failed"] for s in result.summary("sum")] == [0, 1]


def test_failed_runs_warn_at_the_end_and_an_unreported_metric_says_all_failed(capsys):
    def wrong_features(seed, lr):
        mlp([2, 4, 2], seed=seed).fit(np.zeros((8, 784)), np.zeros(8, int), lr=lr, epochs=1, verbose=0)

    with pytest.warns(RuntimeWarning, match=r"4 of 4 runs failed; the first, lr=0.1 seed 0: ValueError: .*784"):
        result = sweep(wrong_features, {"lr": [0.1, 0.01]}, seeds=2, n_jobs=1)
    with pytest.raises(ValueError, match=r"no run reported metric 'accuracy': all 4 runs failed; the first, "
                                         r"lr=0.1 seed 0: ValueError: .*784"):
        result.summary("accuracy")
    with pytest.warns(RuntimeWarning, match="1 of 6 runs failed; the first, a=1, b=2 seed 1: RuntimeError: bad"):
        sweep(fails_for_b2, {"a": [1], "b": [1, 2]}, seeds=[0, 1, 2], n_jobs=1, verbose=0)
    assert "4/4" in capsys.readouterr().err


def test_sweeps_show_progress_and_are_silent_at_verbose_0(capsys):
    sweep(arithmetic, {"a": [1, 2], "b": [3]}, seeds=3, n_jobs=1)
    shown = capsys.readouterr().err
    assert "sweep" in shown and "6/6" in shown and "run/s" in shown
    sweep(arithmetic, {"a": [1, 2], "b": [3]}, seeds=3, n_jobs=1, verbose=0)
    assert capsys.readouterr().err == ""


def test_a_run_must_return_a_dict():
    result = sweep(lambda seed, x: seed, {"x": [0]}, seeds=1, n_jobs=1)
    assert "run must return a dict of metrics; got int" in result.rows[0]["error"]


@pytest.mark.parametrize("kwargs, error, match", [
    ({"grid": [1, 2]}, TypeError, "grid must be a dict"),
    ({"grid": {"a": []}}, ValueError, r"grid\['a'\] must be a non-empty list"),
    ({"grid": {"a": "xyz"}}, ValueError, r"grid\['a'\] must be a non-empty list"),
    ({"grid": {"seed": [1]}}, ValueError, "other than 'seed'"),
    ({"grid": {"a": [1]}, "seeds": 0}, ValueError, "seeds must be >= 1"),
    ({"grid": {"a": [1]}, "threads": 0}, ValueError, "threads must be a positive integer"),
    ({"grid": {"a": [1]}, "scheduler": 42}, TypeError, "scheduler must be None, a dask.distributed Client"),
])
def test_bad_arguments(kwargs, error, match):
    if "scheduler" in kwargs:
        pytest.importorskip("dask.distributed")
    with pytest.raises(error, match=match):
        sweep(arithmetic, **kwargs)


def test_unknown_metric():
    result = sweep(arithmetic, {"a": [1], "b": [1]}, seeds=1, n_jobs=1)
    with pytest.raises(KeyError, match="no run reported metric 'acc'"):
        result.values("acc")


def test_boxplot_figure(tmp_path):
    result = sweep(arithmetic, {"a": [1, 2], "b": [3]}, seeds=5, n_jobs=1)
    figure = result.boxplot("sum", path=tmp_path / "sweep.png")
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["a=1, b=3", "a=2, b=3"]
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"


# --- worker processes and a Dask cluster ------------------------------------------------

GRID = {"lr": [0.3, 0.03]}


@pytest.fixture(scope="module")
def sequential_training():
    return sweep(train_circles, GRID, seeds=3, n_jobs=1)


def test_joblib_processes_give_the_sequential_numbers(sequential_training):
    parallel = sweep(train_circles, GRID, seeds=3, n_jobs=2)
    assert metrics_by_run(parallel) == metrics_by_run(sequential_training)
    assert not parallel.errors
    assert sequential_training.rows[0]["metrics"] != sequential_training.rows[1]["metrics"]


def test_a_dying_worker_process_is_reported():
    result = sweep(dies_for_one_run, {"crash": [False, True]}, seeds=3, n_jobs=2)
    assert len(result) == 6
    (failed,) = result.errors
    assert failed["config"] == {"crash": True} and failed["seed"] == 1
    assert "worker running this task died" in failed["error"]
    assert result.values("value") == {"crash=False": [0, 1, 2], "crash=True": [10, 12]}


def test_dask_client_gives_the_sequential_numbers(cluster, sequential_training):
    from dask.distributed import Client

    with Client(cluster) as client:
        result = sweep(train_circles, GRID, seeds=3, scheduler=client)
    assert not result.errors
    assert metrics_by_run(result) == metrics_by_run(sequential_training)


def test_dask_scheduler_address(cluster):
    result = sweep(arithmetic, {"a": [1, 2], "b": [5]}, seeds=2, scheduler=cluster.scheduler_address)
    assert [row["metrics"]["sum"] for row in result.rows] == [6, 7, 7, 8]


def test_a_dying_dask_worker_is_reported(cluster):
    from dask.distributed import Client

    with Client(cluster) as client:
        result = sweep(dies_for_one_run, {"crash": [False, True]}, seeds=3, scheduler=client)
    assert len(result) == 6
    (failed,) = result.errors
    assert failed["config"] == {"crash": True} and failed["seed"] == 1
    assert "KilledWorker" in failed["error"]
    assert result.values("value") == {"crash=False": [0, 1, 2], "crash=True": [10, 12]}


def test_every_backend_runs_with_the_requested_blas_threads(cluster):
    from dask.distributed import Client

    sequential = sweep(blas_threads, {"k": [0]}, seeds=2, n_jobs=1)
    processes = sweep(blas_threads, {"k": [0]}, seeds=2, n_jobs=2)
    with Client(cluster) as client:
        dask = sweep(blas_threads, {"k": [0]}, seeds=2, scheduler=client)
    for result in (sequential, processes, dask):
        assert result.values("threads") == {"k=0": [1, 1]}
    if os.cpu_count() >= 2:
        assert sweep(blas_threads, {"k": [0]}, seeds=1, n_jobs=1, threads=2).values("threads") == {"k=0": [2]}


LOST_WORKERS = """
import json, os, sys, time
import fastnn.sweeps
from dask.distributed import Client, LocalCluster


def run(seed, crash):
    if crash and seed in (3, 7):
        os._exit(1)
    time.sleep(0.05)
    return {"value": seed}


if __name__ == "__main__":
    fastnn.sweeps.WORKERLESS_SECONDS = 5
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        for nanny in cluster.workers.values():
            nanny.close_gracefully()  # a worker that dies stays dead, as on a machine that went down
        with Client(cluster) as client:
            result = fastnn.sweep(run, {"crash": [True, False]}, seeds=20, scheduler=client)
    print(json.dumps([[row["config"]["crash"], row["seed"], row["error"]] for row in result.rows]))
"""


def test_a_dask_sweep_whose_workers_are_all_lost_finishes_with_error_rows(tmp_path):
    pytest.importorskip("dask.distributed")
    script = tmp_path / "lost_workers.py"
    script.write_text(LOST_WORKERS)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(rows) == 40
    errors = {(crash, seed): error for crash, seed, error in rows if error is not None}
    assert (True, 3) in errors or (True, 7) in errors
    assert any("no worker for 5 s" in error for error in errors.values())
    assert all("died or was lost" in error for error in errors.values())
