"""Argument checks shared by every backend.

Compiled kernels trust their arguments (the Cython ones run without bounds
checks), so the public entry points run these checks first: a wrong dtype,
shape, memory order or label, a size past what BLAS takes, or an output that
overlaps another argument raises ValueError/TypeError naming the argument
instead of producing garbage or crashing. Each ``check_<kernel>`` takes the
kernel's arguments and returns them normalised (activation names -> codes).
"""
import ctypes

import numpy as np

from .abi import ACTIVATIONS, STEP
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
LABEL_DTYPE = np.dtype(np.int64)
# The BLAS behind the matrix products (every provider's Fortran sgemm/dgemm) takes 32-bit
# sizes: a dimension above this would be truncated into a wrong product.
BLAS_MAX_DIM = 2**31 - 1


def activation_code(activation):
    """Map an activation name or code to its integer code."""
    if isinstance(activation, str):
        if activation in ACTIVATIONS:
            return ACTIVATIONS[activation]
    elif isinstance(activation, (int, np.integer)) and int(activation) in ACTIVATIONS.values():
        return int(activation)
    raise ValueError(
        f"activation must be one of {sorted(ACTIVATIONS)} or their codes 0-5; got {activation!r}"
    )


def _array(name, a, ndim, dtype=None, writable=False):
    """Check one array argument; dtype None means float32 or float64."""
    if not isinstance(a, np.ndarray) or isinstance(a, np.ma.MaskedArray):
        raise TypeError(f"{name} must be a numpy.ndarray; got {type(a).__name__}"
                        + (" (kernels ignore masks: pass a.filled(...) or drop masked rows)"
                           if isinstance(a, np.ma.MaskedArray) else ""))
    if dtype is None and a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64; got {a.dtype}")
    if dtype is not None and a.dtype != dtype:
        raise TypeError(f"{name} must be {dtype}; got {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D; got shape {a.shape}")
    if not a.flags.c_contiguous:
        order = "Fortran-ordered" if a.flags.f_contiguous else "non-contiguous"
        raise ValueError(
            f"{name} must be C-contiguous; got a {order} array "
            "(numpy.ascontiguousarray converts it)"
        )
    if writable and not a.flags.writeable:
        raise ValueError(f"{name} is an output and must be writable")


def _same_dtype(reference_name, reference, **arrays):
    for name, a in arrays.items():
        if a is not None and a.dtype != reference.dtype:
            raise TypeError(
                f"{name} must have the dtype of {reference_name} ({reference.dtype}); got {a.dtype}"
            )


def _shape(name, a, expected):
    if a.shape != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}; got {a.shape}")


def blas_sizes(**arrays):
    """ValueError unless every dimension of these matrix-product operands fits BLAS's
    32-bit sizes."""
    for name, a in arrays.items():
        if a is not None and max(a.shape, default=0) > BLAS_MAX_DIM:
            raise ValueError(f"{name} has shape {a.shape}: matrix products take dimensions up to "
                             f"{BLAS_MAX_DIM} (BLAS's 32-bit sizes)")


def address(a):
    """The address of array a's data. ctypes reads it from a writable C-contiguous array's
    buffer five times faster than numpy's __array_interface__ builds its dict (a kernel
    call or a fit asks for tens of addresses); other arrays take the dict."""
    flags = a.flags
    if a.size and flags.c_contiguous and flags.writeable:
        return ctypes.addressof(ctypes.c_char.from_buffer(a))
    return a.__array_interface__["data"][0]


def _same_array(a, b):
    """Whether a and b are the very same memory (both C-contiguous, of one dtype)."""
    return a.shape == b.shape and address(a) == address(b)


def _byte_bounds(a):
    """[first, last) byte addresses of a's elements (np.may_share_memory's test)."""
    start = end = address(a)
    if a.flags.c_contiguous:
        return start, start + a.nbytes
    for extent, stride in zip(a.shape, a.strides):
        if stride < 0:
            start += (extent - 1) * stride
        else:
            end += (extent - 1) * stride
    return start, end + a.itemsize


# Up to this many (output, other) pairs, disjoint asks np.may_share_memory of each pair (a
# kernel call: a few pairs, ~0.3 us each); above it, it sorts the arrays by address and
# compares each with the few that start before it ends (the engine's layout: ~20 arrays).
PAIRWISE_MAX = 24


def disjoint(outputs, inputs, in_place=()):
    """ValueError unless every output (name -> array, None skipped) shares no memory with
    any other argument: a kernel reads its inputs while it writes, so an overlap gives a
    wrong result. The pairs (output, input) of in_place may instead be the very same
    array: those kernels are written to work in place. Overlap is judged by the arrays'
    memory bounds, as np.may_share_memory does (for C-contiguous arrays, exactly the
    memory they use)."""
    written = [(name, a) for name, a in outputs.items() if a is not None]
    read = [(name, a) for name, a in inputs.items() if a is not None]
    pairs = len(written) * (len(read) + (len(written) - 1) / 2)
    overlaps = _pairwise_overlaps if pairs <= PAIRWISE_MAX else _sorted_overlaps
    for (out, a), (other, b) in overlaps(written, read):
        allowed = (out, other) in in_place
        if not (allowed and _same_array(a, b)):
            hint = " unless it is the very same array (in place)" if allowed else ""
            raise ValueError(f"{out} must not overlap {other}{hint}")


def _pairwise_overlaps(written, read):
    """The pairs ((name, output), (name, other)) whose memory bounds overlap, each pair tested."""
    for i, (out, a) in enumerate(written):
        for other, b in read + written[i + 1:]:
            if np.may_share_memory(a, b):
                yield (out, a), (other, b)


def _sorted_overlaps(written, read):
    """What _pairwise_overlaps yields (in another order), by a sweep over the arrays sorted by
    their first byte."""
    arguments = written + read
    spans = sorted((_byte_bounds(a) + (order,) for order, (_, a) in enumerate(arguments) if a.size),
                   key=lambda span: span[0])
    for i, (_, end, first) in enumerate(spans):
        for start, _, second in spans[i + 1:]:
            if start >= end:
                break
            first_order, second_order = sorted((first, second))
            if first_order < len(written):  # two inputs may share memory
                yield arguments[first_order], arguments[second_order]


def _alpha(alpha):
    alpha = float(alpha)
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite number >= 0; got {alpha}")
    return alpha


def _sample_weight(sample_weight, batch, like):
    if sample_weight is None:
        return None
    _array("sample_weight", sample_weight, 1)
    _same_dtype("the predictions", like, sample_weight=sample_weight)
    _shape("sample_weight", sample_weight, (batch,))
    if batch and not (np.isfinite(sample_weight).all() and (sample_weight >= 0).all()):
        raise ValueError("sample_weight must be non-negative and finite")
    return sample_weight


def _nonempty_rows(name, a):
    if a.shape[0] == 0:
        raise ValueError(f"{name} must have at least one row; got shape {a.shape}")


def _nonempty_columns(name, a):
    if a.shape[1] == 0:
        raise ValueError(f"{name} must have at least one column (a loss needs outputs); got shape {a.shape}")


def check_matmul(A, B, out):
    _array("A", A, 2)
    _array("B", B, 2)
    _array("out", out, 2, writable=True)
    _same_dtype("A", A, B=B, out=out)
    if A.shape[1] != B.shape[0]:
        raise ValueError(f"A {A.shape} and B {B.shape} do not chain: A.shape[1] != B.shape[0]")
    _shape("out", out, (A.shape[0], B.shape[1]))
    blas_sizes(A=A, B=B)
    disjoint({"out": out}, {"A": A, "B": B})
    return A, B, out


def check_activation_forward(Z, out, activation, alpha=0.01):
    _array("Z", Z, 2)
    _array("out", out, 2, writable=True)
    _same_dtype("Z", Z, out=out)
    _shape("out", out, Z.shape)
    disjoint({"out": out}, {"Z": Z}, in_place={("out", "Z")})
    return Z, out, activation_code(activation), _alpha(alpha)


def check_activation_backward(A, dA, out, activation, alpha=0.01):
    _array("A", A, 2)
    _array("dA", dA, 2)
    _array("out", out, 2, writable=True)
    _same_dtype("A", A, dA=dA, out=out)
    _shape("dA", dA, A.shape)
    _shape("out", out, A.shape)
    disjoint({"out": out}, {"A": A, "dA": dA}, in_place={("out", "A"), ("out", "dA")})
    code = activation_code(activation)
    if code == STEP:
        raise ValueError("activation 'step' has no gradient: it is forward only")
    return A, dA, out, code, _alpha(alpha)


def check_dense_forward(X, W, b, out, activation, alpha=0.01):
    _array("X", X, 2)
    _array("W", W, 2)
    _array("b", b, 1)
    _array("out", out, 2, writable=True)
    _same_dtype("X", X, W=W, b=b, out=out)
    if X.shape[1] != W.shape[0]:
        raise ValueError(f"X {X.shape} does not match W {W.shape}: X.shape[1] != W.shape[0]")
    _shape("b", b, (W.shape[1],))
    _shape("out", out, (X.shape[0], W.shape[1]))
    blas_sizes(X=X, W=W)
    disjoint({"out": out}, {"X": X, "W": W, "b": b})
    return X, W, b, out, activation_code(activation), _alpha(alpha)


def check_dense_backward(X, W, dZ, dW, db, dX=None):
    _array("X", X, 2)
    _array("W", W, 2)
    _array("dZ", dZ, 2)
    _array("dW", dW, 2, writable=True)
    _array("db", db, 1, writable=True)
    if dX is not None:
        _array("dX", dX, 2, writable=True)
    _same_dtype("X", X, W=W, dZ=dZ, dW=dW, db=db, dX=dX)
    if X.shape[1] != W.shape[0]:
        raise ValueError(f"X {X.shape} does not match W {W.shape}: X.shape[1] != W.shape[0]")
    _shape("dZ", dZ, (X.shape[0], W.shape[1]))
    _shape("dW", dW, W.shape)
    _shape("db", db, (W.shape[1],))
    if dX is not None:
        _shape("dX", dX, X.shape)
    blas_sizes(X=X, W=W)
    disjoint({"dW": dW, "db": db, "dX": dX}, {"X": X, "W": W, "dZ": dZ})
    return X, W, dZ, dW, db, dX


def _csr(values, indices, indptr, n_rows, n_columns, like):
    """ValueError/TypeError unless values, indices, indptr are the CSR arrays of an (n_rows,
    n_columns) matrix of like's dtype (reference.py's convention)."""
    _array("values", values, 1)
    _same_dtype(like[0], like[1], values=values)
    _array("indices", indices, 1, dtype=LABEL_DTYPE)
    _array("indptr", indptr, 1, dtype=LABEL_DTYPE)
    _shape("indices", indices, values.shape)
    _shape("indptr", indptr, (n_rows + 1,))
    if not (indptr[0] >= 0 and indptr[-1] <= len(values) and (np.diff(indptr) >= 0).all()):
        raise ValueError(f"indptr must be non-decreasing positions in [0, {len(values)}] (values' length)")
    used = indices[indptr[0]:indptr[-1]]
    if used.size and not (used.min() >= 0 and used.max() < n_columns):
        raise ValueError(f"indices must be columns in [0, {n_columns}) (W's rows)")


def check_csr_dense_forward(values, indices, indptr, W, b, out, activation, alpha=0.01):
    _array("W", W, 2)
    _array("b", b, 1)
    _array("out", out, 2, writable=True)
    _same_dtype("W", W, b=b, out=out)
    _csr(values, indices, indptr, out.shape[0], W.shape[0], ("W", W))
    _shape("b", b, (W.shape[1],))
    _shape("out", out, (out.shape[0], W.shape[1]))
    disjoint({"out": out}, {"values": values, "indices": indices, "indptr": indptr, "W": W, "b": b})
    return values, indices, indptr, W, b, out, activation_code(activation), _alpha(alpha)


def check_csr_dense_backward(values, indices, indptr, dZ, dW, db):
    _array("dZ", dZ, 2)
    _array("dW", dW, 2, writable=True)
    _array("db", db, 1, writable=True)
    _same_dtype("dZ", dZ, dW=dW, db=db)
    _csr(values, indices, indptr, dZ.shape[0], dW.shape[0], ("dZ", dZ))
    _shape("dW", dW, (dW.shape[0], dZ.shape[1]))
    _shape("db", db, (dZ.shape[1],))
    disjoint({"dW": dW, "db": db}, {"values": values, "indices": indices, "indptr": indptr, "dZ": dZ})
    return values, indices, indptr, dZ, dW, db

def check_softmax(Z, out):
    _array("Z", Z, 2)
    _array("out", out, 2, writable=True)
    _same_dtype("Z", Z, out=out)
    _shape("out", out, Z.shape)
    disjoint({"out": out}, {"Z": Z}, in_place={("out", "Z")})
    return Z, out


def check_softmax_cross_entropy(Z, labels, grad, sample_weight=None):
    _array("Z", Z, 2)
    _nonempty_rows("Z", Z)
    _nonempty_columns("Z", Z)
    _array("grad", grad, 2, writable=True)
    _same_dtype("Z", Z, grad=grad)
    _shape("grad", grad, Z.shape)
    _array("labels", labels, 1, dtype=LABEL_DTYPE)
    _shape("labels", labels, (Z.shape[0],))
    n_classes = Z.shape[1]
    low, high = labels.min(), labels.max()
    if low < 0 or high >= n_classes:
        bad = low if low < 0 else high
        raise ValueError(f"labels must lie in [0, {n_classes}) for {n_classes} logits; got {bad}")
    sample_weight = _sample_weight(sample_weight, Z.shape[0], Z)
    disjoint({"grad": grad}, {"Z": Z, "labels": labels, "sample_weight": sample_weight})
    return Z, labels, grad, sample_weight


def _check_targets(first_name, Z, target, grad, sample_weight):
    """Loss kernels on dense targets: Z and target and grad of one shape."""
    _array(first_name, Z, 2)
    _nonempty_rows(first_name, Z)
    _nonempty_columns(first_name, Z)
    _array("target", target, 2)
    _array("grad", grad, 2, writable=True)
    _same_dtype(first_name, Z, target=target, grad=grad)
    _shape("target", target, Z.shape)
    _shape("grad", grad, Z.shape)
    sample_weight = _sample_weight(sample_weight, Z.shape[0], Z)
    disjoint({"grad": grad}, {first_name: Z, "target": target, "sample_weight": sample_weight})
    return Z, target, grad, sample_weight


def check_softmax_cross_entropy_soft(Z, target, grad, sample_weight=None):
    return _check_targets("Z", Z, target, grad, sample_weight)


def check_mse(pred, target, grad, sample_weight=None):
    return _check_targets("pred", pred, target, grad, sample_weight)


def check_bce_with_logits(Z, target, grad, sample_weight=None):
    return _check_targets("Z", Z, target, grad, sample_weight)


def _flat_buffers(params, grad, **state):
    """params and the optimizer state are updated in place, from grad: distinct buffers
    of one length and dtype."""
    _array("params", params, 1, writable=True)
    for name, a in {"grad": grad, **state}.items():
        _array(name, a, 1, writable=name != "grad")
        _same_dtype("params", params, **{name: a})
        _shape(name, a, params.shape)
    disjoint({"params": params, **state}, {"grad": grad})


def finite_number(name, value, low=0.0, high=None, low_inclusive=True):
    """value as a float in [low, high) (or (low, high)), else a ValueError (a TypeError for
    what is not a number) naming it."""
    try:
        if isinstance(value, (str, bytes)):
            raise TypeError
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number; got {value!r}") from None
    too_low = value < low if low_inclusive else value <= low
    if not np.isfinite(value) or too_low or (high is not None and value >= high):
        bound = f"{'>=' if low_inclusive else '>'} {low:g}" + (f" and < {high:g}" if high is not None else "")
        raise ValueError(f"{name} must be a finite number {bound}; got {value}")
    return value


def check_sgd_update(params, grad, velocity, lr, momentum, nesterov, weight_decay):
    _flat_buffers(params, grad=grad, velocity=velocity)
    return (params, grad, velocity, finite_number("lr", lr, low_inclusive=False),
            finite_number("momentum", momentum), bool(nesterov), finite_number("weight_decay", weight_decay))


def check_adam_update(params, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    _flat_buffers(params, grad=grad, m=m, v=v)
    if not isinstance(step, (int, np.integer)) or not 1 <= step < 2**63:
        raise ValueError(f"step must be an integer >= 1 and < 2**63 (the count including this update); got {step!r}")
    return (params, grad, m, v, int(step), finite_number("lr", lr, low_inclusive=False),
            finite_number("beta1", beta1, high=1.0), finite_number("beta2", beta2, high=1.0),
            finite_number("eps", eps), finite_number("weight_decay", weight_decay), bool(decoupled))
