# The loops of a sparse first layer (the csr_ kernels of reference.py), shared by the
# Cython kernels and the Cython engine: X's rows as CSR arrays (values, indices, indptr),
# W and its gradient row-major with n_out columns.
from cython cimport floating
from libc.stdint cimport int64_t


cdef inline void csr_row_product(const floating* values, const int64_t* indices, int64_t start, int64_t end,
                                 const floating* W, Py_ssize_t n_out, floating* out, Py_ssize_t j0,
                                 Py_ssize_t j1) noexcept nogil:
    """out[j0:j1] += sum over p in start:end of values[p] * W[indices[p], j0:j1]: each
    stored entry adds its row of W, four entries per pass over out (a pass reads and writes
    out once; one entry per pass made batch 32 of the digits 1.6x slower in Numba)."""
    cdef Py_ssize_t j
    cdef int64_t p = start
    cdef floating v0, v1, v2, v3
    cdef const floating* w0
    cdef const floating* w1
    cdef const floating* w2
    cdef const floating* w3
    while p + 4 <= end:
        v0, v1, v2, v3 = values[p], values[p + 1], values[p + 2], values[p + 3]
        w0, w1 = W + indices[p] * n_out, W + indices[p + 1] * n_out
        w2, w3 = W + indices[p + 2] * n_out, W + indices[p + 3] * n_out
        for j in range(j0, j1):
            out[j] += v0 * w0[j] + v1 * w1[j] + v2 * w2[j] + v3 * w3[j]
        p += 4
    while p < end:
        v0, w0 = values[p], W + indices[p] * n_out
        for j in range(j0, j1):
            out[j] += v0 * w0[j]
        p += 1


cdef inline void csr_row_gradient(const floating* values, const int64_t* indices, int64_t start, int64_t end,
                                  const floating* d, Py_ssize_t n_out, floating* dW, int64_t k0,
                                  int64_t k1) noexcept nogil:
    """dW[k] += values[p] * d for the stored entries p in start:end of one row whose
    column k lies in k0:k1: the row's share of the weight gradient X.T @ dZ (d its row of dZ)."""
    cdef Py_ssize_t j
    cdef int64_t p, k
    cdef floating v
    cdef floating* row
    for p in range(start, end):
        k = indices[p]
        if k0 <= k < k1:
            v, row = values[p], dW + k * n_out
            for j in range(n_out):
                row[j] += v * d[j]
