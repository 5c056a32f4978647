"""The benchmark cases compute what they claim, on small cases (no timings are judged)."""
import functools
import io
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import fastnn
import fastnn.kernels as K
from fastnn import bench, cli, datasets
from fastnn.bench import peers, runner

BACKENDS = K.available_backends()
TINY_PLAN = {"kernel_shapes": ((3, 5, 4),), "nets": ("2-2-3-2",), "modes": ("full", 64, 1), "widths": (3, 4, 5, 6),
             "repeats": 1, "min_time": 0, "accuracy_runs": 0, "cold_start": False, "gemm_size": 64,
             "blas_cases": ((8, 1),)}


def test_kernel_flops_count_the_matrix_products():
    assert bench.kernel_flops("matmul", 2, 3, 4) == 2 * 2 * 3 * 4
    assert bench.kernel_flops("dense_forward", 2, 3, 4) == 48
    assert bench.kernel_flops("dense_backward", 2, 3, 4) == 96  # dW and dX
    assert bench.kernel_flops("activation_forward", 2, 3, 4) is None
    assert bench.gflops(3e9, 1.5) == pytest.approx(2.0)


def test_kernel_results_give_gflops_and_share_of_gemm():
    case = bench.KernelCase("dense_forward", 8, 16, 4)
    result = bench.kernel_results(case, seconds=1e-6, gemm_gflops=10.0)
    assert result["gflops"] == pytest.approx(2 * 8 * 16 * 4 / 1e-6 / 1e9)
    assert result["percent_of_gemm"] == pytest.approx(100 * result["gflops"] / 10.0)
    elementwise = bench.kernel_results(bench.KernelCase("softmax", 8, 16, 4), 1e-6, 10.0)
    assert elementwise["gflops"] is None and elementwise["percent_of_gemm"] is None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kernel", K.KERNELS)
def test_kernel_case_runs_the_backends_kernel_on_its_arrays(kernel, backend):
    """A backend's timed call leaves the arrays as the NumPy reference leaves identical ones."""
    timed, expected = bench.KernelCase(kernel, 3, 5, 4, np.float64), bench.KernelCase(kernel, 3, 5, 4, np.float64)
    timed.call(backend)()
    expected.call("numpy")()
    for got, want in zip(timed.args, expected.args):
        if isinstance(got, np.ndarray):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_dense_forward_case_is_relu_of_the_layer():
    case = bench.KernelCase("dense_forward", 3, 5, 4, np.float64)
    case.call(BACKENDS[0])()
    X, W, b, out = case.args[:4]
    np.testing.assert_allclose(out, np.maximum(X @ W + b, 0), rtol=1e-12)
    assert case.label == "dense_forward 3x5->4 float64"


def test_gemm_rate_is_a_rate():
    rate = bench.gemm_rate(np.float32, n=64, repeats=1)
    assert math.isfinite(rate) and rate > 0


def test_measure_warms_up_and_interleaves_in_shuffled_rounds():
    order = []
    calls = {name: (lambda name=name: order.append(name)) for name in "abcd"}
    times = bench.measure(calls, repeats=6, min_time=0)
    assert order[:8] == list("abcd") * 2  # the warm-up calls, then the first round in order
    rounds = [order[i:i + 4] for i in range(4, len(order), 4)]
    assert len(rounds) == 6 and all(sorted(r) == list("abcd") for r in rounds)
    assert len({tuple(r) for r in rounds}) > 1  # later rounds in other orders
    assert {r[r.index("a") - 1] for r in rounds if r[0] != "a"} != {"d"}  # a's predecessor varies
    assert set(times) == set("abcd") and all(t >= 0 for t in times.values())


def test_timer_times_its_block():
    with bench.Timer() as timer:
        time.sleep(0.01)
    assert 0.01 <= timer.seconds < 60


def test_step_flops_of_the_mnist_net():
    # 2·Σ in·out forward + the same for the weight gradients + input gradients past the first layer
    assert bench.step_flops([784, 256, 128, 10]) == 1_007_104
    assert bench.step_flops([784, 256, 128, 10], batch=128) == 128 * 1_007_104


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch_size, samples, updates", [("full", 512, 1), (8, 512, 64), (1, 256, 256)])
def test_mode_case_trains_the_net_with_the_batch_size_it_names(backend, batch_size, samples, updates):
    case = bench.ModeCase("2-5-5-5-2", batch_size, backend, n_samples=512)
    model, optimizer = case.trainer.model, case.trainer.optimizer
    assert [(d.in_features, d.out_features) for d in model.dense_layers] == [(2, 5), (5, 5), (5, 5), (5, 2)]
    assert (optimizer.lr, optimizer.momentum) == (0.01, 0.9)
    assert (case.samples, case.updates) == (samples, updates)
    before = model.params.copy()
    case.run()
    assert optimizer.steps == updates
    assert not np.array_equal(model.params, before)
    result = bench.mode_results(case, seconds=0.5)
    assert result["samples_per_second"] == pytest.approx(samples / 0.5)
    assert result["gflops"] == pytest.approx(bench.step_flops([2, 5, 5, 5, 2]) * samples / 0.5 / 1e9)


def test_epoch_samples_cover_at_least_the_batch():
    assert bench.epoch_samples("full", 8192) == 8192
    assert bench.epoch_samples(1, 8192) == 256
    assert bench.epoch_samples(512, 8192) == 8192


def _separable(n=300):
    X, y = datasets.blobs(n, spread=0.3, seed=0)
    return X[:200], y[:200], X[200:], y[200:]


def test_time_to_accuracy_trains_until_the_target():
    result = bench.time_to_accuracy(_separable(), 8, target=0.95, net="2-5-5-5-2", lr=0.05, max_epochs=50)
    assert result["reached"] and result["accuracy"] >= 0.95
    assert result["updates"] == result["epochs"] * 25
    assert result["samples"] == result["epochs"] * 200
    assert result["seconds"] > 0


def test_time_to_accuracy_stops_at_max_epochs():
    result = bench.time_to_accuracy(_separable(), "full", target=1.01, net="2-2-3-2", lr=0.1, max_epochs=3)
    assert (result["epochs"], result["updates"], result["reached"]) == (3, 3, False)


def test_naive_and_backprop_gradients_agree():
    case = bench.GradientCase(width=4, batch=8)
    assert case.n_params == 4 * 4 + 4 + 4 * 10 + 10
    np.testing.assert_allclose(case.naive(), case.backprop(), rtol=1e-6, atol=1e-9)


def test_loglog_slope_recovers_the_exponent():
    rng = np.random.default_rng(0)
    params = np.logspace(2, 5, 7)
    assert bench.loglog_slope(params, 3e-9 * params ** 2 * rng.uniform(0.95, 1.05, 7)) == pytest.approx(2, abs=0.03)
    assert bench.loglog_slope(params, 5e-6 * params) == pytest.approx(1)


def test_gradient_summary_fits_slopes_and_ratios():
    cases = [{"n_params": p, "naive_seconds": 1e-8 * p ** 2, "backprop_seconds": 1e-6 * p}
             for p in (100, 1e3, 1e4, 1e5)]
    summary = bench.gradient_summary(cases)
    assert summary["naive_slope"] == pytest.approx(2) and summary["backprop_slope"] == pytest.approx(1)
    assert summary["naive_slope_largest"] == pytest.approx(2) and summary["ratio_slope"] == pytest.approx(1)
    assert summary["ratios"]["1000.0"] == pytest.approx(10)


def test_machine_record_says_what_it_ran_on():
    record = bench.machine_record()
    assert record["cores"] >= 1 and record["cpu"]
    assert {"numpy", "scipy", "numba", "Cython"} <= set(record["versions"])
    assert all({"internal_api", "architecture", "num_threads"} <= set(lib) for lib in record["blas"])
    assert set(record["environment"]) == set(bench.THREAD_VARIABLES)
    info = bench.result_info("numpy", np.float32, kernel="mse")
    assert (info["backend"], info["dtype"], info["kernel"]) == ("numpy", "float32", "mse")


def test_run_writes_json_and_plots(tmp_path):
    lines = []

    class Stream:
        def write(self, text):
            lines.extend(line for line in text.splitlines() if line)

        def flush(self):
            pass

    results = bench.run(TINY_PLAN, stream=Stream())
    n_cases = 1 + 1 + len(K.KERNELS) + 3 + 4
    assert len(lines) == n_cases and lines[-1].startswith(f"[{n_cases}/{n_cases}] gradient cost")
    assert "BLAS products of a 784-256-128-10 step, batch 8, 1 thread: openblas " in lines[1]
    assert results["blas"]["in_use"]["provider"] == fastnn.blas_info()["provider"]
    assert {(row["provider"], row["batch"]) for row in results["blas"]["rates"]} == {
        (name, 8) for name in fastnn.blas.rated()}
    assert len(results["kernels"]) == len(K.KERNELS) * len(BACKENDS)
    frameworks = BACKENDS + list(peers.installed())  # scikit-learn at least: a dependency
    assert "scikit-learn" in frameworks and results["frameworks"] == frameworks
    assert {(r["mode"], r["backend"]) for r in results["modes"]} == {
        (mode, framework) for mode in ("full-batch", "mini-batch 64", "online") for framework in frameworks}
    assert [c["n_params"] for c in results["gradient_cost"]["cases"]] == [w * w + 11 * w + 10 for w in (3, 4, 5, 6)]
    assert results["time_to_accuracy"]["skipped"]
    paths = bench.write_outputs(results, tmp_path / "out")
    assert sorted(p.name for p in paths) == ["gradient_cost.png", "kernels.png", "results.json", "throughput.png"]
    for path in paths[1:]:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads(paths[0].read_text())
    assert saved["machine"]["cpu"] == results["machine"]["cpu"]
    assert saved["gradient_cost"]["naive_slope"] == pytest.approx(results["gradient_cost"]["naive_slope"])


def test_run_times_accuracy_per_mode_and_plots_it(tmp_path, monkeypatch):
    """The runner's time-to-accuracy path, on a toy net and separable data instead of MNIST."""
    monkeypatch.setattr(runner, "mnist_split", lambda data_dir: _separable())
    monkeypatch.setattr(runner, "time_to_accuracy", functools.partial(
        bench.time_to_accuracy, net="2-5-5-5-2", target=0.9, lr=0.05, max_epochs=5))
    plan = dict(TINY_PLAN, kernel_shapes=(), nets=("2-5-5-5-2",), modes=("full", 8), accuracy_runs=3)
    results = bench.run(plan, stream=None, with_peers=False)
    runs = results["time_to_accuracy"]["runs"]
    assert [(r["mode"], r["repeats"]) for r in runs] == [("full-batch", 3), ("mini-batch 8", 3)]
    assert results["time_to_accuracy"]["skipped"] is None
    paths = bench.write_outputs(results, tmp_path)
    assert (tmp_path / "time_to_accuracy.png") in paths


def test_run_skips_time_to_accuracy_without_the_digits(tmp_path):
    plan = dict(TINY_PLAN, kernel_shapes=(), nets=(), widths=(3, 4), accuracy_runs=1)
    results = bench.run(plan, data_dir=tmp_path, stream=None, with_peers=False)
    assert "MNIST digits not found" in results["time_to_accuracy"]["skipped"]
    assert results["time_to_accuracy"]["runs"] == []


def test_bench_command_writes_its_outputs(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(bench.PLANS, "quick", TINY_PLAN)
    assert cli.main(["bench", "--quick", "--no-peers", "--out", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert json.loads((tmp_path / "results.json").read_text())["frameworks"] == BACKENDS
    assert (tmp_path / "results.json").exists() and (tmp_path / "throughput.png").exists()
    assert "gradient cost log-log slopes: naive" in out
    assert "[1/" in err and "sgemm" in err


def test_bench_command_refuses_an_output_it_cannot_create_before_running(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli.main(["bench", "--quick", "--out", str(blocker / "out")]) == 1
    out, err = capsys.readouterr()
    assert "fastnn bench: error: cannot create --out" in err and "[1/" not in err


def test_write_json_leaves_no_temporary_file_when_the_rename_fails(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    path.write_text("{}")

    def fail(source, target):
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="rename failed"):
        bench.write_json({"a": 1}, path)
    assert os.listdir(tmp_path) == ["results.json"] and path.read_text() == "{}"


RESULTS = {
    "machine": {"cpu": "a CPU"}, "backends": ["numpy"],
    "modes": [{"net": "2-2-3-2", "backend": name, "batch": batch, "samples_per_second": rate}
              for name in ("numpy", "scikit-learn") for batch, rate in ((1, 1e4), (8, 5e4))],
    "gradient_cost": {"batch": 64, "backend": "numpy", "cases": [
        {"n_params": p, "naive_seconds": 1e-8 * p ** 2, "backprop_seconds": 1e-6 * p} for p in (100, 1000, 10000)]},
    "kernels": [{"kernel": k, "shape": "3x5->4", "backend": "numpy", "seconds": 1e-6} for k in ("mse", "softmax")],
    "time_to_accuracy": {"runs": [{"mode": "online", "seconds": 1.5, "epochs": 2, "reached": True, "target": 0.93,
                                   "backend": "numpy"}]},
}
KEEPS_BACKEND = """
import json, sys
import matplotlib
matplotlib.use("svg")
from fastnn import bench
paths = bench.write_outputs(json.loads(sys.argv[1]), sys.argv[2])
print(json.dumps({"backend": matplotlib.get_backend(), "pyplot": "matplotlib.pyplot" in sys.modules,
                  "written": [p.name for p in paths]}))
"""


def test_bench_plots_leave_the_users_matplotlib_backend_and_pyplot_alone(tmp_path):
    """A user's pyplot backend (svg here) is the same after fastnn bench's plots, which
    never import pyplot."""
    done = subprocess.run([sys.executable, "-c", KEEPS_BACKEND, json.dumps(RESULTS), str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path, check=True)  # the installed fastnn
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got == {"backend": "svg", "pyplot": False, "written": [
        "results.json", "throughput.png", "gradient_cost.png", "kernels.png", "time_to_accuracy.png"]}
    assert (tmp_path / "kernels.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_study_configurations_are_distinct_draws_of_the_grid():
    configurations = bench.study_configurations(16)
    assert configurations == bench.study_configurations(16)  # the same every run
    assert len({repr(c) for c in configurations}) == 16
    for c in configurations:
        assert c["sizes"][0] == 784 and c["sizes"][2:] == [32, 10] and c["sizes"][1] in bench.STUDY_GRID["width"]
        assert c["activation"] in bench.STUDY_GRID["activation"] and c["batch"] in bench.STUDY_GRID["batch"]
        assert c["optimizer"] in bench.STUDY_GRID["optimizer"]
    assert "16 configurations x 15 seeds" in bench.study_name("full")


def _random_digits(n=300):
    rng = np.random.default_rng(0)
    return ((rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n)),
            (rng.random((10, 784), dtype=np.float32), rng.integers(0, 10, 10)))


def test_run_times_many_models_and_the_study(monkeypatch):
    """The runner's many-models section on a short 10-point case and a tiny study (random
    digits): one row per case and trainer, the study's trainers, a progress line each."""
    from fastnn.bench import cases

    monkeypatch.setattr(cases, "TEN_POINT_EPOCHS", 3)
    monkeypatch.setattr(cases, "ordered_digits", lambda data_dir: _random_digits())
    monkeypatch.setattr(runner, "ordered_digits", lambda data_dir: _random_digits())
    monkeypatch.setitem(cases.STUDIES, "quick", {"configurations": 2, "epochs": 1, "samples": 256})
    case = ("2 seeds of 2-3-2", [2, 3, 2], "tanh", 4, "sgd", 0.1, 2, "ten points")
    backend = [K.get_backend().name]
    plan = dict(TINY_PLAN, kernel_shapes=(), nets=(), widths=(3, 4), many_cases=(case,), many_seeds=2,
                many_repeats=1, study="quick")
    stream = io.StringIO()
    found = runner._many_models(plan, backend + ["numpy"], False, None, runner.Progress(2, stream))
    names = list(peers.many_trainers(backend, with_peers=False))
    assert [(row["case"], row["framework"]) for row in found["cases"]] == [(case[0], name) for name in names]
    assert all(row["seconds"] > 0 and row["model_updates_per_second"] == pytest.approx(2 * 2 * 8 / row["seconds"])
               for row in found["cases"])
    assert set(found["study"]["seconds"]) == set(peers.study_trainers(backend[0])) and not found["skipped"]
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("[1/2] many models 2 seeds of 2-3-2: ")
    assert lines[1].startswith("[2/2] configuration study 2 configurations x 2 seeds")


def test_run_skips_the_many_models_digits_without_them(tmp_path):
    plan = dict(TINY_PLAN, kernel_shapes=(), nets=(), widths=(3, 4), many_cases=bench.MANY_CASES[:1],
                many_repeats=1, study="quick")
    results = bench.run(plan, data_dir=tmp_path, stream=None, with_peers=False)
    skipped = results["many_models"]["skipped"]
    assert len(skipped) == 2 and all("MNIST digits not found" in reason for reason in skipped)
    assert results["many_models"]["cases"] == [] and results["many_models"]["study"] is None


def test_bench_command_adds_the_study_only_when_asked(tmp_path, monkeypatch):
    plans = []

    def record(plan, *args, **kwargs):
        plans.append(plan)
        raise KeyboardInterrupt

    monkeypatch.setattr(bench, "run", record)
    for extra in ([], ["--study", "quick"]):
        with pytest.raises(KeyboardInterrupt):
            cli.main(["bench", "--out", str(tmp_path), *extra])
    assert [plan["study"] for plan in plans] == [None, "quick"]
    assert plans[0]["many_cases"] == bench.MANY_CASES and bench.PLANS["default"]["study"] is None
