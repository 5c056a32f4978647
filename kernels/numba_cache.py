"""Whether Numba can keep compiled code on disk (cache=True) for this package.

Numba refuses to decorate a cache=True function when it finds no writable cache
directory (beside the sources, NUMBA_CACHE_DIR or the user's cache directory: a
read-only system or container install), so that importing fastnn would fail.
CACHE is False there, with one warning, and the kernels compile in memory instead.
"""
import warnings

from numba import njit


def _cache_available():
    def probe():  # in this package's directory, as the kernels: the same cache locations
        return 0

    try:
        njit(cache=True)(probe)
    except RuntimeError as error:
        warnings.warn(f"Numba cannot cache compiled code here ({error}); fastnn's Numba kernels compile "
                      "in memory in every process (set NUMBA_CACHE_DIR to a writable directory to keep "
                      "them)", RuntimeWarning, stacklevel=2)
        return False
    return True


CACHE = _cache_available()
