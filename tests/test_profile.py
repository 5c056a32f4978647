"""fastnn profile: every backend's variant of one kernel, and a training step split by kernel."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastnn
import fastnn.kernels as K
from fastnn import cli
from fastnn.bench import profile as profiling

BACKENDS = K.available_backends()


def test_profile_kernel_times_every_backend():
    result = profiling.profile_kernel("dense_forward", (4, 6, 5), repeats=2, min_time=0)
    assert (result["kernel"], result["shape"], result["dtype"], result["flops"]) == \
        ("dense_forward", "4x6->5", "float32", 2 * 4 * 6 * 5)
    rows = {row["backend"]: row for row in result["rows"]}
    assert list(rows) == BACKENDS
    for row in rows.values():
        assert row["seconds"] > 0
        assert row["gflops"] == pytest.approx(result["flops"] / row["seconds"] / 1e9)
    assert rows["numpy"]["speedup_vs_numpy"] == 1
    assert "numba" in profiling.format_kernel(result)


@pytest.mark.parametrize("backend", BACKENDS)
def test_profile_step_accounts_for_every_kernel_call(backend):
    result = profiling.profile_step([6, 5, 3], batch_size=4, backend=backend, steps=4)
    calls = {(row["kernel"], row["call"]): row["calls"] for row in result["rows"] if row["calls"] is not None}
    assert calls == {
        ("dense_forward", "4x6->5"): 1, ("activation_forward", "4x5"): 1, ("dense_forward", "4x5->3"): 1,
        ("softmax_cross_entropy", "4x3"): 1, ("dense_backward", "4x5->3"): 1, ("activation_backward", "4x5"): 1,
        ("dense_backward", "4x6->5 (no dX)"): 1, ("sgd_update", str(6 * 5 + 5 + 5 * 3 + 3)): 1}
    assert sum(row["percent"] for row in result["rows"]) == pytest.approx(100)
    assert sum(row["seconds"] for row in result["rows"]) == pytest.approx(result["profiled_step_seconds"])
    other = [row for row in result["rows"] if row["kernel"] == profiling.OTHER]
    assert len(other) == 1 and other[0]["seconds"] >= 0
    assert result["backend"] == backend and result["step_seconds"] > 0
    table = profiling.format_step(result)
    assert table.splitlines()[-1].startswith("total") and "sgd_update" in table


def test_timed_backend_changes_no_number_and_goes_away():
    model = fastnn.mlp([6, 5, 3], seed=0)
    X = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    plain = model.forward(X)
    original = K.get_backend
    records = {}
    with profiling.timed_backend("numpy", records):
        timed = model.forward(X)
    np.testing.assert_array_equal(timed, plain)
    assert {kernel for kernel, _ in records} == {"dense_forward", "activation_forward"}
    assert K.get_backend is original


def test_parse_sizes():
    assert profiling.parse_sizes("784,256,128,10") == [784, 256, 128, 10]
    assert profiling.parse_sizes("256,784,256", 3) == [256, 784, 256]
    for bad, count in (("784", None), ("1,2", 3), ("a,b", None), ("0,3", None)):
        with pytest.raises(ValueError, match="comma-separated integers|input and an output"):
            profiling.parse_sizes(bad, count)


def test_profile_command_kernel_json(capsys):
    assert cli.main(["profile", "--kernel", "mse", "--shape", "4,6,5", "--repeats", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kernel"] == "mse" and [row["backend"] for row in result["rows"]] == BACKENDS


def test_profile_command_model_table(capsys):
    assert cli.main(["profile", "--model", "6,5,3", "--batch-size", "4", "--repeats", "3",
                     "--optimizer", "adam", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("6-5-3 relu, batch 4, Adam, numpy backend, float32: one training step")
    assert "adam_update" in out and profiling.OTHER in out


def test_profile_command_blas_table(capsys):
    assert cli.main(["profile", "--blas", "--batch-size", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("GFLOP/s of the float32 products of a 784-256-128-10 step at batch 4; in use: ")
    assert "openblas (1 thr)" in lines[1] and lines[2].startswith("4x784 @ 784x256")
    assert lines[-1].startswith("step") and len(lines) == 3 + len(fastnn.blas.STEP_PRODUCTS)


def test_profile_command_blas_json(capsys):
    assert cli.main(["profile", "--blas", "--batch-size", "4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["batch_size"] == 4 and result["in_use"] == fastnn.blas_info()["provider"]
    assert {(row["provider"], row["threads"]) for row in result["rows"]} == {
        (name, threads) for name in fastnn.blas.rated() for threads in ("1", "all")}


@pytest.mark.parametrize("args, message", [
    (["--kernel", "mse", "--shape", "4,5"], "3 comma-separated integers"),
    (["--model", "6,5,3", "--shape", "4,6,5"], "--shape applies to --kernel"),
    (["--blas", "--shape", "4,6,5"], "--shape applies to --kernel"),
    (["--model", "6"], "input and an output"),
    ([], "one of the arguments --kernel --model --blas is required"),
])
def test_profile_command_rejects_bad_arguments(capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["profile", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_python_m_fastnn_profile_runs(tmp_path):
    package_root = str(Path(fastnn.__file__).parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", "fastnn", "profile", "--kernel", "matmul", "--shape", "2,3,4",
                           "--repeats", "1", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          check=True, timeout=120)
    assert json.loads(done.stdout)["shape"] == "2x3->4"
