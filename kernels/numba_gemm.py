"""Matrix products for the Numba kernels and engine, through gemm.py's cells.

``gemm(A, trans_a, B, trans_b, out)`` is blas.pxd's gemm for Numba: the compiled code
loads the provider's sgemm/dgemm from the cells at each call, so switching providers
needs no recompilation. The cells are an external symbol of the compiled code,
resolved when Numba links it (also when it loads it from its cache), which is why
compiled code can keep them by name across processes.
"""
import llvmlite.binding as llvm
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .gemm import CELLS_ADDRESS
from .numba_cache import CACHE

_CELLS_SYMBOL = "fastnn_gemm_cells"
llvm.add_symbol(_CELLS_SYMBOL, CELLS_ADDRESS)

_CELL_OF = {types.float32: 0, types.float64: 1}  # gemm.Cells: sgemm, dgemm


@intrinsic
def _fortran_gemm(typingctx, trans_a, trans_b, m, n, k, A, B, out):
    """Row-major out (m, n) = op(A) @ op(B) of C-contiguous arrays (sizes positive), as the
    column-major product out.T = op(B).T op(A).T in the Fortran interface."""
    arrays = (A, B, out)
    if not all(isinstance(a, types.Array) and a.dtype in _CELL_OF and a.dtype == out.dtype for a in arrays):
        return None

    def codegen(context, builder, signature, args):
        flag_a, flag_b, rows, cols, inner, a, b, c = args
        real = context.get_value_type(out.dtype)
        i8, i32 = ir.IntType(8), ir.IntType(32)
        pointers = [context.make_array(t)(context, builder, v).data for t, v in zip(arrays, (a, b, c))]
        a_data, b_data, c_data = (builder.bitcast(p, real.as_pointer()) for p in pointers)

        def by_reference(value, kind):
            slot = cgutils.alloca_once(builder, kind)
            builder.store(value, slot)
            return slot

        def operation(flag):
            return by_reference(builder.select(flag, i8(ord("T")), i8(ord("N"))), i8)

        def count(value):
            return by_reference(builder.trunc(value, i32), i32)

        def row_length(array_type, value):
            shape = cgutils.unpack_tuple(builder, context.make_array(array_type)(context, builder, value).shape)
            return count(shape[1])

        # sgemm/dgemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc), all by reference
        real_p, int_p = real.as_pointer(), i32.as_pointer()
        function = ir.FunctionType(ir.VoidType(), [i8.as_pointer()] * 2 + [int_p] * 3
                                   + [real_p, real_p, int_p, real_p, int_p, real_p, real_p, int_p])
        cells_type = ir.LiteralStructType([i8.as_pointer()] * len(_CELL_OF))
        cells = builder.module.globals.get(_CELLS_SYMBOL) or ir.GlobalVariable(builder.module, cells_type,
                                                                               _CELLS_SYMBOL)
        cell = builder.gep(builder.bitcast(cells, cells_type.as_pointer()), [i32(0), i32(_CELL_OF[out.dtype])])
        routine = builder.bitcast(builder.load(cell), function.as_pointer())
        builder.call(routine, [operation(flag_b), operation(flag_a), count(cols), count(rows), count(inner),
                               by_reference(real(1), real), b_data, row_length(B, b), a_data, row_length(A, a),
                               by_reference(real(0), real), c_data, row_length(out, c)])
        return context.get_dummy_value()

    return types.void(types.boolean, types.boolean, types.intp, types.intp, types.intp, A, B, out), codegen


@njit(inline="always", cache=CACHE, nogil=True)
def gemm(A, trans_a, B, trans_b, out):
    """out = op(A) @ op(B) for C-contiguous arrays, op(X) being X.T if trans_x, else X."""
    m, n = out.shape
    k = A.shape[0] if trans_a else A.shape[1]
    if m == 0 or n == 0:
        return
    if k == 0:
        out[:] = 0
        return
    _fortran_gemm(trans_a, trans_b, m, n, k, A, B, out)
