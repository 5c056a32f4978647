"""The fastnn package namespace: lazy attributes and submodules."""
import subprocess
import sys
from pathlib import Path

import fastnn
import fastnn.kernels

ROOT = Path(__file__).resolve().parents[1]


def test_dir_lists_the_lazy_attributes_and_submodules():
    names = dir(fastnn)
    for name in ("MLPClassifier", "MLPRegressor", "sweep", "SweepResult", "datasets", "plot", "Dense"):
        assert name in names
    assert set(fastnn.__all__) <= set(names)


def test_every_documented_submodule_is_an_attribute_of_a_fresh_import(tmp_path):
    code = ("import fastnn\n"
            "for name in ('bench', 'config', 'datasets', 'engine', 'kernels', 'io', 'plot', 'profile',\n"
            "             'sklearn', 'sweeps', 'train'):\n"
            "    assert getattr(fastnn, name).__name__ == 'fastnn.' + name, name\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)  # the installed fastnn



def test_the_tests_import_the_code_of_this_tree():
    assert Path(fastnn.__file__).resolve().parent == ROOT / "fastnn"
    assert Path(fastnn.kernels.__file__).resolve().parent == ROOT / "kernels"
    assert "cython" in fastnn.available_backends()  # its Cython modules built in place


def test_fastnn_imports_and_builds_a_model_from_the_repository_root():
    code = "import fastnn; print(fastnn.mlp([2, 3, 2]))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Sequential(Dense(2, 3), ReLU(), Dense(3, 2))"
