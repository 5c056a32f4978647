"""The BLAS providers: every product of both compiled backends goes to the one installed;
calibration, its cache file, the overrides and the fallback of a provider that fails."""
import ctypes
import io
import json
import os

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import fastnn
import fastnn.kernels as K
from fastnn import blas
from fastnn.kernels import gemm
from engine_cases import ENGINE_BACKENDS

HAS_MKL = gemm.library_path("mkl") is not None
_FORTRAN_GEMM = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, *[ctypes.c_void_p] * 11)


@pytest.fixture(autouse=True)
def restore_provider():
    """Every test leaves the provider (and why) as it found it."""
    saved, provider = dict(blas._in_use), blas.in_use()
    yield
    blas._install(provider, saved["reason"], saved["calibration"])


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """An empty cache directory, on a machine where no other process runs."""
    monkeypatch.setenv("FASTNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(blas.threads, "other_running_tasks", lambda: 0)
    return tmp_path / "cache"


def counting_provider(counts):
    """OpenBLAS's routines behind callbacks that count their calls: a provider whose use
    can be seen."""
    openblas = gemm.load("openblas")
    callbacks = []
    for name, address in (("sgemm", openblas.sgemm), ("dgemm", openblas.dgemm)):
        routine = _FORTRAN_GEMM(address)

        def counted(*args, name=name, routine=routine):
            counts[name] += 1
            routine(*args)

        callbacks.append(_FORTRAN_GEMM(counted))
    provider = gemm.Provider("openblas", *(ctypes.cast(c, ctypes.c_void_p).value for c in callbacks), "counting")
    provider.callbacks = callbacks  # alive as long as the provider
    return provider


def twin_providers(monkeypatch, loads=True):
    """A second provider, 'mkl', that is OpenBLAS under another name (or, loads=False, a
    library that is there but does not load), so that calibration has two to choose from."""
    def load_twin(path):
        if not loads:
            raise gemm.ProviderError(f"{path}: not a library")
        provider = gemm.load("openblas")
        provider.name, provider.path = "mkl", path
        return provider

    monkeypatch.setitem(gemm.PROVIDERS, "mkl", (lambda: gemm.cython_blas.__file__, load_twin))


def test_openblas_loads_with_both_routines():
    provider = gemm.load("openblas")
    assert provider.sgemm and provider.dgemm and os.path.exists(provider.path)
    assert "openblas" in blas.available()


@pytest.mark.parametrize("call", [gemm.load, blas.set_blas, gemm.library_path])
def test_an_unknown_provider_name_is_an_error_naming_the_choices(call):
    with pytest.raises(ValueError, match=r"one of \['mkl', 'openblas'\]; got 'blis'"):
        call("blis")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("backend", ENGINE_BACKENDS)
def test_kernels_and_engine_of_both_backends_call_the_installed_provider(backend, dtype):
    counts = {"sgemm": 0, "dgemm": 0}
    routine = "sgemm" if dtype == np.float32 else "dgemm"
    rng = np.random.default_rng(0)
    X, W = rng.standard_normal((5, 4)).astype(dtype), rng.standard_normal((4, 3)).astype(dtype)
    out = np.empty((5, 3), dtype)
    model = fastnn.mlp([4, 8, 3], seed=0, dtype=dtype)
    blas._install(counting_provider(counts), "test")
    K.get_backend(backend).matmul(X, W, out)
    assert counts[routine] == 1
    np.testing.assert_allclose(out, X @ W, rtol=1e-5)
    labels = rng.integers(0, 3, 64)
    with fastnn.use_backend(backend):
        history = model.fit(rng.standard_normal((64, 4)).astype(dtype), labels, epochs=2, batch_size=16, verbose=0)
    # 2 epochs x 4 batches x (2 forward + 2 weight-gradient + 1 input-gradient products), at least
    assert counts[routine] >= 1 + 2 * 4 * 5
    assert np.isfinite(history.loss).all()


def test_a_provider_whose_library_is_missing_falls_back_to_openblas_with_a_warning(monkeypatch):
    monkeypatch.setitem(gemm.PROVIDERS, "mkl", (lambda: None, gemm.PROVIDERS["mkl"][1]))
    with pytest.warns(RuntimeWarning, match="'mkl' does not load .*not found.*pip install mkl"):
        assert blas.set_blas("mkl") == "openblas"
    info = blas.blas_info()
    assert info["provider"] == "openblas" and "set_blas asked for mkl, which does not load" in info["reason"]
    model = fastnn.mlp([2, 3, 2], seed=0)
    model.fit(np.zeros((4, 2), np.float32), np.array([0, 1, 0, 1]), epochs=1, verbose=0)


def test_a_library_that_does_not_load_is_a_provider_error(tmp_path, monkeypatch):
    broken = tmp_path / "libmkl_rt.so.3"
    broken.write_bytes(b"not a shared library")
    monkeypatch.setitem(gemm.PROVIDERS, "mkl", (lambda: str(broken), gemm.PROVIDERS["mkl"][1]))
    with pytest.raises(gemm.ProviderError, match="libmkl_rt.so.3"):
        gemm.load("mkl")
    with pytest.warns(RuntimeWarning, match="'mkl' does not load"):
        assert blas.set_blas("mkl") == "openblas"


def test_calibration_measures_once_and_keeps_the_choice_in_the_cache(cache_dir, monkeypatch):
    twin_providers(monkeypatch)
    record = blas.calibrate(force=True)
    assert set(record["seconds"]) == {"openblas", "mkl"}
    assert all(len(times) == len(blas.CALIBRATION_CASES) and min(times) > 0 for times in record["seconds"].values())
    assert record["provider"] in ("openblas", "mkl") and record["share_of_openblas"]["openblas"] == 1.0
    assert json.loads((cache_dir / "blas.json").read_text()) == record
    assert blas.blas_info()["provider"] == record["provider"] and "calibrated on" in blas.blas_info()["reason"]

    def measured(providers):
        raise AssertionError("a cached calibration is measured again")

    monkeypatch.setattr(blas, "measure", measured)
    assert blas.calibrate() == record


def test_calibration_picks_a_provider_only_with_a_clear_lead(cache_dir, monkeypatch):
    twin_providers(monkeypatch)
    for share, chosen in ((0.9, "mkl"), (0.97, "openblas"), (1.2, "openblas")):
        monkeypatch.setattr(blas, "measure", lambda providers, share=share: {"openblas": [1.0, 2.0],
                                                                             "mkl": [share, 2.0 * share]})
        assert blas.calibrate(force=True)["provider"] == chosen
        assert blas.blas_info()["provider"] == chosen
        reason = blas.blas_info()["reason"]
        if chosen == "mkl":
            assert "its products took 0.90x OpenBLAS's time (record in " in reason
        else:
            assert f"no provider's products took at most 0.95x OpenBLAS's time (mkl {share:.2f}x)" in reason


def test_a_calibration_while_other_processes_run_is_used_but_not_kept(cache_dir, monkeypatch):
    twin_providers(monkeypatch)
    monkeypatch.setattr(blas.threads, "other_running_tasks", lambda: 1)
    monkeypatch.setattr(blas, "measure", lambda providers: {"openblas": [1.0, 1.0], "mkl": [0.5, 0.5]})
    assert blas.calibrate()["provider"] == "mkl"
    assert blas.blas_info()["provider"] == "mkl" and "not kept, measured again next time" in blas.blas_info()["reason"]
    assert not (cache_dir / "blas.json").exists()


@pytest.mark.parametrize("content", ["{not json", json.dumps({"key": "another machine", "provider": "mkl"}),
                                     json.dumps(["a list"])])
def test_a_cache_file_of_another_machine_or_damaged_is_measured_again(cache_dir, monkeypatch, content):
    twin_providers(monkeypatch)
    cache_dir.mkdir()
    (cache_dir / "blas.json").write_text(content)
    monkeypatch.setattr(blas, "measure", lambda providers: {"openblas": [1.0, 1.0], "mkl": [0.5, 0.5]})
    assert blas.calibrate()["provider"] == "mkl"
    assert json.loads((cache_dir / "blas.json").read_text())["provider"] == "mkl"


def test_an_unwritable_cache_warns_and_still_installs_the_choice(tmp_path, monkeypatch):
    twin_providers(monkeypatch)
    monkeypatch.setattr(blas.threads, "other_running_tasks", lambda: 0)
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("FASTNN_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setattr(blas, "measure", lambda providers: {"openblas": [1.0, 1.0], "mkl": [0.5, 0.5]})
    with pytest.warns(RuntimeWarning, match="could not keep its BLAS calibration"):
        blas.calibrate()
    assert blas.blas_info()["provider"] == "mkl"


def test_calibration_leaves_out_a_provider_that_does_not_load(cache_dir, monkeypatch):
    twin_providers(monkeypatch, loads=False)
    with pytest.warns(RuntimeWarning, match="'mkl' does not load .*not a library"):
        assert blas.calibrate(force=True) is None
    assert blas.blas_info()["provider"] == "openblas"
    assert not (cache_dir / "blas.json").exists()


def test_a_cached_choice_that_no_longer_loads_falls_back_to_openblas(cache_dir, monkeypatch):
    twin_providers(monkeypatch)
    monkeypatch.setattr(blas, "measure", lambda providers: {"openblas": [1.0, 1.0], "mkl": [0.5, 0.5]})
    blas.calibrate(force=True)
    twin_providers(monkeypatch, loads=False)
    with pytest.warns(RuntimeWarning, match="'mkl' does not load"):
        blas.calibrate()
    info = blas.blas_info()
    assert info["provider"] == "openblas" and "mkl, calibrated faster, does not load" in info["reason"]


def test_with_openblas_alone_there_is_nothing_to_calibrate(cache_dir, monkeypatch):
    monkeypatch.setitem(gemm.PROVIDERS, "mkl", (lambda: None, gemm.PROVIDERS["mkl"][1]))
    assert blas.calibrate() is None
    assert blas.blas_info()["provider"] == "openblas" and "only provider" in blas.blas_info()["reason"]
    assert not cache_dir.exists()


@pytest.mark.parametrize("value, provider, reason", [("openblas", "openblas", "FASTNN_BLAS=openblas"),
                                                     ("OpenBLAS ", "openblas", "FASTNN_BLAS=openblas")])
def test_fastnn_blas_names_the_provider(monkeypatch, value, provider, reason):
    monkeypatch.setenv("FASTNN_BLAS", value)
    blas.choose()
    assert blas.blas_info()["provider"] == provider and blas.blas_info()["reason"] == reason


def test_an_unknown_fastnn_blas_warns_and_calibrates(cache_dir, monkeypatch):
    monkeypatch.setenv("FASTNN_BLAS", "blis")
    with pytest.warns(RuntimeWarning, match="FASTNN_BLAS must be one of .*got 'blis'"):
        blas.choose()
    assert blas.blas_info()["provider"] in blas.available()


def test_fastnn_blas_is_read_at_import(isolated):
    result = isolated("""
        import os
        os.environ["FASTNN_BLAS"] = "openblas"
        import fastnn
        info = fastnn.blas_info()
        print(info["provider"], info["reason"], info["version"] is not None)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["openblas", "FASTNN_BLAS=openblas", "True"]


def test_show_config_names_the_provider_and_why():
    blas.set_blas("openblas")
    out = io.StringIO()
    fastnn.show_config(file=out)
    assert "BLAS provider:      openblas " in out.getvalue() and "(set_blas)" in out.getvalue()
    assert fastnn.config_info()["blas"]["provider"] == "openblas"


def test_gemm_rates_time_every_provider_on_a_steps_products():
    rates = blas.gemm_rates(8, 1, repeats=1)
    assert list(rates) == blas.rated()
    for rows in rates.values():
        assert [row["product"] for row in rows][0] == "8x784 @ 784x256"
        assert len(rows) == len(blas.STEP_PRODUCTS) and all(row["gflops"] > 0 for row in rows)
        assert blas.step_rate(rows) > 0


def test_gemm_rates_leave_out_a_provider_that_does_not_load(monkeypatch):
    twin_providers(monkeypatch, loads=False)
    with pytest.warns(RuntimeWarning, match="'mkl' does not load"):
        assert [name for name in blas.gemm_rates(4, 1, repeats=1) if name != "bf16"] == ["openblas"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("transposed", [False, True])
def test_a_timed_product_computes_the_product(dtype, transposed):
    product = blas.Product(gemm.load("openblas"), 5, 3, 4, transposed, dtype)
    product()
    A, B, C = product.arrays
    np.testing.assert_allclose(C, (A.T if transposed else A) @ B, rtol=1e-5)
    assert product.flops == 2 * 5 * 3 * 4


@pytest.mark.skipif(not HAS_MKL, reason="MKL is not installed (pip install fastnn[mkl])")
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("backend", ENGINE_BACKENDS)
def test_mkl_trains_the_model_openblas_trains(backend, dtype):
    rng = np.random.default_rng(1)
    X, labels = rng.standard_normal((256, 20)).astype(dtype), rng.integers(0, 4, 256)
    trained = {}
    for name in ("openblas", "mkl"):
        assert blas.set_blas(name) == name
        model = fastnn.mlp([20, 32, 4], seed=0, dtype=dtype)
        with fastnn.use_backend(backend):
            model.fit(X, labels, epochs=3, batch_size=32, seed=0, verbose=0)
        trained[name] = model.params.copy()
    tolerance = 1e-3 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(trained["mkl"], trained["openblas"], rtol=tolerance, atol=tolerance)


@pytest.mark.skipif(not HAS_MKL, reason="MKL is not installed (pip install fastnn[mkl])")
@pytest.mark.parametrize("count", [1, 2])
def test_fits_thread_limits_apply_to_mkl(count):
    blas.set_blas("mkl")
    path = os.path.realpath(blas.in_use().path)
    with blas.threads.blas_threads(count):
        mkl = [lib for lib in threadpool_info() if os.path.realpath(lib["filepath"]) == path]
        assert mkl and mkl[0]["num_threads"] == count
