"""Which BLAS the matrix products run on, chosen by measurement on this machine.

Every product of the compiled code (both backends' kernels and engines) goes to one
provider (fastnn.kernels.gemm): scipy's OpenBLAS, always there, or Intel's MKL where
the PyPI package ``mkl`` is installed (``pip install fastnn[mkl]``). The provider in use
is, in this order of precedence:

1. the one ``set_blas(name)`` installed;
2. ``FASTNN_BLAS=openblas|mkl`` in the environment;
3. the faster on this machine's training products, measured once (``calibrate``: the
   products of a 784-256-128-10 step at batch 128 on one thread and at batch 2,048 on
   every core, a fraction of a second) and kept in a file of fastnn's cache directory
   (``FASTNN_CACHE_DIR``, else ``$XDG_CACHE_HOME/fastnn`` or ``~/.cache/fastnn``), keyed
   by the CPU, the core count and the libraries, so that later processes read it (unless
   other processes' threads ran meanwhile: then the next process measures again);
4. OpenBLAS, when it is the only provider that loads.

A provider that is asked for and does not load (not installed, a broken library) is
replaced by OpenBLAS with a warning that says why.
"""
import contextlib
import ctypes
import hashlib
import json
import os
import time
import warnings

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from . import threads
from .atomic import replacing
from .kernels import gemm

DEFAULT = "openblas"
# A provider other than OpenBLAS is chosen when its products take at most this share of
# OpenBLAS's time (a smaller lead is within the run-to-run spread of the calibration).
LEAD = 0.95
# (rows, inner, columns, transposed A) of the products of one 784-256-128-10 step; the
# batch size is the rows of the forward products.
STEP_PRODUCTS = ((None, 784, 256, False), (None, 256, 128, False), (None, 128, 10, False),
                 (784, None, 256, True), (256, None, 128, True), (128, None, 10, True),
                 (None, 10, 128, False), (None, 128, 256, False))
CALIBRATION_CASES = ((128, 1), (2048, None))  # (batch, threads: None = every core)

# Why the provider in use (gemm.installed()) was installed, and the calibration record.
_in_use = {"reason": None, "calibration": None}


def cache_path():
    """The calibration file: FASTNN_CACHE_DIR, else the user's cache directory."""
    root = os.environ.get("FASTNN_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fastnn")
    return os.path.join(root, "blas.json")


def _machine_key(paths):
    """What the calibration depends on: the CPU, the cores, the providers' library files
    ({name: path}), so that a new CPU, core count or library version calibrates again."""
    try:
        with open("/proc/cpuinfo") as file:
            cpu = [line for line in file if line.startswith(("model name", "flags"))][:2]
    except OSError:
        cpu = [os.uname().machine]
    files = []
    for name, path in sorted(paths.items()):
        try:
            stat = os.stat(path)
            files.append(f"{name}:{os.path.realpath(path)}:{stat.st_size}:{stat.st_mtime_ns}")
        except OSError:
            files.append(f"{name}:{path}")
    text = "\n".join(cpu + files + [str(threads.available_cores())])
    return hashlib.sha256(text.encode()).hexdigest()


class Product:
    """One product C = op(A) B (row-major, A transposed if transposed) as a ctypes call of
    a provider's sgemm or dgemm on random arrays of its own: what calibrate and the
    benchmarks time, apart from any backend."""

    def __init__(self, provider, m, k, n, transposed=False, dtype=np.float32, rng=None):
        rng = rng or np.random.default_rng(0)
        real = ctypes.c_float if dtype == np.float32 else ctypes.c_double
        address = provider.sgemm if dtype == np.float32 else provider.dgemm
        A = rng.standard_normal((k, m) if transposed else (m, k)).astype(dtype)
        B = rng.standard_normal((k, n)).astype(dtype)
        C = np.empty((m, n), dtype)
        self.label = f"{m}x{k}{'(T)' if transposed else ''} @ {k}x{n}"
        self.flops = 2.0 * m * k * n
        sizes = [ctypes.c_int(v) for v in (n, m, k, A.shape[1])]
        one, zero = real(1), real(0)
        # Row-major C = op(A) B is the column-major C.T = B.T op(A).T (blas.pxd).
        n_ref, m_ref, k_ref, lda_ref = (ctypes.byref(v) for v in sizes)
        self._call = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, *[ctypes.c_void_p] * 11)(address)
        self._args = (b"N", b"T" if transposed else b"N", n_ref, m_ref, k_ref, ctypes.byref(one), B.ctypes.data,
                      n_ref, A.ctypes.data, lda_ref, ctypes.byref(zero), C.ctypes.data, n_ref)
        self.arrays = (A, B, C)
        self._keep = (sizes, one, zero)

    def __call__(self):
        self._call(*self._args)


def step_products(provider, batch):
    """The products of one 784-256-128-10 training step at this batch size (STEP_PRODUCTS)
    on provider's sgemm."""
    rng = np.random.default_rng(0)
    return [Product(provider, rows or batch, inner or batch, cols, transposed, rng=rng)
            for rows, inner, cols, transposed in STEP_PRODUCTS]


def _best_seconds(calls, repeats=5):
    """The best of repeats times of the calls made one after another."""
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for call in calls:
            call()
        best = min(best, time.perf_counter() - start)
    return best


def measure(providers):
    """{provider name: [best seconds of one step's products in each CALIBRATION_CASES
    case]}, the providers interleaved."""
    seconds = {provider.name: [] for provider in providers}
    for batch, count in CALIBRATION_CASES:
        calls = {provider.name: step_products(provider, batch) for provider in providers}
        with threadpool_limits(limits=count or threads.available_cores(), user_api="blas"):
            for name in calls:
                _best_seconds(calls[name])  # the first calls load kernels and start threads
            rounds = [[_best_seconds(calls[name]) for name in calls] for _ in range(3)]
        for name, times in zip(calls, zip(*rounds)):
            seconds[name].append(min(times))
    return seconds


def gemm_rates(batch, n_threads=None, repeats=5):
    """{provider name: [{"product", "flops", "gflops"} per product]} of every provider that
    loads (one that does not is left out with a warning) and, where the CPU has them, of
    fastnn's bf16 products (as 'bf16'), on the products of a 784-256-128-10 step at this
    batch size, with n_threads BLAS threads (None: every core); the providers interleaved,
    the best of three rounds. What ``fastnn bench`` and ``fastnn profile --blas`` report."""
    providers = loadable() + [provider for provider in [gemm.bf16_provider()] if provider is not None]
    products = {provider.name: step_products(provider, batch) for provider in providers}
    best = {name: [np.inf] * len(calls) for name, calls in products.items()}
    count = n_threads or threads.available_cores()
    with threadpool_limits(limits=count, user_api="blas"), \
            (gemm.bf16_products(count) if "bf16" in products else contextlib.nullcontext()):
        for round_ in range(4):  # the first round warms up
            for name, calls in products.items():
                for i, call in enumerate(calls):
                    seconds = _best_seconds([call], repeats)
                    if round_:
                        best[name][i] = min(best[name][i], seconds)
    return {name: [{"product": call.label, "flops": call.flops, "gflops": call.flops / seconds / 1e9}
                   for call, seconds in zip(products[name], best[name])] for name in products}


def step_rate(rows):
    """The GFLOP/s of a whole step from one provider's gemm_rates rows (the total FLOPs
    over the total time)."""
    return sum(row["flops"] for row in rows) / sum(row["flops"] / row["gflops"] for row in rows)


def _pick(seconds):
    """The provider whose products took least time against OpenBLAS (geometric mean of
    the cases), if by more than LEAD; else OpenBLAS."""
    base = seconds[DEFAULT]
    shares = {name: float(np.exp(np.mean(np.log(np.divide(times, base))))) for name, times in seconds.items()}
    best = min(shares, key=shares.get)
    return (best if shares[best] <= LEAD else DEFAULT), shares


def available():
    """The names of the providers whose library is on this machine (not loaded to tell)."""
    return [name for name in gemm.PROVIDERS if gemm.library_path(name) is not None]


def rated():
    """The names gemm_rates reports on this machine: every available provider, and 'bf16'
    where the CPU has fastnn's bf16 products."""
    return available() + (["bf16"] if gemm.bf16_unsupported() is None else [])


def loadable(names=None):
    """The providers called names (None: every one available()) that load, loaded; one
    that does not is left out with a warning saying why."""
    return [provider for provider in map(_load_or_warn, available() if names is None else names)
            if provider is not None]


def calibrate(force=False):
    """Install the provider whose products are faster on this machine: the one a record of
    this machine in cache_path() names, else the one measure() finds, remembered there
    unless other processes' threads were running (threads.other_running_tasks).
    Returns the calibration record (None when only OpenBLAS is there: nothing to
    measure). A provider that fails to load is left out with a warning."""
    names = available()
    if names == [DEFAULT]:
        _install(gemm.load(DEFAULT), "the only provider on this machine "
                 f"(mkl: {gemm.library_path('mkl') or 'not installed: pip install fastnn[mkl]'})")
        return None
    key, path = _machine_key({name: gemm.library_path(name) for name in names}), cache_path()
    record, kept = (None if force else _read_record(path, key)), True
    if record is None:
        providers = loadable(names)
        if len(providers) == 1:
            _install(providers[0], "the only provider that loads")
            return None
        busy = threads.other_running_tasks() > 0
        seconds = measure(providers)
        busy = busy or threads.other_running_tasks() > 0
        choice, shares = _pick(seconds)
        record = {"key": key, "provider": choice, "seconds": seconds, "share_of_openblas": shares,
                  "cases": [list(case) for case in CALIBRATION_CASES],
                  "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
        kept = not busy  # a calibration that other processes' threads shared the cores with is not kept
        if kept:
            _write_record(path, record)
    chosen, reason = _load_or_warn(record["provider"]), _calibration_reason(record, path if kept else None)
    if chosen is None:
        chosen, reason = gemm.load(DEFAULT), f"{record['provider']}, calibrated faster, does not load"
    _install(chosen, reason, record)
    return record


def _calibration_reason(record, path):
    """Why calibration installed the record's provider, and where the record is kept
    (path None: nowhere)."""
    shares = record["share_of_openblas"]
    if record["provider"] == DEFAULT:
        others = ", ".join(f"{name} {share:.2f}x" for name, share in shares.items() if name != DEFAULT)
        verdict = f"no provider's products took at most {LEAD:.2f}x OpenBLAS's time ({others})"
    else:
        verdict = f"its products took {shares[record['provider']]:.2f}x OpenBLAS's time"
    where = f"record in {path}" if path else "other processes ran meanwhile: not kept, measured again next time"
    return f"calibrated on {record['when']}: {verdict} ({where})"


def _load_or_warn(name):
    """The provider called name, or None with a warning saying why it does not load."""
    try:
        return gemm.load(name)
    except gemm.ProviderError as error:
        warnings.warn(f"BLAS provider {name!r} does not load ({error}); fastnn leaves it out", RuntimeWarning,
                      stacklevel=3)
        return None


def _read_record(path, key):
    try:
        with open(path) as file:
            record = json.load(file)
    except (OSError, ValueError):
        return None
    valid = (isinstance(record, dict) and record.get("key") == key and record.get("provider") in gemm.PROVIDERS
             and isinstance(record.get("share_of_openblas"), dict) and record["provider"] in record["share_of_openblas"])
    return record if valid else None


def _write_record(path, record):
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with replacing(path) as file:
            file.write(json.dumps(record, indent=1).encode())
    except OSError as error:
        warnings.warn(f"fastnn could not keep its BLAS calibration in {path} ({error}); it measures again "
                      "in every process (set FASTNN_CACHE_DIR to a writable directory)", RuntimeWarning,
                      stacklevel=3)


def load(name):
    """The provider called name, loaded and under fastnn's thread control, not installed
    (gemm.install(provider) installs it): for code that switches between providers."""
    provider = gemm.load(name)
    threads.forget_blas()
    return provider


def _install(provider, reason, calibration=None):
    gemm.install(provider)
    threads.forget_blas()  # threadpoolctl is to see the library just loaded
    _in_use.update(reason=reason, calibration=calibration)


def set_blas(name, _reason="set_blas"):
    """Send every matrix product of fastnn to the provider called name ('openblas' or
    'mkl') from now on, process-wide; a provider that does not load is replaced by
    OpenBLAS with a warning. Returns the name of the provider in use."""
    gemm.check_name(name)
    try:
        provider = gemm.load(name)
    except gemm.ProviderError as error:
        warnings.warn(f"BLAS provider {name!r} does not load ({error}); fastnn uses {DEFAULT}", RuntimeWarning,
                      stacklevel=2)
        provider, _reason = gemm.load(DEFAULT), f"{_reason} asked for {name}, which does not load: {error}"
    _install(provider, _reason)
    return provider.name


def choose():
    """Install the provider of the module docstring's rules 2-4 (fastnn's import calls it)."""
    requested = os.environ.get("FASTNN_BLAS", "").strip().lower()
    if not requested:
        calibrate()
    elif requested not in gemm.PROVIDERS:
        warnings.warn(f"FASTNN_BLAS must be one of {sorted(gemm.PROVIDERS)}; got {requested!r}: fastnn ignores it",
                      RuntimeWarning, stacklevel=2)
        calibrate()
    else:
        set_blas(requested, _reason=f"FASTNN_BLAS={requested}")


def _threadpool_entry(provider):
    """threadpoolctl's entry of provider's library (the process may hold other BLAS
    libraries: NumPy ships an OpenBLAS of its own)."""
    libraries = [lib for lib in threadpool_info() if lib["user_api"] == "blas" and lib["internal_api"] == provider.name]
    if provider.name == DEFAULT:  # scipy's OpenBLAS lies in scipy.libs (wheels) or is the system's
        mine = [lib for lib in libraries if "scipy" in os.path.basename(os.path.dirname(lib["filepath"]))]
    else:
        mine = [lib for lib in libraries if os.path.realpath(lib["filepath"]) == os.path.realpath(provider.path)]
    return (mine or libraries or [{}])[0]


def in_use():
    """The Provider every product goes to now."""
    return gemm.installed()


def blas_info():
    """The provider in use, why, its library's file, version, kernel and threads (as
    threadpoolctl sees them) and the calibration record."""
    provider = gemm.installed()
    library = _threadpool_entry(provider)
    return {"provider": provider.name, "reason": _in_use["reason"],
            "library": library.get("filepath", provider.path), "version": library.get("version"),
            "kernel": library.get("architecture") or provider.kernel, "threads": library.get("num_threads"),
            "threading_layer": library.get("threading_layer"), "available": available(),
            "calibration": _in_use["calibration"]}
