"""The fastnn package namespace: lazy attributes and submodules."""
import subprocess
import sys

import fastnn


def test_dir_lists_the_lazy_attributes_and_submodules():
    names = dir(fastnn)
    for name in ("MLPClassifier", "MLPRegressor", "sweep", "SweepResult", "datasets", "plot", "Dense"):
        assert name in names
    assert set(fastnn.__all__) <= set(names)


def test_every_documented_submodule_is_an_attribute_of_a_fresh_import(tmp_path):
    code = ("import fastnn\n"
            "for name in ('bench', 'config', 'datasets', 'engine', 'kernels', 'io', 'plot',\n"
            "             'sklearn', 'sweeps', 'train'):\n"
            "    assert getattr(fastnn, name).__name__ == 'fastnn.' + name, name\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)  # the installed fastnn

