"""show_config: what is built and what is installed."""
import importlib.metadata
import io

import pytest

import fastnn
from fastnn import config


def test_show_config_says_the_cython_backend_is_built_without_the_cython_package(monkeypatch):
    if "cython" not in fastnn.available_backends():
        pytest.skip("the cython backend is not built here")
    version = importlib.metadata.version

    def without_cython(name):
        if name == "Cython":
            raise importlib.metadata.PackageNotFoundError(name)
        return version(name)

    monkeypatch.setattr(config.importlib.metadata, "version", without_cython)
    out = io.StringIO()
    fastnn.show_config(file=out)
    text = out.getvalue()
    assert "cython backend: built; the Cython compiler (needed to build it, not to run it): not installed" in text
    assert "Cython not installed" not in text
    assert "installed: numpy " in text


def test_show_config_says_whether_bf16_products_run_here(monkeypatch):
    out = io.StringIO()
    fastnn.show_config(file=out)
    line = next(line for line in out.getvalue().splitlines() if line.startswith("bf16 products:"))
    assert line.endswith(config.gemm.bf16_unsupported() or "available (AVX512-BF16): fit(..., precision='bf16')")
    monkeypatch.setattr(config.gemm, "bf16_unsupported", lambda: "this CPU lacks AVX512-BF16 (lscpu flag avx512_bf16)")
    assert fastnn.config_info()["bf16_products"] == "this CPU lacks AVX512-BF16 (lscpu flag avx512_bf16)"
