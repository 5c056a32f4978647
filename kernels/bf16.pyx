"""bf16 products: kernels/bf16_gemm.h's sgemm for gemm.py's sgemm cell (x86-64 builds)."""

cdef extern from "bf16_gemm.h":
    int fastnn_cpu_has_bf16()
    void fastnn_bf16_set_threads(int count)
    void fastnn_bf16_sgemm(char*, char*, int*, int*, int*, float*, float*, int*,
                           float*, int*, float*, float*, int*)


def supported():
    """Whether this CPU has AVX512-BF16 (vdpbf16ps and the bf16 conversions)."""
    return bool(fastnn_cpu_has_bf16())


def sgemm_address():
    """The address of the bf16 sgemm, for gemm.py's sgemm cell."""
    return <size_t>&fastnn_bf16_sgemm


def set_threads(int count):
    """OpenMP threads for products called from outside a team (at least one)."""
    fastnn_bf16_set_threads(max(1, count))
