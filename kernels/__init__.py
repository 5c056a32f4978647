"""Backend registry: the same kernels in NumPy (reference), Numba and Cython.

``get_backend(name)`` returns a :class:`Backend` whose attributes are the
kernels with their arguments checked (see ``contract.py``); ``backend.raw``
is the unchecked module, for compiled loops and benchmarks that have already
validated their arrays. The selected backend comes from ``set_backend``,
``use_backend`` or the environment variable ``FASTNN_BACKEND``.
"""
import contextlib
import contextvars
import functools
import importlib
import inspect
import os

from . import contract, reference
from .contract import ACTIVATIONS, activation_code

KERNELS = (
    "matmul",
    "dense_forward",
    "activation_forward",
    "activation_backward",
    "dense_backward",
    "csr_dense_forward",
    "csr_dense_backward",
    "softmax",
    "softmax_cross_entropy",
    "softmax_cross_entropy_soft",
    "mse",
    "bce_with_logits",
    "sgd_update",
    "adam_update",
)
# Fastest first for training (fit's compiled engine; docs/kernels.md has the
# measurements); the default backend is the first one that imports.
PREFERENCE = ("cython", "numba", "numpy")
_MODULES = {"numpy": "reference", "numba": "numba_kernels", "cython": "cython_kernels"}


class Backend:
    """One kernel variant: checked kernels as attributes, the module as ``raw``."""

    def __init__(self, name, module):
        self.name = name
        self.raw = module
        for kernel in KERNELS:
            setattr(self, kernel, _checked(kernel, getattr(module, kernel)))

    def __repr__(self):
        return f"<fastnn backend {self.name!r}>"


def _checked(kernel_name, kernel):
    """Wrap a raw kernel so its arguments pass the contract checks first."""
    check = getattr(contract, "check_" + kernel_name)

    @functools.wraps(getattr(reference, kernel_name))
    def checked_kernel(*args, **kwargs):
        return kernel(*check(*args, **kwargs))

    return checked_kernel


@functools.cache
def cpu_has_avx2():
    """Whether this CPU has AVX2 and FMA, as the base Cython build (cython_kernels, which
    runs on any CPU) reads it from the CPU; False where that build is missing (and then
    there is no _avx2 build either) or the CPU is not x86. Asked once: every fit looks up
    its engine."""
    try:
        from .cython_kernels import cpu_has_avx2 as query
    except ImportError:
        return False
    return query()


@functools.cache
def _avx2_build(module_name):
    """module_name's AVX2 + FMA build (module_name + "_avx2", which the Cython modules have
    on x86-64), or None; asked once: a failed import searches the package each time
    (~20 µs, on every fit of a backend without such a build)."""
    try:
        return importlib.import_module(f"{__name__}.{module_name}_avx2")
    except ImportError:
        return None


def import_build(module_name):
    """Import the module of this package named module_name: its AVX2 + FMA build where
    this CPU has both and it was built, else module_name itself."""
    build = _avx2_build(module_name) if cpu_has_avx2() else None
    return build or importlib.import_module(f"{__name__}.{module_name}")


def _load_backends():
    backends, errors = {}, {}
    for name, module_name in _MODULES.items():
        try:
            module = import_build(module_name)
        except ImportError as error:
            errors[name] = f"{type(error).__name__}: {error}"
            continue
        missing = [kernel for kernel in KERNELS if not hasattr(module, kernel)]
        if missing:
            errors[name] = f"missing kernels {missing}"
            continue
        backends[name] = Backend(name, module)
    return backends, errors


_BACKENDS, UNAVAILABLE = _load_backends()


def available_backends():
    """Names of the backends that imported, fastest first."""
    return [name for name in PREFERENCE if name in _BACKENDS]


def _resolve(name):
    if name not in _BACKENDS:
        detail = f" ({UNAVAILABLE[name]})" if name in UNAVAILABLE else ""
        raise ValueError(
            f"backend must be one of {available_backends()}; got {name!r}{detail}"
        )
    return _BACKENDS[name]


def _initial_backend():
    requested = os.environ.get("FASTNN_BACKEND")
    if requested:
        try:
            return _resolve(requested)
        except ValueError as error:
            raise ValueError(f"FASTNN_BACKEND: {error}") from None
    return _BACKENDS[available_backends()[0]]


# Chosen on first use (FASTNN_BACKEND, else the fastest), so that a bad FASTNN_BACKEND is
# an error where a backend is asked for, which the fastnn command reports in one line.
_selected = None
_override = contextvars.ContextVar("fastnn_backend_override", default=None)


def get_backend(name=None):
    """The backend called ``name``, or the selected one when name is None."""
    global _selected
    if name is not None:
        return _resolve(name)
    if _selected is None:
        _selected = _initial_backend()
    return _override.get() or _selected


def set_backend(name):
    """Select the backend used from now on, process-wide."""
    global _selected
    _selected = _resolve(name)
    return _selected


@contextlib.contextmanager
def use_backend(name):
    """Select a backend for the duration of a ``with`` block (this thread/task only)."""
    token = _override.set(_resolve(name))
    try:
        yield _override.get()
    finally:
        _override.reset(token)


def signature_mismatches():
    """(backend, kernel, expected, found) for every kernel whose parameters
    differ from the reference's; empty when the contract holds."""
    mismatches = []
    for name, backend in _BACKENDS.items():
        for kernel in KERNELS:
            expected = inspect.signature(getattr(reference, kernel))
            raw = getattr(backend.raw, kernel)
            found = inspect.signature(getattr(raw, "py_func", raw))
            if _parameters(expected) != _parameters(found):
                mismatches.append((name, kernel, str(expected), str(found)))
    return mismatches


def _parameters(signature):
    return [(p.name, p.default) for p in signature.parameters.values()]


__all__ = [
    "ACTIVATIONS",
    "KERNELS",
    "Backend",
    "activation_code",
    "available_backends",
    "get_backend",
    "set_backend",
    "use_backend",
    "signature_mismatches",
]
