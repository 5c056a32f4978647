# BLAS for the Cython kernels and engine: the one place that calls a matrix product,
# with row-major (C-contiguous) arguments. The routines are those of the provider
# gemm.py installed in its cells (scipy's OpenBLAS unless another was chosen); each
# module that cimports this file binds the cells at import (bind_cells).
from cython cimport floating

cdef extern from *:
    """
    typedef void (*fastnn_sgemm_t)(char *, char *, int *, int *, int *, float *, float *, int *,
                                   float *, int *, float *, float *, int *);
    typedef void (*fastnn_dgemm_t)(char *, char *, int *, int *, int *, double *, double *, int *,
                                   double *, int *, double *, double *, int *);
    typedef struct { fastnn_sgemm_t sgemm; fastnn_dgemm_t dgemm; } fastnn_cells_t;
    static fastnn_cells_t *fastnn_cells;
    static void fastnn_bind_cells(size_t address) { fastnn_cells = (fastnn_cells_t *)address; }
    """
    ctypedef void (*fastnn_sgemm_t)(char*, char*, int*, int*, int*, float*, float*, int*,
                                    float*, int*, float*, float*, int*) noexcept nogil
    ctypedef void (*fastnn_dgemm_t)(char*, char*, int*, int*, int*, double*, double*, int*,
                                    double*, int*, double*, double*, int*) noexcept nogil
    ctypedef struct fastnn_cells_t:
        fastnn_sgemm_t sgemm
        fastnn_dgemm_t dgemm
    fastnn_cells_t* fastnn_cells
    void bind_cells "fastnn_bind_cells"(size_t address)


cdef inline void gemm_ptr(bint trans_a, bint trans_b, int m, int n, int k,
                          const floating* A, int lda, const floating* B, int ldb,
                          floating* C, int ldc) noexcept nogil:
    """Row-major C (m, n) = op(A) @ op(B), with op(A) (m, k) and op(B) (k, n); lda,
    ldb and ldc are the row lengths of A, B and C as stored. Sizes must be positive."""
    cdef char op_a = b'T' if trans_a else b'N'
    cdef char op_b = b'T' if trans_b else b'N'
    cdef floating one = 1, zero = 0
    # A row-major array is its transpose in column-major order, so the
    # row-major C = op(A) op(B) is the column-major C.T = op(B).T op(A).T.
    if floating is float:
        fastnn_cells.sgemm(&op_b, &op_a, &n, &m, &k, &one, <float*>B, &ldb, <float*>A, &lda, &zero, C, &ldc)
    else:
        fastnn_cells.dgemm(&op_b, &op_a, &n, &m, &k, &one, <double*>B, &ldb, <double*>A, &lda, &zero, C, &ldc)


cdef inline void gemm(const floating[:, ::1] A, bint trans_a,
                      const floating[:, ::1] B, bint trans_b,
                      floating[:, ::1] C) noexcept nogil:
    """C = op(A) @ op(B), where op(X) is X.T if trans_x is set, else X."""
    cdef int m = C.shape[0], n = C.shape[1]
    cdef int k = A.shape[0] if trans_a else A.shape[1]
    cdef Py_ssize_t i, j
    if m == 0 or n == 0:
        return
    if k == 0:
        for i in range(m):
            for j in range(n):
                C[i, j] = 0
        return
    gemm_ptr(trans_a, trans_b, m, n, k, &A[0, 0], A.shape[1], &B[0, 0], B.shape[1], &C[0, 0], n)
