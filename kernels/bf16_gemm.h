/* sgemm with bf16 operands and float32 accumulation, for CPUs with AVX512-BF16.

   fastnn_bf16_sgemm has the Fortran sgemm_ interface (column-major, every argument by
   reference), so it fills gemm.py's sgemm cell like any provider's routine: every
   float32 product of the kernels and engines then rounds its operands to bf16 (to
   nearest, ties to even) and multiplies them with vdpbf16ps, which adds the products of
   two bf16 pairs into each float32 lane. C = alpha op(A) op(B) + beta C.

   The loops are GotoBLAS's: a KC-deep slab of op(B) is packed into NR-column slivers,
   an MC x KC block of op(A) into MR-row slivers, both as bf16 pairs along k (the last
   pair of an odd k and the rows and columns past the edges padded with zeros), and a
   32 x 12 micro-kernel keeps 24 vectors of sums in registers. A call from outside an
   OpenMP team splits the longer side of C between fastnn_bf16_threads threads. Operands
   below the smallest normal float32 count as zero (the bf16 instructions' rule). */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#define FASTNN_MR 32
#define FASTNN_NR 12
#define FASTNN_KC 384
#define FASTNN_MC 192
#define FASTNN_NC 1536

static int fastnn_bf16_threads = 1;

static void fastnn_bf16_set_threads(int count) { fastnn_bf16_threads = count; }

/* Whether the CPU has every instruction set the functions below are compiled for. */
static int fastnn_cpu_has_bf16(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512bf16");
}

/* Round the float32 bit pattern x to bf16 (nearest, ties to even), left in the high half. */
static inline uint32_t fastnn_round_bf16(uint32_t x) {
    return (x + 0x7fffu + ((x >> 16) & 1u)) & 0xffff0000u;
}

/* The bf16 pair (x0, x1) as one 32-bit word, x0 in the low half. */
static inline uint32_t fastnn_pair(float x0, float x1) {
    uint32_t b0, b1;
    memcpy(&b0, &x0, 4);
    memcpy(&b1, &x1, 4);
    return (fastnn_round_bf16(b0) >> 16) | fastnn_round_bf16(b1);
}

/* Pack the lanes x depth block of a matrix whose element (lane l, depth p) is
   M[l * ls + p * ps] into slivers of `width` lanes: word (q, l) of sliver s holds the pair
   at depths 2q, 2q + 1 of lane s * width + l, at out[(s * pairs + q) * width + l]. Where
   lanes or depths are contiguous, 32 floats are rounded at once (vcvtne2ps2bf16). */
__attribute__((target("avx512f,avx512bw,avx512bf16")))
static void fastnn_pack(const float *M, long ls, long ps, int lanes, int depth, int width, uint32_t *out) {
    int pairs = (depth + 1) / 2, full = depth / 2;
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                                23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (int s = 0; s * width < lanes; s++) {
        int valid = lanes - s * width < width ? lanes - s * width : width;
        uint32_t *sliver = out + (long)s * pairs * width;
        const float *base = M + (long)s * width * ls;
        for (int q = 0; q < pairs; q++) {  /* zeros where the sliver passes the last lane */
            for (int l = valid; l < width; l++)
                sliver[(long)q * width + l] = 0;
        }
        if (ls == 1) {  /* lanes contiguous: two depths' rows of 16 lanes, interleaved */
            for (int q = 0; q < full; q++) {
                const float *at = base + (long)(2 * q) * ps;
                uint32_t *row = sliver + (long)q * width;
                int l = 0;
                for (; l + 16 <= valid; l += 16) {
                    __m512i both = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(at + ps + l), _mm512_loadu_ps(at + l));
                    _mm512_storeu_si512(row + l, _mm512_permutexvar_epi16(interleave, both));
                }
                for (; l < valid; l++)
                    row[l] = fastnn_pair(at[l], at[l + ps]);
            }
        } else if (ps == 1) {  /* depths contiguous: 16 pairs of one lane at once */
            for (int l = 0; l < valid; l++) {
                const float *at = base + l * ls;
                int q = 0;
                for (; q + 16 <= full; q += 16) {
                    uint32_t words[16];
                    __m512i both = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(at + 2 * q + 16), _mm512_loadu_ps(at + 2 * q));
                    _mm512_storeu_si512(words, both);
                    for (int i = 0; i < 16; i++)
                        sliver[(long)(q + i) * width + l] = words[i];
                }
                for (; q < full; q++)
                    sliver[(long)q * width + l] = fastnn_pair(at[2 * q], at[2 * q + 1]);
            }
        } else {
            for (int q = 0; q < full; q++)
                for (int l = 0; l < valid; l++)
                    sliver[(long)q * width + l] = fastnn_pair(base[l * ls + 2 * q * ps], base[l * ls + (2 * q + 1) * ps]);
        }
        if (full < pairs) {  /* an odd depth: the last pair's second value is zero */
            for (int l = 0; l < valid; l++)
                sliver[(long)full * width + l] = fastnn_pair(base[l * ls + (long)(2 * full) * ps], 0.0f);
        }
    }
}

/* 32 x 12 sums over `pairs` k-pairs of one A sliver and one B sliver, into C (column-major,
   leading dimension ldc) as alpha * sums + beta * C (beta 0: C is not read), only its
   rows < rows and columns < cols. */
__attribute__((target("avx512f,avx512bf16")))
static void fastnn_micro(int pairs, const uint32_t *a, const uint32_t *b, float alpha, float beta,
                         float *C, long ldc, int rows, int cols) {
    __m512 sum[FASTNN_NR][2];
    for (int j = 0; j < FASTNN_NR; j++)
        sum[j][0] = sum[j][1] = _mm512_setzero_ps();
    for (int q = 0; q < pairs; q++) {
        __m512bh a0 = (__m512bh)_mm512_loadu_si512(a + q * FASTNN_MR);
        __m512bh a1 = (__m512bh)_mm512_loadu_si512(a + q * FASTNN_MR + 16);
        const uint32_t *bq = b + q * FASTNN_NR;
        for (int j = 0; j < FASTNN_NR; j++) {
            __m512bh bj = (__m512bh)_mm512_set1_epi32((int)bq[j]);
            sum[j][0] = _mm512_dpbf16_ps(sum[j][0], a0, bj);
            sum[j][1] = _mm512_dpbf16_ps(sum[j][1], a1, bj);
        }
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    __mmask16 m0 = rows >= 16 ? 0xffff : (__mmask16)((1u << rows) - 1);
    __mmask16 m1 = rows >= 32 ? 0xffff : rows <= 16 ? 0 : (__mmask16)((1u << (rows - 16)) - 1);
    for (int j = 0; j < cols; j++) {
        float *c = C + j * ldc;
        __m512 r0 = _mm512_mul_ps(va, sum[j][0]), r1 = _mm512_mul_ps(va, sum[j][1]);
        if (beta != 0.0f) {
            r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, c), r0);
            r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, c + 16), r1);
        }
        _mm512_mask_storeu_ps(c, m0, r0);
        _mm512_mask_storeu_ps(c + 16, m1, r1);
    }
}

/* Rows [i0, i1) and columns [j0, j1) of C = alpha op(A) op(B) + beta C, on one thread. */
static void fastnn_bf16_block(int ta, int tb, int i0, int i1, int j0, int j1, int k, float alpha,
                              const float *A, long lda, const float *B, long ldb, float beta,
                              float *C, long ldc, uint32_t *packed_a, uint32_t *packed_b) {
    /* op(A)(i, p) = A[i * as + p * ap]; op(B)(p, j) = B[p * bp + j * bs] */
    long as = ta ? lda : 1, ap = ta ? 1 : lda, bp = tb ? ldb : 1, bs = tb ? 1 : ldb;
    for (int jc = j0; jc < j1; jc += FASTNN_NC) {
        int nc = j1 - jc < FASTNN_NC ? j1 - jc : FASTNN_NC;
        for (int pc = 0; pc < k; pc += FASTNN_KC) {
            int kc = k - pc < FASTNN_KC ? k - pc : FASTNN_KC, pairs = (kc + 1) / 2;
            float block_beta = pc == 0 ? beta : 1.0f;
            fastnn_pack(B + jc * bs + pc * bp, bs, bp, nc, kc, FASTNN_NR, packed_b);
            for (int ic = i0; ic < i1; ic += FASTNN_MC) {
                int mc = i1 - ic < FASTNN_MC ? i1 - ic : FASTNN_MC;
                fastnn_pack(A + ic * as + pc * ap, as, ap, mc, kc, FASTNN_MR, packed_a);
                for (int jr = 0; jr < nc; jr += FASTNN_NR)
                    for (int ir = 0; ir < mc; ir += FASTNN_MR)
                        fastnn_micro(pairs, packed_a + (long)ir * pairs, packed_b + (long)jr * pairs,
                                     alpha, block_beta, C + (ic + ir) + (long)(jc + jr) * ldc, ldc,
                                     mc - ir < FASTNN_MR ? mc - ir : FASTNN_MR,
                                     nc - jr < FASTNN_NR ? nc - jr : FASTNN_NR);
            }
        }
    }
}

#define FASTNN_ROUND_UP(x, to) (((x) + (to) - 1) / (to) * (to))
#define FASTNN_MIN_THREADED_FLOPS 4000000L

static void fastnn_bf16_sgemm(char *transa, char *transb, int *m, int *n, int *k, float *alpha,
                              float *A, int *lda, float *B, int *ldb, float *beta, float *C, int *ldc) {
    int ta = *transa == 'T' || *transa == 't' || *transa == 'C' || *transa == 'c';
    int tb = *transb == 'T' || *transb == 't' || *transb == 'C' || *transb == 'c';
    int M = *m, N = *n, K = *k;
    if (M <= 0 || N <= 0)
        return;
    /* Threads split the longer side of C, so that the operand each of them packs whole
       is the smaller one; a call from inside a team (an engine thread's share) keeps one. */
    int threads = omp_in_parallel() || 2L * M * N * K < FASTNN_MIN_THREADED_FLOPS ? 1 : fastnn_bf16_threads;
    int by_rows = M >= N, side = by_rows ? M : N, unit = by_rows ? FASTNN_MR : FASTNN_NR;
    int share = FASTNN_ROUND_UP((side + threads - 1) / threads, unit);
    threads = (side + share - 1) / share;
    #pragma omp parallel num_threads(threads) if (threads > 1)
    {
        int t = omp_get_thread_num(), from = t * share, to = from + share < side ? from + share : side;
        int i0 = by_rows ? from : 0, i1 = by_rows ? to : M, j0 = by_rows ? 0 : from, j1 = by_rows ? N : to;
        /* each thread's packed blocks, as large as its part of C needs: nothing is kept
           between calls (teams nested in another are new threads at every call) */
        long pairs = ((K < FASTNN_KC ? K : FASTNN_KC) + 1) / 2;
        long a_words = FASTNN_ROUND_UP(i1 - i0 < FASTNN_MC ? i1 - i0 : FASTNN_MC, FASTNN_MR) * pairs;
        long b_words = FASTNN_ROUND_UP(j1 - j0 < FASTNN_NC ? j1 - j0 : FASTNN_NC, FASTNN_NR) * pairs;
        uint32_t *packed = malloc((size_t)(a_words + b_words) * 4);
        if (packed != NULL)
            fastnn_bf16_block(ta, tb, i0, i1, j0, j1, K, *alpha, A, *lda, B, *ldb, *beta, C, *ldc,
                              packed, packed + a_words);
        else  /* no memory to pack into: NaN, which stops training as a divergence does */
            for (long j = j0; j < j1; j++)
                for (long i = i0; i < i1; i++)
                    C[i + j * *ldc] = __builtin_nanf("");
        free(packed);
    }
}
