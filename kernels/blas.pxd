# BLAS for the Cython kernels: the one place that calls scipy's BLAS
# (scipy.linalg.cython_blas), with row-major (C-contiguous) arguments.
from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, sgemm


cdef inline void gemm(const floating[:, ::1] A, bint trans_a,
                      const floating[:, ::1] B, bint trans_b,
                      floating[:, ::1] C) noexcept nogil:
    """C = op(A) @ op(B), where op(X) is X.T if trans_x is set, else X."""
    cdef int m = C.shape[0], n = C.shape[1]
    cdef int k = A.shape[0] if trans_a else A.shape[1]
    cdef int lda = A.shape[1], ldb = B.shape[1], ldc = n
    cdef char op_a = b'T' if trans_a else b'N'
    cdef char op_b = b'T' if trans_b else b'N'
    cdef floating one = 1, zero = 0
    cdef Py_ssize_t i, j
    if m == 0 or n == 0:
        return
    if k == 0:
        for i in range(m):
            for j in range(n):
                C[i, j] = 0
        return
    # A row-major array is its transpose in column-major order, so the
    # row-major C = op(A) op(B) is the column-major C.T = op(B).T op(A).T.
    if floating is float:
        sgemm(&op_b, &op_a, &n, &m, &k, &one, <float*>&B[0, 0], &ldb,
              <float*>&A[0, 0], &lda, &zero, &C[0, 0], &ldc)
    else:
        dgemm(&op_b, &op_a, &n, &m, &k, &one, <double*>&B[0, 0], &ldb,
              <double*>&A[0, 0], &lda, &zero, &C[0, 0], &ldc)
