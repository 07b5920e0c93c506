/* Depthwise 2-D convolution for channels_last (NHWC) float32 tensors, used by ghostdet.deploy.
 *
 * Why it exists: a oneDNN convolution call has a fixed set-up cost of tens of microseconds, and
 * GhostNet runs ~40 depthwise convolutions on maps of 7x7 to 28x28 at 224x224 input, each only a
 * few microseconds of arithmetic. This kernel has no set-up: weights are pre-transposed once by
 * the caller into (K*K, C), the computation is vectorised across channels (contiguous in NHWC)
 * with GCC/Clang vector extensions, and rows are shared among OpenMP threads when the caller asks.
 *
 * Input and output are "pixel-major" with an explicit pixel pitch (floats between neighbouring
 * pixels), so either may be a channel slice of a wider NHWC tensor: the Ghost module writes its
 * cheap half straight into the second half of its output instead of concatenating.
 *
 * out[n, oy, ox, c] = act(bias[c] + sum_{ky,kx} in[n, oy*S-P+ky, ox*S-P+kx, c] * wt[ky*K+kx, c])
 * with zero padding; act is ReLU or identity. C must be a multiple of 4.
 */
#include "kernels.h"

/* Interior step: 4 neighbouring output pixels (all taps inside the image) of one channel
 * block, accumulated into acc[0..3] from the window rows starting at p0.
 * TAPS loads each tap's input vector for each pixel (K*K*4 loads).
 * REUSE loads, per kernel row, the 3*S+K input vectors the four pixels share once and feeds each
 * to up to K accumulators; it needs K*K weights + 3*S+K inputs + 4 accumulators in registers, so
 * it is used for K = 3 only (with K = 5 the spills cost more than the loads it saves). */
#define INTERIOR_TAPS(VT, K)                                                                      \
    for (int ky = 0; ky < (K); ky++) {                                                            \
        const float *pr = p0 + (int64_t)ky * W * ipitch;                                          \
        for (int kx = 0; kx < (K); kx++)                                                          \
            for (int j = 0; j < 4; j++)                                                           \
                acc[j] += LOADV(VT, pr + (int64_t)(j * S + kx) * ipitch) * w[ky * (K) + kx];      \
    }
#define INTERIOR_REUSE(VT, K)                                                                     \
    for (int ky = 0; ky < (K); ky++) {                                                            \
        const float *pr = p0 + (int64_t)ky * W * ipitch;                                          \
        VT v[3 * 2 + (K)];                                                                        \
        for (int i = 0; i < 3 * S + (K); i++) v[i] = LOADV(VT, pr + (int64_t)i * ipitch);         \
        for (int kx = 0; kx < (K); kx++)                                                          \
            for (int j = 0; j < 4; j++) acc[j] += v[j * S + kx] * w[ky * (K) + kx];               \
    }

/* With 8-float vectors (AVX2) the interior pixels left over after the groups of four (up to 3
 * a row: on a 7x7 or 20x20 map a tenth of the pixels) skip the bounds checks too; each output is
 * the same sum in the same order either way. Not measured with AVX-512, so off there. */
#define DW_LEFTOVERS_INTERIOR (GHOSTDET_VW < 16)

/* One channel block [c0, c0 + width of VT) of output rows [oy0, oy1) for a KxK kernel. The
 * stride is the constant SS, or the argument s when SS is 0. The block's K*K weight vectors
 * stay in registers (spilled for K = 7); interior pixels go four at a time through INTERIOR,
 * border pixels through bounds-checked taps. */
#define DEFINE_BLOCK(NAME, VT, VI, K, SS, INTERIOR)                                               \
    static void NAME(const float *in, int64_t ipitch, int H, int W, const float *wt, int C,       \
                     const float *bias, int s, int P, float *out, int64_t opitch, int OW,         \
                     int oy0, int oy1, int c0, int relu) {                                        \
        const int S = (SS) ? (SS) : s;                                                            \
        VT w[(K) * (K)];                                                                          \
        for (int t = 0; t < (K) * (K); t++) w[t] = LOADV(VT, wt + (int64_t)t * C + c0);           \
        const VT b = LOADV(VT, bias + c0);                                                        \
        /* output columns [oxa, oxb) have their whole window inside the row */                    \
        int oxa = (P + S - 1) / S, oxb = W - (K) + P < 0 ? 0 : (W - (K) + P) / S + 1;             \
        if (oxb > OW) oxb = OW;                                                                   \
        if (oxa > oxb) oxa = oxb;                                                                 \
        for (int oy = oy0; oy < oy1; oy++) {                                                      \
            const int iy0 = oy * S - P;                                                           \
            const int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = H - iy0 < (K) ? H - iy0 : (K);              \
            const float *irow = in + (int64_t)iy0 * W * ipitch + c0;                              \
            float *orow = out + (int64_t)oy * OW * opitch + c0;                                   \
            int lo = 0, hi = 0; /* [lo, hi): pixels done four at a time, no bounds checks */      \
            if (ky0 == 0 && ky1 == (K)) {                                                         \
                lo = oxa;                                                                         \
                hi = oxa + (oxb - oxa) / 4 * 4;                                                   \
                for (int ox = lo; ox < hi; ox += 4) {                                             \
                    VT acc[4] = {b, b, b, b};                                                     \
                    const float *p0 = irow + (int64_t)(ox * S - P) * ipitch;                      \
                    INTERIOR(VT, K)                                                               \
                    float *po = orow + (int64_t)ox * opitch;                                      \
                    for (int j = 0; j < 4; j++) {                                                 \
                        if (relu) RELUV(VI, acc[j]);                                              \
                        STOREV(VT, po + j * opitch, acc[j]);                                      \
                    }                                                                             \
                }                                                                                 \
                for (; DW_LEFTOVERS_INTERIOR && hi < oxb; hi++) { /* the last < 4, one by one */  \
                    VT acc = b;                                                                   \
                    const float *p0 = irow + (int64_t)(hi * S - P) * ipitch;                      \
                    for (int ky = 0; ky < (K); ky++)                                              \
                        for (int kx = 0; kx < (K); kx++)                                          \
                            acc += LOADV(VT, p0 + ((int64_t)ky * W + kx) * ipitch)                \
                                   * w[ky * (K) + kx];                                             \
                    if (relu) RELUV(VI, acc);                                                     \
                    STOREV(VT, orow + (int64_t)hi * opitch, acc);                                 \
                }                                                                                 \
            }                                                                                     \
            for (int ox = 0; ox < OW; ox++) { /* the rest, with bounds-checked taps */            \
                if (ox == lo && hi > lo) {                                                        \
                    ox = hi - 1;                                                                  \
                    continue;                                                                     \
                }                                                                                 \
                const int ix0 = ox * S - P;                                                       \
                const int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = W - ix0 < (K) ? W - ix0 : (K);          \
                VT acc = b;                                                                       \
                for (int ky = ky0; ky < ky1; ky++)                                                \
                    for (int kx = kx0; kx < kx1; kx++)                                            \
                        acc += LOADV(VT, irow + ((int64_t)ky * W + ix0 + kx) * ipitch)            \
                               * w[ky * (K) + kx];                                                \
                if (relu) RELUV(VI, acc);                                                         \
                STOREV(VT, orow + (int64_t)ox * opitch, acc);                                     \
            }                                                                                     \
        }                                                                                         \
    }

/* All channel blocks (16, then 8, then 4 wide, up to GHOSTDET_VW) of rows [oy0, oy1). */
#define DEFINE_ROWS(SUFFIX, K, SS, INTERIOR)                                                      \
    DEFINE_BLOCK(block16_##SUFFIX, v16, vi16, K, SS, INTERIOR)                                    \
    DEFINE_BLOCK(block8_##SUFFIX, v8, vi8, K, SS, INTERIOR)                                       \
    DEFINE_BLOCK(block4_##SUFFIX, v4, vi4, K, SS, INTERIOR)                                       \
    static void rows_##SUFFIX(const float *in, int64_t ip, int H, int W, const float *wt, int C,  \
                              const float *bias, int S, int P, float *out, int64_t op, int OW,    \
                              int oy0, int oy1, int relu) {                                       \
        int c = 0;                                                                                \
        for (; GHOSTDET_VW >= 16 && c + 16 <= C; c += 16)                                          \
            block16_##SUFFIX(in, ip, H, W, wt, C, bias, S, P, out, op, OW, oy0, oy1, c, relu);    \
        for (; GHOSTDET_VW >= 8 && c + 8 <= C; c += 8)                                             \
            block8_##SUFFIX(in, ip, H, W, wt, C, bias, S, P, out, op, OW, oy0, oy1, c, relu);     \
        for (; c + 4 <= C; c += 4)                                                                \
            block4_##SUFFIX(in, ip, H, W, wt, C, bias, S, P, out, op, OW, oy0, oy1, c, relu);     \
    }

DEFINE_ROWS(k3_s1, 3, 1, INTERIOR_REUSE)
DEFINE_ROWS(k3_s2, 3, 2, INTERIOR_REUSE)
DEFINE_ROWS(k5, 5, 0, INTERIOR_TAPS)
DEFINE_ROWS(k7, 7, 0, INTERIOR_TAPS)

typedef void (*rows_fn)(const float *, int64_t, int, int, const float *, int, const float *, int,
                        int, float *, int64_t, int, int, int, int);

int ghostdet_abi(void) { return GHOSTDET_ABI; } /* once for the library (see kernels.h) */

/* Returns 0 on success, -1 for an unsupported configuration (nothing is written then). */
int ghostdet_dwconv2d(const float *in, int64_t in_pitch, int N, int H, int W, int C,
                      const float *wt, const float *bias, int K, int S, int P, float *out,
                      int64_t out_pitch, int OH, int OW, int relu, int nthreads) {
    rows_fn rows = K == 3 ? (S == 1 ? rows_k3_s1 : S == 2 ? rows_k3_s2 : 0)
                 : K == 5 ? rows_k5
                 : K == 7 ? rows_k7
                          : 0;
    if (!rows || C % 4 != 0 || S < 1 || P < 0 || P >= K || in_pitch < C || out_pitch < C ||
        OH != conv_out_size(H, K, S, P) || OW != conv_out_size(W, K, S, P))
        return -1;
    const int RB = 4; /* output rows per task */
    const int64_t per_img = (OH + RB - 1) / RB, total = (int64_t)N * per_img;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static) if (nthreads > 1 && total > 1)
#endif
    for (int64_t r = 0; r < total; r++) {
        const int n = (int)(r / per_img), oy0 = (int)(r % per_img) * RB;
        const int oy1 = oy0 + RB < OH ? oy0 + RB : OH;
        rows(in + (int64_t)n * H * W * in_pitch, in_pitch, H, W, wt, C, bias, S, P,
             out + (int64_t)n * OH * OW * out_pitch, out_pitch, OW, oy0, oy1, relu);
    }
    (void)nthreads;
    return 0;
}
