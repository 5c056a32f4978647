"""The fastnn package namespace: lazy attributes and submodules, and which module imports which."""
import ast
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

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



def fastnn_imports(module):
    """The fastnn modules the source of ``module`` imports, at module level or in a function."""
    package = module.__name__.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(pathlib.Path(module.__file__).read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = package + ("." + base if base else "")
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in names if name.split(".")[0] == "fastnn"}


def test_io_does_not_import_the_estimators():
    """io saves and loads the estimators through the state they give it: it imports
    fastnn.sklearn nowhere, while fastnn.sklearn imports io."""
    assert not {name for name in fastnn_imports(fastnn.io) if name.startswith("fastnn.sklearn")}
    assert "fastnn.io" in fastnn_imports(fastnn.sklearn)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_importing_io_loads_no_estimators_and_a_fresh_process_still_loads_an_estimator_file(tmp_path):
    X = np.random.default_rng(0).standard_normal((40, 3))
    estimator = fastnn.MLPClassifier((4,), max_iter=2, random_state=0).fit(X, X[:, 0] > 0)
    estimator.save(tmp_path / "classifier.fnn")
    np.save(tmp_path / "X.npy", X)
    code = textwrap.dedent("""
        import sys
        import numpy as np
        import fastnn.io
        assert "fastnn.sklearn" not in sys.modules
        fastnn.io.save(fastnn.mlp([3, 2], seed=0), "net.fnn")
        fastnn.io.load("net.fnn")
        assert "fastnn.sklearn" not in sys.modules
        estimator = fastnn.io.load("classifier.fnn")
        print(type(estimator).__name__, estimator.predict(np.load("X.npy")).tolist())
        """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(" ", 1) == ["MLPClassifier", f"{estimator.predict(X).tolist()}\n"]
