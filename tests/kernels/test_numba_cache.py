"""Importing fastnn where Numba cannot write a cache: a read-only install, cache
directory and home, reproduced with read-only bind mounts in a private mount namespace."""
import os
import shutil
import subprocess
import sys

import pytest

import fastnn
import fastnn.kernels

IMPORT_AND_FIT = """
import warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import numpy as np
    import fastnn
    with fastnn.use_backend("numba"):
        model = fastnn.mlp([2, 3, 2], seed=0)
        history = model.fit(np.eye(2).repeat(2, axis=0), [0, 1, 0, 1], epochs=2, verbose=0)
print(len(history), fastnn.kernels.numba_cache.CACHE)
for warning in caught:
    print(warning.category.__name__, warning.message)
"""


def test_import_and_a_numba_fit_work_without_a_writable_cache_with_one_warning_per_cache(tmp_path):
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-m", "sh", "-c", f"mount --bind {tmp_path} {tmp_path}"], capture_output=True).returncode:
        pytest.skip("needs a private mount namespace (unshare -m) to make directories read-only")
    home, cache = tmp_path / "home", tmp_path / "cache"
    home.mkdir()
    cache.mkdir()
    read_only = [os.path.dirname(fastnn.__file__), os.path.dirname(fastnn.kernels.__file__), sys.prefix,
                 str(home), str(cache)]
    mounts = " && ".join(f"mount --bind {d} {d} && mount -o remount,bind,ro {d}" for d in read_only)
    env = {**os.environ, "HOME": str(home), "NUMBA_CACHE_DIR": str(cache)}
    command = f'{mounts} && exec {sys.executable} -c "$0"'
    done = subprocess.run(["unshare", "-m", "sh", "-c", command, IMPORT_AND_FIT], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "2 False"
    assert lines[1].startswith("RuntimeWarning Numba cannot cache compiled code here")
    # and, where a second BLAS provider is installed, one of the calibration that cannot be
    # kept (none when other processes ran meanwhile: such a calibration is not kept anyway)
    calibrates = len(fastnn.blas.available()) > 1
    assert len(lines) - 2 <= calibrates
    assert all(line.startswith("RuntimeWarning fastnn could not keep its BLAS calibration in") for line in lines[2:])
