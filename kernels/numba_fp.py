"""Denormals flushed to zero in Numba code, as the Cython engine's threads train.

``flush_denormals()`` sets the x86 MXCSR register's FTZ and DAZ bits in the calling
thread (denormal results become 0, denormal inputs read as 0) and returns the previous
control word; ``restore_fp(previous)`` puts it back. Both are Numba intrinsics around
LLVM's stmxcsr/ldmxcsr, so they cost two instructions inside compiled code; on other
CPUs they do nothing. Why the engine trains so: cython_engine.pxi (Adam's moments of
units that stopped learning decay through the denormal range, where every operation on
them is many times slower).
"""
import platform

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .numba_cache import CACHE

FTZ_DAZ = 0x8040
X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


def _call_mxcsr(builder, name, slot):
    """Call llvm.x86.sse.<name> (stmxcsr or ldmxcsr) on the 32-bit slot."""
    pointer = ir.IntType(8).as_pointer()
    function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [pointer]),
                                              f"llvm.x86.sse.{name}")
    builder.call(function, [builder.bitcast(slot, pointer)])


@intrinsic
def _read_mxcsr(typingctx):
    def codegen(context, builder, signature, args):
        slot = cgutils.alloca_once(builder, ir.IntType(32))
        _call_mxcsr(builder, "stmxcsr", slot)
        return builder.load(slot)

    return types.uint32(), codegen


@intrinsic
def _write_mxcsr(typingctx, word):
    def codegen(context, builder, signature, args):
        slot = cgutils.alloca_once(builder, ir.IntType(32))
        builder.store(context.cast(builder, args[0], word, types.uint32), slot)
        _call_mxcsr(builder, "ldmxcsr", slot)
        return context.get_dummy_value()

    return types.void(word), codegen


if X86:
    @njit(cache=CACHE, nogil=True)
    def flush_denormals():
        previous = _read_mxcsr()
        _write_mxcsr(previous | FTZ_DAZ)
        return previous

    @njit(cache=CACHE, nogil=True)
    def restore_fp(previous):
        _write_mxcsr(previous)
else:
    @njit(cache=CACHE, nogil=True)
    def flush_denormals():
        return 0

    @njit(cache=CACHE, nogil=True)
    def restore_fp(previous):
        pass
