"""Input checks for the Python layer: arrays are validated and converted once, with
errors that name the argument, say what was expected and what came."""
import warnings

import numpy as np
import scipy.sparse

from .kernels import gemm, get_backend
from .sparse import SparseRows


def as_array(value, name):
    """np.asarray(value), refusing masked arrays: their masks would be silently dropped."""
    if isinstance(value, np.ma.MaskedArray):
        raise TypeError(f"{name} must be an array without a mask; got a numpy.ma.MaskedArray "
                        "(pass value.filled(...) or drop the masked rows)")
    return np.asarray(value)


def check_features(X, n_features, dtype, name="X"):
    """X as a C-contiguous (n_samples, n_features) array of dtype, checked for NaN/inf; a
    scipy.sparse X as SparseRows of dtype (fastnn.sparse)."""
    if scipy.sparse.issparse(X) or isinstance(X, SparseRows):
        return _check_sparse(X, n_features, dtype, name)
    array = _numeric(X, f"(n_samples, {n_features})", name)
    if array.ndim != 2:
        hint = " (use X.reshape(-1, 1) for a single feature)" if array.ndim == 1 else ""
        raise ValueError(f"{name} must be 2-D (n_samples, n_features); got shape {array.shape}{hint}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty: it must have at least one sample")
    if n_features is not None and array.shape[1] != n_features:
        raise ValueError(f"{name} must have {n_features} features (columns); got {array.shape[1]}")
    return _finite(array, dtype, name)


def _check_sparse(X, n_features, dtype, name):
    """A scipy.sparse X (or SparseRows, checked before) as SparseRows of dtype."""
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features); got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty: it must have at least one sample")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name} must have {n_features} features (columns); got {X.shape[1]}")
    if isinstance(X, SparseRows):
        return X if X.dtype == dtype else SparseRows(X.values.astype(dtype), X.indices, X.indptr, X.shape[1])
    return SparseRows.from_scipy(X, dtype, name)


def check_images(X, n_channels, dtype, name="X"):
    """X as a C-contiguous (n_samples, n_channels, height, width) array of dtype, checked
    for NaN/inf: the input of a model whose first layer is a convolution."""
    array = _numeric(X, f"(n_samples, {n_channels}, height, width)", name)
    if array.ndim != 4:
        hint = " (use X.reshape(-1, 1, height, width) for one channel)" if array.ndim in (2, 3) else ""
        raise ValueError(f"{name} must be 4-D (n_samples, channels, height, width); got shape {array.shape}{hint}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty: it must have at least one sample")
    if array.shape[1] != n_channels:
        raise ValueError(f"{name} must have {n_channels} channels (X.shape[1]); got {array.shape[1]}")
    return _finite(array, dtype, name)


def _numeric(X, shape, name):
    """X as a numeric array, else an error that names it and the shape it should have."""
    if X is None:
        raise TypeError(f"{name} must be an array of shape {shape}; got None")
    array = as_array(X, name)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric; got dtype {array.dtype}")
    return array


def _finite(array, dtype, name):
    array = np.ascontiguousarray(array, dtype=dtype)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return array


def check_sample_weight(sample_weight, n_samples, dtype):
    """None, or a C-contiguous (n_samples,) array of finite non-negative weights with a positive sum."""
    if sample_weight is None:
        return None
    weight = as_array(sample_weight, "sample_weight")
    if weight.dtype.kind not in "biuf":
        raise TypeError(f"sample_weight must be numeric; got dtype {weight.dtype}")
    if weight.shape != (n_samples,):
        raise ValueError(f"sample_weight must have shape ({n_samples},); got {weight.shape}")
    weight = np.ascontiguousarray(weight, dtype=dtype)
    if not np.isfinite(weight).all() or (weight < 0).any():
        raise ValueError("sample_weight must be finite and non-negative")
    if not weight.sum() > 0:
        raise ValueError("sample_weight must not be all zero: the weights need a positive sum")
    return weight


def check_batch_size(batch_size, n_samples):
    """The batch size as an int: 'full' means n_samples; a size above n_samples is clipped
    to n_samples (full batch) with a warning."""
    if isinstance(batch_size, str):
        if batch_size == "full":
            return n_samples
        raise ValueError(f"batch_size must be a positive integer or 'full'; got {batch_size!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer or 'full'; got {batch_size!r}")
    if batch_size > n_samples:
        warnings.warn(f"batch_size={batch_size} is larger than the {n_samples} training samples; "
                      f"using full batches of {n_samples}", UserWarning, stacklevel=3)
        return n_samples
    return int(batch_size)


def check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    return int(value)


def check_fraction(name, value):
    value = float(value)
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1); got {value}")
    return value


def check_int_pair(name, value, minimum):
    """An int or a pair of ints, each >= minimum, as a pair (height, width): the kernel
    size, stride and padding of the convolution layers."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= minimum
                                 for n in pair):
        raise ValueError(f"{name} must be an integer >= {minimum} or a pair (height, width) of them; "
                         f"got {value!r}")
    return int(pair[0]), int(pair[1])


def check_precision(precision, dtype):
    """precision, refused with a reason where the model or the machine cannot train in it."""
    if precision is None:
        return None
    if precision != "bf16":
        raise ValueError(f"precision must be None or 'bf16'; got {precision!r}")
    if dtype != np.float32:
        raise ValueError(f"precision='bf16' trains float32 models (float32 weights, bf16 products); "
                         f"this model is {np.dtype(dtype).name}")
    reason = gemm.bf16_unsupported()
    if reason is not None:
        raise RuntimeError(f"precision='bf16' needs native bf16 products: {reason}")
    if get_backend().name == "numpy":
        raise ValueError("precision='bf16' needs a compiled backend (cython or numba): the numpy backend's "
                         "products are NumPy's float32 ones")
    return precision
