"""The Cython engine's declarations (kernels/abi.pxd) agree with kernels/abi.py: the same
codes and layer-table columns, and a Hyper struct laid out as the HYPER record."""
import importlib

import pytest

from fastnn import kernels
from fastnn.kernels import abi

BUILDS = ["cython_engine"] + (["cython_engine_avx2"] if kernels.cpu_has_avx2() else [])


@pytest.fixture(params=BUILDS)
def layout(request):
    try:
        module = importlib.import_module(f"fastnn.kernels.{request.param}")
    except ImportError:
        pytest.skip(f"{request.param} is not built")
    return module.abi_layout()


def test_codes_are_abi_py_codes(layout):
    codes = {name: value for name, value in vars(abi).items()
             if name.isupper() and isinstance(value, int) and not isinstance(value, bool)}
    assert layout["codes"] == codes


def test_hyper_struct_is_the_hyper_record(layout):
    record = {name: (abi.HYPER.fields[name][1], abi.HYPER.fields[name][0].itemsize) for name in abi.HYPER.names}
    assert layout["hyper"] == record
    assert list(layout["hyper"]) == list(abi.HYPER.names)
    assert layout["hyper_size"] == abi.HYPER.itemsize

