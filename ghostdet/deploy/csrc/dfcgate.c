/* The DFC attention gate of GhostNetV2/V3 in one call, NHWC float32, used by ghostdet.deploy:
 *
 *   q = avg_pool_2x2(x)          Cin channels at Hg x Wg = floor(H / 2) x floor(W / 2)
 *   s = q Wp + bp                C channels (the 1x1 projection, BatchNorm folded)
 *   h = dw_1x5(s) + bh           along the width, zero padding 2
 *   v = dw_5x1(h) + bv           along the height, zero padding 2
 *   g = sigmoid(v)
 *
 * Why it exists: the gate works at a quarter of the pixels, so on GhostNet's small maps each of
 * its five torch ops (pool, GEMM, two oneDNN depthwise calls, sigmoid) is mostly fixed per-call
 * cost: at 224x224 input the gates took about as long as the rest of their bottlenecks. Here
 * they are one call; the caller upsamples g into ghost1's output (ghostdet_gate_mul, or the
 * fused front kernel in ghostblock.c). Each stage is a loop over gate rows shared among the
 * threads. The sigmoid uses a vectorised exp (range reduction to [-ln2/2, ln2/2] and a degree-7
 * polynomial, relative error ~1e-7). */
#include "kernels.h"
#include "pointwise.h"

#define DFC_K 5 /* the 1xK / Kx1 kernels */
#define PROJ_CHUNK 48 /* pooled pixels per projection task (a multiple of the micro-kernel's 6 and 8) */

/* Bitwise select for vectors: lanes of a where the mask m is set, else of b. */
#define SELECTV(VI, m, a, b) ((__typeof__(a))(((VI)(a) & (m)) | ((VI)(b) & ~(m))))

/* 1 / (1 + exp(-v)) lane by lane; NaN stays NaN. */
#define DEFINE_SIGMOID(NAME, VT, VI)                                                              \
    static inline VT NAME(VT v) {                                                                 \
        const VT one = (VT){0} + 1.0f, hi = (VT){0} + 88.0f, lo = (VT){0} - 87.0f;                 \
        VT x = -v;                                                                                \
        x = SELECTV(VI, x > hi, hi, x);                                                           \
        x = SELECTV(VI, x < lo, lo, x);                                                           \
        const VT magic = (VT){0} + 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */  \
        const VT n = (x * 1.44269504088896341f + magic) - magic;                                  \
        const VT r = x - n * 0.693359375f - n * -2.12194440e-4f;                                  \
        VT p = (VT){0} + 1.9875691500e-4f;                                                        \
        p = p * r + 1.3981999507e-3f;                                                             \
        p = p * r + 8.3334519073e-3f;                                                             \
        p = p * r + 4.1665795894e-2f;                                                             \
        p = p * r + 1.6666665459e-1f;                                                             \
        p = p * r + 5.0000001201e-1f;                                                             \
        p = p * r * r + r + one;                                                                  \
        const VI e = (__builtin_convertvector(n, VI) + 127) << 23; /* 2^n */                      \
        return one / (one + p * (VT)e);                                                           \
    }
#if GHOSTDET_VW >= 16
DEFINE_SIGMOID(sigmoid16, v16, vi16)
#else
#define sigmoid16(v) (v) /* never used: blocks wider than GHOSTDET_VW are skipped */
#endif
#if GHOSTDET_VW >= 8
DEFINE_SIGMOID(sigmoid8, v8, vi8)
#else
#define sigmoid8(v) (v)
#endif
DEFINE_SIGMOID(sigmoid4, v4, vi4)

/* One gate row's pooled input (Wg pixels of Cin floats) from image rows 2y, 2y + 1. */
static void pool_row(const float *r0, const float *r1, int Wg, int Cin, float *q) {
    for (int px = 0; px < Wg; px++) {
        const float *a = r0 + (int64_t)2 * px * Cin, *b = r1 + (int64_t)2 * px * Cin;
        float *o = q + (int64_t)px * Cin;
        for (int c = 0; c < Cin; c++) o[c] = (a[c] + a[Cin + c] + b[c] + b[Cin + c]) * 0.25f;
    }
}

/* dst[i] = bias + sum_k src[i + k - 2] * w[k] over the taps inside [0, len), for positions
 * i0 <= i < i1, `step` floats apart along one axis (a row: step C; a column: step Wg * C), each position
 * `count` pixels of C floats (a whole gate row when the axis is the height, so the loops read
 * memory in order). With `sig`, dst = sigmoid of that. Interior positions take all five taps
 * without bounds. */
#define TAP_BLOCK(VT, VW, SIG, K0, K1)                                                             \
    for (; VW <= GHOSTDET_VW && c + VW <= C; c += VW) {                                            \
        VT acc = LOADV(VT, bias + c);                                                             \
        for (int k = (K0); k < (K1); k++)                                                         \
            acc += LOADV(VT, p + (int64_t)(k - 2) * step + c) * LOADV(VT, w + (int64_t)k * C + c); \
        STOREV(VT, d + c, sig ? SIG(acc) : acc);                                                  \
    }
#define TAP_PIXEL(K0, K1)                                                                         \
    do {                                                                                          \
        int c = 0;                                                                                \
        TAP_BLOCK(v16, 16, sigmoid16, K0, K1)                                                     \
        TAP_BLOCK(v8, 8, sigmoid8, K0, K1)                                                        \
        TAP_BLOCK(v4, 4, sigmoid4, K0, K1)                                                        \
    } while (0)

static void taps_line(const float *src, int64_t step, int len, int i0, int i1, int count, int C,
                      const float *w, const float *bias, float *dst, int sig) {
    for (int i = i0; i < i1; i++)
        for (int j = 0; j < count; j++) {
            const float *p = src + (int64_t)i * step + (int64_t)j * C;
            float *d = dst + (int64_t)i * step + (int64_t)j * C;
            if (i >= 2 && i + 2 < len) {
                TAP_PIXEL(0, DFC_K);
            } else {
                const int k0 = i < 2 ? 2 - i : 0, k1 = len - i + 2 < DFC_K ? len - i + 2 : DFC_K;
                TAP_PIXEL(k0, k1);
            }
        }
}

/* Floats of scratch the call needs (shared by its threads). */
int64_t ghostdet_dfc_gate_scratch(int N, int H, int W, int Cin, int C) {
    return (int64_t)N * (H / 2) * (W / 2) * (Cin + 2 * (int64_t)C);
}

/* x: N x H x W x Cin dense; wpt: Cin x C (in, out); wh, wv: 5 x C taps-major; g: the gate,
 * N x Hg x Wg x C dense. Returns 0, or -1 when unsupported (nothing written then). */
int ghostdet_dfc_gate(const float *x, int N, int H, int W, int Cin, int C, const float *wpt, const float *bp,
                      const float *wh, const float *bh, const float *wv, const float *bv, float *g,
                      float *scratch, int nthreads) {
    const int Hg = H / 2, Wg = W / 2;
    if (Hg < 1 || Wg < 1 || Cin < 1 || C % 4 || C < 4 || nthreads < 1) return -1;
    const int64_t rows = (int64_t)N * Hg, plane = (int64_t)Hg * Wg * C, npix = rows * Wg;
    float *q = scratch, *s = q + rows * Wg * Cin, *h = s + rows * Wg * C;
#ifdef _OPENMP
#pragma omp parallel num_threads(nthreads) if (nthreads > 1 && rows > 1)
#endif
    {
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t r = 0; r < rows; r++) {
            const int n = (int)(r / Hg), y = (int)(r % Hg);
            const float *x0 = x + ((int64_t)n * H + 2 * y) * W * Cin;
            pool_row(x0, x0 + (int64_t)W * Cin, Wg, Cin, q + r * Wg * Cin);
        }
        /* the projection over all pooled pixels at once, in chunks: each pass of the micro-kernel
         * over the weight serves a whole pixel tile (a row at a time, a 3x3 map read it per pixel) */
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t i = 0; i < npix; i += PROJ_CHUNK) {
            const int m = npix - i < PROJ_CHUNK ? (int)(npix - i) : PROJ_CHUNK;
            pointwise(q + i * Cin, Cin, Cin, 0, 0, 0, wpt, bp, C, s + i * C, C, m, 0);
        }
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t r = 0; r < rows; r++) taps_line(s + r * Wg * C, C, Wg, 0, Wg, 1, C, wh, bh, h + r * Wg * C, 0);
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t r = 0; r < rows; r++) { /* gate row y of image n: the vertical taps, whole row */
            const int64_t off = r / Hg * plane;
            const int y = (int)(r % Hg);
            taps_line(h + off, (int64_t)Wg * C, Hg, y, y + 1, Wg, C, wv, bv, g + off, 1);
        }
    }
    return 0;
}
