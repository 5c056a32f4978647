"""Where every matrix product of the compiled code goes: the BLAS providers.

The Cython kernels and engine (blas.pxd) and the Numba ones (numba_gemm.py) call
sgemm/dgemm through CELLS, two function pointers in this process's memory, instead
of linking one BLAS: installing a provider writes its routines into the cells, and
every product after it, of either backend, runs on that provider. A provider is a
library with the Fortran ``sgemm_``/``dgemm_`` interface (the one scipy's
``cython_blas`` exports):

- ``openblas``: the OpenBLAS scipy ships, through scipy.linalg.cython_blas (always there);
- ``mkl``: Intel's MKL (the PyPI package ``mkl``: ``pip install fastnn[mkl]``),
  ``libmkl_rt`` loaded at run time.

Which provider fastnn uses is fastnn.blas's choice; this module only loads and installs.

``bf16_products`` puts fastnn's own bf16 sgemm (kernels/bf16_gemm.h: bf16 operands,
float32 sums, on AVX512-BF16) into the sgemm cell for the length of a block.
"""
import contextlib
import ctypes
import ctypes.util
import glob
import os
import sys
import threading

from scipy.linalg import cython_blas

try:
    from . import bf16
except ImportError:  # a build for another architecture than x86-64
    bf16 = None


class Cells(ctypes.Structure):
    """The routines the compiled code calls (blas.pxd declares the same struct)."""
    _fields_ = [("sgemm", ctypes.c_void_p), ("dgemm", ctypes.c_void_p)]


CELLS = Cells()
CELLS_ADDRESS = ctypes.addressof(CELLS)


class ProviderError(RuntimeError):
    """A provider's library is missing or lacks a routine."""


class Provider:
    """One BLAS library: its name, the addresses of its routines, the file they came from
    and, where the library says, the code path it runs on this CPU (kernel)."""

    def __init__(self, name, sgemm, dgemm, path, kernel=None):
        self.name, self.sgemm, self.dgemm, self.path, self.kernel = name, sgemm, dgemm, path, kernel

    def __repr__(self):
        return f"<BLAS provider {self.name!r} from {self.path}>"


def _capsule_address(capsule):
    name_of = ctypes.pythonapi.PyCapsule_GetName
    name_of.restype, name_of.argtypes = ctypes.c_char_p, [ctypes.py_object]
    pointer_of = ctypes.pythonapi.PyCapsule_GetPointer
    pointer_of.restype, pointer_of.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    return pointer_of(capsule, name_of(capsule))


def _openblas_path():
    return cython_blas.__file__


def _openblas(path):
    api = cython_blas.__pyx_capi__
    return Provider("openblas", _capsule_address(api["sgemm"]), _capsule_address(api["dgemm"]), path)


def _mkl_path():
    """Where libmkl_rt is: beside this Python (the PyPI mkl package puts it in
    sys.prefix/lib), else on the system's library search path; None where it is not."""
    found = sorted(glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*")), reverse=True)
    return found[0] if found else ctypes.util.find_library("mkl_rt")


def _mkl(path):
    try:
        library = ctypes.CDLL(path)
        routines = [ctypes.cast(getattr(library, name), ctypes.c_void_p).value for name in ("sgemm_", "dgemm_")]
    except (OSError, AttributeError) as error:
        raise ProviderError(f"{path}: {error}") from None
    version = _MKLVersion()
    library.MKL_Get_Version(ctypes.byref(version))
    return Provider("mkl", *routines, path, kernel=(version.processor or b"").decode(errors="replace"))


class _MKLVersion(ctypes.Structure):
    """MKL's MKLVersion (mkl_service.h); processor names the code path MKL runs here."""
    _fields_ = [("major", ctypes.c_int), ("minor", ctypes.c_int), ("update", ctypes.c_int),
                ("status", ctypes.c_char_p), ("build", ctypes.c_char_p), ("processor", ctypes.c_char_p),
                ("platform", ctypes.c_char_p)]


PROVIDERS = {"openblas": (_openblas_path, _openblas), "mkl": (_mkl_path, _mkl)}
"""The providers fastnn knows, by name: a function finding the library file (None when
it is not there) and one loading it into a Provider (ProviderError when it cannot)."""
_HOW_TO_GET = {"mkl": "pip install mkl, or fastnn[mkl]"}


def library_path(name):
    """The file provider name would load from, without loading it (None: not found)."""
    check_name(name)
    return PROVIDERS[name][0]()


def load(name):
    """The provider called name, loaded (ProviderError when it cannot be)."""
    path = library_path(name)
    if path is None:
        raise ProviderError(f"its library is not found ({_HOW_TO_GET.get(name, 'not installed')})")
    return PROVIDERS[name][1](path)


def check_name(name):
    """ValueError unless name is a provider's."""
    if name not in PROVIDERS:
        raise ValueError(f"BLAS provider must be one of {sorted(PROVIDERS)}; got {name!r}")


def install(provider):
    """Send every matrix product of the compiled code to provider from now on (the float32
    ones after the bf16_products blocks running now end)."""
    global _installed
    with _bf16_lock:
        CELLS.dgemm = provider.dgemm
        if not _bf16_blocks:
            CELLS.sgemm = provider.sgemm
        _installed = provider


def installed():
    """The provider every product goes to now."""
    return _installed


_installed = None


def bf16_unsupported():
    """Why this machine cannot multiply in bf16 (None when it can)."""
    if bf16 is None:
        return "fastnn's bf16 products are built for x86-64 only"
    if not bf16.supported():
        return "this CPU lacks AVX512-BF16 (lscpu flag avx512_bf16)"
    return None


def bf16_provider():
    """The bf16 sgemm as a Provider called 'bf16' (its dgemm OpenBLAS's), to time beside
    the BLAS providers; None where bf16_unsupported() says why not."""
    if bf16_unsupported() is not None:
        return None
    return Provider("bf16", bf16.sgemm_address(), load("openblas").dgemm, bf16.__file__,
                    kernel="bf16 operands, float32 sums (AVX512-BF16)")


@contextlib.contextmanager
def bf16_products(threads=1):
    """Within the block, every float32 product of the compiled code in this process (of
    every thread, as PyTorch's fp32_precision switch is) rounds its operands to bf16 and
    sums in float32, on ``threads`` threads where a call comes from outside a team.
    RuntimeError where bf16_unsupported() says why not."""
    global _bf16_blocks
    reason = bf16_unsupported()
    if reason is not None:
        raise RuntimeError(f"bf16 products are not available: {reason}")
    with _bf16_lock:
        bf16.set_threads(threads)
        CELLS.sgemm = bf16.sgemm_address()
        _bf16_blocks += 1
    try:
        yield
    finally:
        with _bf16_lock:
            _bf16_blocks -= 1
            if not _bf16_blocks:
                CELLS.sgemm = _installed.sgemm


_bf16_lock = threading.Lock()
_bf16_blocks = 0


install(load("openblas"))
