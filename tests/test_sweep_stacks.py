"""fastnn.sweep of an MLPSpec: the runs that differ only in seed and scalar hyper-parameters
train as one Stack, and every row holds the numbers of a single fit with its seed."""
import os
import sys

import numpy as np
import pytest

cloudpickle = pytest.importorskip("cloudpickle")

import fastnn  # noqa: E402
from fastnn import MLPSpec, sweep, sweeps  # noqa: E402
from fastnn.model import Stack  # noqa: E402

# Worker processes cannot import this test module by name (pytest imports it from a
# path), so the runs below travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

RNG = np.random.default_rng(0)
X, X_TEST = RNG.standard_normal((40, 3)), RNG.standard_normal((20, 3))
Y, Y_TEST = RNG.integers(0, 3, 40), RNG.integers(0, 3, 20)
DATA = (X, Y, X_TEST, Y_TEST)
SGD_SPEC = MLPSpec([3, 6, 3], activation="tanh", dtype="float64", optimizer="sgd", epochs=3, batch_size=8)
SGD_GRID = {"lr": [0.3, 0.05], "momentum": [0.0, 0.9], "batch_size": [8, "full"]}
ADAM_SPEC = MLPSpec([3, 6, 3], activation="relu", dtype="float64", epochs=3, batch_size=16)
ADAM_GRID = {"lr": [0.01, 0.001], "betas": [(0.9, 0.999), (0.8, 0.99)], "eps": [1e-8, 1e-3],
             "weight_decay": [0.0, 0.01]}


def _metrics(model, history, X_test, y_test):
    """The metrics the MLPSpec sweep reports, of one model and its History."""
    test = {f"test_{name}": value for name, value in model.evaluate(X_test, y_test).items()}
    return {"train_loss": history.loss[-1], f"train_{history.metric_name}": history.metric[-1],
            "diverged": float(history.diverged), **test}


def sgd_fit(seed, lr, momentum, batch_size):
    """A single fit of SGD_SPEC with the configuration's values."""
    model = fastnn.mlp([3, 6, 3], activation="tanh", dtype=np.float64, seed=seed)
    history = model.fit(X, Y, optimizer=fastnn.SGD(lr, momentum=momentum), epochs=3, batch_size=batch_size,
                        seed=seed, verbose=0)
    return _metrics(model, history, X_TEST, Y_TEST)


def adam_fit(seed, lr, betas, eps, weight_decay):
    """A single fit of ADAM_SPEC with the configuration's values."""
    model = fastnn.mlp([3, 6, 3], activation="relu", dtype=np.float64, seed=seed)
    history = model.fit(X, Y, optimizer=fastnn.Adam(lr, betas=betas, eps=eps, weight_decay=weight_decay),
                        epochs=3, batch_size=16, seed=seed, verbose=0)
    return _metrics(model, history, X_TEST, Y_TEST)


def regression_fit(seed, lr):
    targets, test_targets = np.eye(3)[Y], np.eye(3)[Y_TEST]
    model = fastnn.mlp([3, 6, 3], activation="sigmoid", dtype=np.float64, seed=seed, loss="mse")
    history = model.fit(X, targets, optimizer=fastnn.SGD(lr), epochs=2, batch_size=8, clip_norm=0.5, seed=seed,
                        verbose=0)
    return _metrics(model, history, X_TEST, test_targets)


def runs(result):
    return [(row["config"], row["seed"], row["metrics"], row["error"]) for row in result.rows]


@pytest.fixture
def stack_fits(monkeypatch):
    """The number of models of every Stack.fit call, in order."""
    sizes = []
    fit = Stack.fit

    def counted(self, *args, **kwargs):
        sizes.append(len(self))
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(Stack, "fit", counted)
    return sizes


def test_runs_differing_in_seed_and_scalar_hyper_parameters_share_one_stack(stack_fits):
    result = sweep(SGD_SPEC, SGD_GRID, seeds=3, data=DATA, n_jobs=1, verbose=0)
    assert stack_fits == [12, 12]  # one stack per batch size: 2 lr x 2 momentum x 3 seeds
    assert len(result) == 24 and not result.errors
    assert [(row["config"], row["seed"]) for row in result.rows] == [
        (config, seed) for config in result.configs for seed in range(3)]
    stack_fits.clear()
    grid = {"sizes": [[3, 4, 3], [3, 5, 3]], "activation": ["tanh", "relu"], "lr": [0.1, 0.2],
            "epochs": [1, 2], "dtype": ["float32", "float64"]}
    sweep(SGD_SPEC, grid, seeds=[5, 6], data=DATA, n_jobs=1, verbose=0)
    assert stack_fits == [4] * 16
    stack_fits.clear()
    sweep(SGD_SPEC, {"optimizer": ["sgd", "adam"], "weight_decay": [0.0, 0.1]}, seeds=2, data=DATA, n_jobs=1,
          verbose=0)
    assert stack_fits == [4, 4]


@pytest.mark.parametrize("spec, grid, single", [(SGD_SPEC, SGD_GRID, sgd_fit), (ADAM_SPEC, ADAM_GRID, adam_fit)],
                         ids=["sgd", "adam"])
def test_every_row_is_the_single_fit_with_its_seed(spec, grid, single):
    stacked = sweep(spec, grid, seeds=[3, 1, 4], data=DATA, n_jobs=1, verbose=0)
    alone = sweep(single, grid, seeds=[3, 1, 4], n_jobs=1, verbose=0)
    assert runs(stacked) == runs(alone)
    assert len({row["metrics"]["test_loss"] for row in stacked.rows}) > len(stacked) // 2


def test_regression_reports_r2_and_train_only_data_gives_train_metrics():
    spec = MLPSpec([3, 6, 3], activation="sigmoid", dtype="float64", loss="mse", optimizer="sgd", epochs=2,
                   batch_size=8, clip_norm=0.5)
    data = (X, np.eye(3)[Y], X_TEST, np.eye(3)[Y_TEST])
    stacked = sweep(spec, {"lr": [0.5, 0.1]}, seeds=2, data=data, n_jobs=1, verbose=0)
    assert runs(stacked) == runs(sweep(regression_fit, {"lr": [0.5, 0.1]}, seeds=2, n_jobs=1, verbose=0))
    train_only = sweep(spec, {"lr": [0.5]}, seeds=2, data=data[:2], n_jobs=1, verbose=0)
    assert train_only.metric_names == ["train_loss", "train_r2", "diverged"]
    assert [row["metrics"] for row in train_only.rows] == [
        {name: row["metrics"][name] for name in train_only.metric_names} for row in stacked.rows[:2]]


def test_worker_processes_give_the_sequential_numbers():
    sequential = sweep(SGD_SPEC, SGD_GRID, seeds=2, data=DATA, n_jobs=1, verbose=0)
    assert runs(sweep(SGD_SPEC, SGD_GRID, seeds=2, data=DATA, n_jobs=2, verbose=0)) == runs(sequential)


def test_a_stack_whose_fit_raises_gives_every_run_its_error_and_the_others_go_on():
    grid = {"sizes": [[3, 6, 3], [4, 6, 3]], "lr": [0.1, 0.2]}
    with pytest.warns(RuntimeWarning, match=r"6 of 12 runs failed; the first, sizes=\[4, 6, 3\], lr=0.1 seed 0: "
                                            r"ValueError: X must have 4 features"):
        result = sweep(SGD_SPEC, grid, seeds=3, data=DATA, n_jobs=1, verbose=0)
    assert [row["error"] is None for row in result.rows] == [True] * 6 + [False] * 6
    assert all(row["metrics"] == {} and "X must have 4 features" in row["error"] for row in result.errors)
    result.errors[0]["metrics"]["noted"] = 1.0
    assert result.errors[1]["metrics"] == {}, "the rows of a failed stack must not share their metrics"
    assert [s["n"] for s in result.summary("test_accuracy")] == [3, 3, 0, 0]


def test_a_diverging_run_is_flagged_and_its_stack_mates_are_not():
    with pytest.warns(RuntimeWarning, match="the training loss became"):
        result = sweep(SGD_SPEC, {"activation": ["relu"], "lr": [0.1, 1e12]}, seeds=2, data=DATA, n_jobs=1,
                       verbose=0)
    assert result.values("diverged") == {"activation=relu, lr=0.1": [0.0, 0.0],
                                         "activation=relu, lr=1000000000000.0": [1.0, 1.0]}
    assert not result.errors


def task_of_three(index, shared, die):
    """A task of three runs, like a stack of three models, that kills its worker when told to."""
    if die:
        os._exit(3)
    return index, [{"metrics": {"value": shared + k}, "time": 0.0, "error": None} for k in range(3)]


def test_a_task_whose_worker_dies_gives_every_run_of_it_the_error():
    from tqdm import tqdm

    with tqdm(disable=True) as progress:
        fields = sweeps._run_local(task_of_three, 10, [(False,), (True,), (False,)], [3, 3, 3], 2, progress)
    assert [[row["metrics"] for row in task] for task in fields[::2]] == [[{"value": v} for v in (10, 11, 12)]] * 2
    assert len(fields[1]) == 3 and all("worker running this task died" in row["error"] for row in fields[1])


def test_progress_counts_the_runs_of_each_stack(capsys):
    sweep(SGD_SPEC, SGD_GRID, seeds=2, data=DATA, n_jobs=1)
    shown = capsys.readouterr().err
    assert "sweep" in shown and "16/16" in shown
    assert "run/s" in shown or "s/run" in shown
    sweep(SGD_SPEC, SGD_GRID, seeds=2, data=DATA, n_jobs=1, verbose=0)
    assert capsys.readouterr().err == ""


def test_the_summary_of_a_sweep_whose_runs_all_failed_says_so():
    wrong = (X[:, :2], Y)
    with pytest.warns(RuntimeWarning, match="4 of 4 runs failed"):
        result = sweep(SGD_SPEC, {"lr": [0.1, 0.2]}, seeds=2, data=wrong, n_jobs=1, verbose=0)
    with pytest.raises(ValueError, match=r"no run reported metric 'test_accuracy': all 4 runs failed; the first, "
                                         r"lr=0.1 seed 0: ValueError: X must have 3 features"):
        result.summary("test_accuracy")


@pytest.mark.parametrize("spec, match", [
    (dict(sizes=[3]), "sizes must list at least an input and an output size"),
    (dict(sizes=[3, 0]), r"sizes\[1\] must be an integer >= 1"),
    (dict(sizes=[3, 2], activation="swish"), "activation must be one of"),
    (dict(sizes=[3, 2], init="ones"), "init must be one of"),
    (dict(sizes=[3, 2], loss="hinge"), "loss must be a Loss or one of"),
    (dict(sizes=[3, 2], optimizer="rmsprop"), "optimizer must be one of"),
    (dict(sizes=[3, 2], momentum=0.9), r"momentum=0.9 does not apply to optimizer 'adam', which takes \['lr', "),
    (dict(sizes=[3, 2], optimizer="sgd", betas=(0.9, 0.9)), "betas=.* does not apply to optimizer 'sgd'"),
    (dict(sizes=[3, 2], lr=-1), "lr must be a finite number > 0"),
    (dict(sizes=[3, 2], lr=[0.1, 0.2]), "one value per run"),
    (dict(sizes=[3, 2], epochs=0), "epochs must be an integer >= 1"),
    (dict(sizes=[3, 2], batch_size="half"), "batch_size must be None, 'full' or a positive integer"),
    (dict(sizes=[3, 2], clip_norm=0), "clip_norm must be a finite number > 0"),
])
def test_bad_specs_are_refused_with_the_field_named(spec, match):
    with pytest.raises(ValueError, match=match):
        MLPSpec(**spec)


def test_bad_sweep_arguments_are_refused_before_anything_runs(stack_fits):
    with pytest.raises(ValueError, match=r"grid keys must be MLPSpec fields \['sizes', .*got 'seed_count'"):
        sweep(SGD_SPEC, {"seed_count": [1]}, data=DATA, n_jobs=1)
    with pytest.raises(ValueError, match="lr must be a finite number > 0; got 0.0"):
        sweep(SGD_SPEC, {"lr": [0.1, 0.0]}, data=DATA, n_jobs=1)
    with pytest.raises(TypeError, match=r"data must be a tuple \(X, y\) or \(X, y, X_test, y_test\) for an "
                                        r"MLPSpec; got NoneType"):
        sweep(SGD_SPEC, {"lr": [0.1]}, n_jobs=1)
    with pytest.raises(TypeError, match="got 3 items"):
        sweep(SGD_SPEC, {"lr": [0.1]}, data=DATA[:3], n_jobs=1)
    with pytest.raises(TypeError, match="data is for an MLPSpec; a run callable brings its own data"):
        sweep(sgd_fit, {"lr": [0.1]}, data=DATA, n_jobs=1)
    with pytest.raises(TypeError, match="run must be an MLPSpec or callable"):
        sweep({"sizes": [3, 3]}, {"lr": [0.1]}, data=DATA, n_jobs=1)
    assert stack_fits == []


# --- Dask: what every task shares goes to the workers once ------------------------------

def _bytes_of(value):
    """The bytes of the arrays and byte strings in value, looked for through containers."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, (tuple, list)):
        return sum(map(_bytes_of, value))
    if isinstance(value, dict):
        return sum(map(_bytes_of, value.values()))
    return 0


@pytest.fixture
def watched_client(cluster, monkeypatch):
    """A Client of the cluster whose scatter and submit calls are recorded:
    (client, scatters [(bytes, broadcast)], submitted bytes of each task's arguments)."""
    from dask.distributed import Client

    with Client(cluster) as client:
        scatters, submitted = [], []
        scatter, submit = client.scatter, client.submit

        def watched_scatter(data, **kwargs):
            scatters.append((_bytes_of(data), kwargs.get("broadcast", False)))
            return scatter(data, **kwargs)

        def watched_submit(function, *args, **kwargs):
            submitted.append(_bytes_of([args, kwargs]))
            return submit(function, *args, **kwargs)

        monkeypatch.setattr(client, "scatter", watched_scatter)
        monkeypatch.setattr(client, "submit", watched_submit)
        yield client, scatters, submitted


def test_on_dask_the_data_go_to_the_workers_once_and_the_rows_are_the_sequential_ones(watched_client):
    client, scatters, submitted = watched_client
    big = np.repeat(X, 500, axis=0), np.repeat(Y, 500)  # 20,000 samples: 480 kB of X
    data = big + (X_TEST, Y_TEST)
    result = sweep(SGD_SPEC, SGD_GRID, seeds=2, data=data, scheduler=client, verbose=0)
    assert runs(result) == runs(sweep(SGD_SPEC, SGD_GRID, seeds=2, data=data, n_jobs=1, verbose=0))
    ((scattered, broadcast),) = scatters
    assert broadcast and scattered > big[0].nbytes
    assert len(submitted) == 2 and max(submitted) < 10_000


def test_on_dask_a_run_callable_goes_to_the_workers_once(watched_client):
    client, scatters, submitted = watched_client
    big = np.ones((20_000, 3))

    def run(seed, k):
        return {"value": float(big.sum()) + k + seed}

    result = sweep(run, {"k": [0, 1]}, seeds=3, scheduler=client, verbose=0)
    assert result.values("value") == {"k=0": [60_000, 60_001, 60_002], "k=1": [60_001, 60_002, 60_003]}
    ((scattered, broadcast),) = scatters
    assert broadcast and scattered > big.nbytes
    assert len(submitted) == 6 and max(submitted) < 10_000


def dies_once(seed, marker):
    """Kills its worker process the first time seed 1 runs (marker records that it did)."""
    if seed == 1 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return {"value": seed}


def test_what_a_dead_worker_held_alone_is_sent_again_for_the_retries(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                      dashboard_address=":0") as one, distributed.Client(one) as client:
            result = sweep(dies_once, {"marker": [str(tmp_path / "died")]}, seeds=4, scheduler=client, verbose=0)
    assert (tmp_path / "died").exists()
    assert not result.errors and list(result.values("value").values()) == [[0, 1, 2, 3]]
