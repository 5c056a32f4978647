"""The backend registry: discovery, selection, and the kernel contract."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnn
import fastnn.kernels as K


def test_all_three_backends_are_available():
    assert K.UNAVAILABLE == {}
    assert sorted(K.available_backends()) == ["cython", "numba", "numpy"]


def test_every_backend_implements_every_reference_kernel_with_its_signature():
    for name in K.available_backends():
        raw = K.get_backend(name).raw
        assert all(callable(getattr(raw, kernel, None)) for kernel in K.KERNELS), name
    assert K.signature_mismatches() == []


def test_reference_defines_exactly_the_registered_kernels():
    import inspect

    reference = K.get_backend("numpy").raw
    public = {name for name, obj in vars(reference).items()
              if inspect.isfunction(obj) and not name.startswith("_") and obj.__module__ == reference.__name__}
    assert public == set(K.KERNELS)


def test_default_is_the_first_available_by_preference(monkeypatch):
    if os.environ.get("FASTNN_BACKEND"):
        pytest.skip("FASTNN_BACKEND overrides the default")
    assert K.get_backend().name == K.available_backends()[0] == K.PREFERENCE[0]


def test_set_backend_is_process_wide():
    before = K.get_backend().name
    try:
        assert fastnn.set_backend("numpy").name == "numpy"
        assert K.get_backend().name == "numpy"
    finally:
        fastnn.set_backend(before)


def test_use_backend_restores_on_exit_and_on_error():
    before = K.get_backend().name
    with fastnn.use_backend("numba") as backend:
        assert backend.name == "numba" == K.get_backend().name
    assert K.get_backend().name == before
    with pytest.raises(RuntimeError), fastnn.use_backend("numpy"):
        raise RuntimeError
    assert K.get_backend().name == before


@pytest.mark.parametrize("call", [fastnn.set_backend, K.get_backend, fastnn.use_backend])
def test_unknown_backend_names_the_available_ones(call):
    with pytest.raises(ValueError, match=r"backend must be one of \['cython', 'numba', 'numpy'\]; got 'torch'"):
        result = call("torch")
        if hasattr(result, "__enter__"):
            result.__enter__()


def run_python(code, **env):
    environment = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environment, cwd=os.path.dirname(__file__))


def test_environment_variable_selects_the_backend():
    result = run_python("import fastnn; print(fastnn.get_backend().name)", FASTNN_BACKEND="numba")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "numba"


def test_bad_environment_variable_fails_clearly_where_a_backend_is_asked_for():
    result = run_python("import fastnn; fastnn.get_backend()", FASTNN_BACKEND="fortran")
    assert result.returncode != 0
    assert "FASTNN_BACKEND: backend must be one of" in result.stderr
    assert "got 'fortran'" in result.stderr


def _cpu_flags():
    """This CPU's feature flags from /proc/cpuinfo (Linux), else None."""
    try:
        with open("/proc/cpuinfo") as file:
            lines = [line for line in file if line.startswith("flags")]
    except OSError:
        return None
    return set(lines[0].split(":", 1)[1].split()) if lines else None


def test_avx2_detection_and_the_numpy_and_cython_backends_need_no_numba():
    """Only the numba backend imports Numba (and llvmlite, its compiler): with both made
    unimportable, fastnn imports, reads AVX2 + FMA from the Cython build as the CPU
    reports them, and trains with the cython (engine and per-module) and numpy backends."""
    code = "\n".join([
        "import sys",
        "sys.modules['numba'] = sys.modules['llvmlite'] = None  # importing either fails",
        "import numpy as np, fastnn",
        "print(fastnn.available_backends(), fastnn.kernels.cpu_has_avx2())",
        "X, y = np.random.default_rng(0).standard_normal((20, 3)), np.arange(20) % 2",
        "for backend, engine in (('cython', True), ('cython', False), ('numpy', False)):",
        "    with fastnn.use_backend(backend):",
        "        fastnn.mlp([3, 4, 2], seed=0).fit(X, y, epochs=2, batch_size=4, verbose=0, engine=engine)",
    ])
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    backends, has_avx2 = result.stdout.strip().rsplit(" ", 1)
    assert backends == "['cython', 'numpy']"
    flags = _cpu_flags()
    if flags is not None:
        assert has_avx2 == str({"avx2", "fma"} <= flags)


def test_checked_kernels_keep_the_reference_signature_and_docs():
    import inspect

    backend = K.get_backend("cython")
    assert inspect.signature(backend.dense_forward) == inspect.signature(K.reference.dense_forward)
    assert "f(X @ W + b)" in backend.dense_forward.__doc__


def test_activation_codes():
    assert K.activation_code("relu") == K.ACTIVATIONS["relu"]
    assert K.activation_code(np.int64(4)) == 4


def test_show_config_reports_what_is_in_use(capsys):
    fastnn.show_config()
    text = capsys.readouterr().out
    assert "backends available: cython, numba, numpy" in text
    assert f"backend selected:   {K.get_backend().name}" in text
    assert "blas: openblas" in text
    assert "cython build OpenMP: {'openmp': True" in text
    build = "_avx2" if K.cpu_has_avx2() else ""
    assert f"cython kernels: cython_kernels{build}" in text
    assert f"cython training engine: cython_engine{build}" in text
    assert "numba threading layer:" in text and "numba cache:" in text
    assert f"numpy {np.__version__}" in text


def test_config_info_is_plain_data():
    import json

    info = fastnn.config_info()
    json.dumps(info)
    assert info["backend_selected"] in info["backends_available"]
