"""The fastnn package namespace: lazy attributes and submodules, and which module imports which."""
import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

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
            "for name in ('bench', 'config', 'datasets', 'engine', 'kernels', 'io', 'plot',\n"
            "             'sklearn', 'sweeps', 'train'):\n"
            "    assert getattr(fastnn, name).__name__ == 'fastnn.' + name, name\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)  # the installed fastnn



def fastnn_imports(module):
    """The fastnn modules the source of ``module`` imports, at module level or in a function."""
    package = module.__name__.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(Path(module.__file__).read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = package + ("." + base if base else "")
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in names if name.split(".")[0] == "fastnn"}


# Imports inside functions that stay there: plotting loads matplotlib only when asked to plot.
LAZY_IMPORTS = {("fastnn.sweep_results", "fastnn.plot"), ("fastnn.bench", "fastnn.bench.plots"),
                ("fastnn.bench.runner", "fastnn.bench.plots")}


def module_imports(path, name):
    """(fastnn modules imported at module level, fastnn modules imported in a function)
    by the source at path, the module called name (attribute imports counted as modules
    only where such a module exists)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top, inner = set(), set()
    tree = ast.parse(path.read_text())
    nested = {id(node) for function in ast.walk(tree) if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
              for node in ast.walk(function)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            # from .x import y: module x (and y, where y is a module); from . import y: y
            base = f"{base}.{node.module}" if node.module else base
            found = {f"{base}.{alias.name}" for alias in node.names} | ({base} if node.module else set())
            (inner if id(node) in nested else top).update(found)
    return top, inner


def test_the_modules_import_one_way_at_module_level():
    """fastnn's own modules import each other at the top of the file, never inside a
    function to dodge a cycle (LAZY_IMPORTS apart), and the imports form no cycle."""
    root = Path(fastnn.__file__).parent
    sources = {("fastnn." + ".".join(path.relative_to(root).with_suffix("").parts)).removesuffix(".__init__"): path
               for path in root.rglob("*.py")}
    graph = {}
    for name, path in sources.items():
        top, inner = module_imports(path, name)
        assert {(name, other) for other in inner if other in sources} <= LAZY_IMPORTS, name
        graph[name] = {other for other in top if other in sources and other != name}
    done, stack = set(), []

    def visit(name):
        assert name not in stack, f"import cycle: {' -> '.join(stack[stack.index(name):] + [name])}"
        if name not in done:
            stack.append(name)
            for other in sorted(graph[name]):
                visit(other)
            stack.pop()
            done.add(name)

    for name in sorted(graph):
        if name != "fastnn":  # the package namespace imports everything below it
            visit(name)


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


def test_the_tests_import_the_code_of_this_tree():
    assert Path(fastnn.__file__).resolve().parent == ROOT / "fastnn"
    assert Path(fastnn.kernels.__file__).resolve().parent == ROOT / "kernels"
    assert "cython" in fastnn.available_backends()  # its Cython modules built in place


def test_fastnn_imports_and_builds_a_model_from_the_repository_root():
    code = "import fastnn; print(fastnn.mlp([2, 3, 2]))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Sequential(Dense(2, 3), ReLU(), Dense(3, 2))"

