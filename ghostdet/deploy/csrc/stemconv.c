/* Dense KxK convolution with few input channels (a network's stem on an RGB image), NHWC float32:
 *
 *   y[n, oy, ox, :] = act(bias + sum_{ci, ky, kx} x[n, oy*S-P+ky, ox*S-P+kx, ci] * w[(ci*K+ky)*K+kx, :])
 *
 * with zero padding P. Each output pixel is one short dot product per output-channel vector, so
 * the kernel keeps 8 pixels in flight (8 independent FMA chains) and broadcasts the input values;
 * columns whose taps leave the image take a bounds-checked path. Rows are split among OpenMP
 * threads. oneDNN's direct convolution for 3 input channels runs at a fraction of this. */
#include "kernels.h"

/* Pixels ox .. ox+NPX-1 of one output row, all taps inside the image columns. */
#define STEM_INTERIOR(VT, VI, NPX)                                                                  \
    {                                                                                               \
        VT acc[NPX];                                                                                \
        for (int j = 0; j < NPX; j++) acc[j] = bv;                                                  \
        for (int ky = ky0; ky < ky1; ky++) {                                                        \
            const float *xr = xn + ((int64_t)(oy * S - P + ky) * W + (int64_t)ox * S - P) * Cin;    \
            for (int ci = 0; ci < Cin; ci++)                                                        \
                for (int kx = 0; kx < K; kx++) {                                                    \
                    const VT wv = LOADV(VT, w + (int64_t)((ci * K + ky) * K + kx) * Cout + c);      \
                    for (int j = 0; j < NPX; j++)                                                   \
                        acc[j] += xr[(int64_t)(j * S + kx) * Cin + ci] * wv;                        \
                }                                                                                   \
        }                                                                                           \
        for (int j = 0; j < NPX; j++) {                                                             \
            if (relu) RELUV(VI, acc[j]);                                                            \
            STOREV(VT, yr + (int64_t)(ox + j) * Cout + c, acc[j]);                                  \
        }                                                                                           \
    }

#define STEM_BLOCK(VT, VI, VW)                                                                      \
    for (; VW <= GHOSTDET_VW && c + VW <= Cout; c += VW) {                                           \
        const VT bv = LOADV(VT, bias + c);                                                          \
        int ox = 0;                                                                                 \
        for (; ox < OW; ox++) { /* left border, and rows too narrow for an interior */              \
            if (ox >= ox_lo && ox < ox_hi) break;                                                   \
            STEM_EDGE(VT, VI)                                                                       \
        }                                                                                           \
        for (; ox + 8 <= ox_hi; ox += 8) STEM_INTERIOR(VT, VI, 8)                                   \
        for (; ox < ox_hi; ox++) STEM_INTERIOR(VT, VI, 1)                                           \
        for (; ox < OW; ox++) STEM_EDGE(VT, VI) /* right border */                                  \
    }

/* One pixel with bounds checks on the columns. */
#define STEM_EDGE(VT, VI)                                                                           \
    {                                                                                               \
        VT acc = bv;                                                                                \
        for (int ky = ky0; ky < ky1; ky++) {                                                        \
            const float *xr = xn + (int64_t)(oy * S - P + ky) * W * Cin;                            \
            for (int kx = 0; kx < K; kx++) {                                                        \
                const int ix = ox * S - P + kx;                                                     \
                if (ix < 0 || ix >= W) continue;                                                    \
                for (int ci = 0; ci < Cin; ci++)                                                    \
                    acc += xr[(int64_t)ix * Cin + ci] *                                             \
                           LOADV(VT, w + (int64_t)((ci * K + ky) * K + kx) * Cout + c);             \
            }                                                                                       \
        }                                                                                           \
        if (relu) RELUV(VI, acc);                                                                   \
        STOREV(VT, yr + (int64_t)ox * Cout + c, acc);                                               \
    }

static inline __attribute__((always_inline)) void stem_row(const float *xn, float *yr, int oy, int H, int W,
                                                           int Cin, const float *w, const float *bias,
                                                           int Cout, int K, int S, int P, int OW, int relu) {
    const int ky0 = oy * S - P < 0 ? P - oy * S : 0;
    const int ky1 = oy * S - P + K > H ? H - (oy * S - P) : K;
    /* interior columns: every tap inside [0, W) */
    const int ox_lo = (P + S - 1) / S;
    int ox_hi = W + P - K < 0 ? 0 : (W + P - K) / S + 1;
    if (ox_hi > OW) ox_hi = OW;
    if (ox_hi < ox_lo) ox_hi = ox_lo;
    int c = 0;
    STEM_BLOCK(v16, vi16, 16)
    STEM_BLOCK(v8, vi8, 8)
    STEM_BLOCK(v4, vi4, 4)
}

/* x: N x H x W x Cin dense; w: (Cin*K*K) x Cout (row (ci*K+ky)*K+kx); y: N x OH x OW x Cout dense.
 * Returns 0, or -1 when unsupported (Cout not a multiple of 4, or bad sizes). */
int ghostdet_stem_conv(const float *x, int N, int H, int W, int Cin, const float *w, const float *bias,
                       int Cout, int K, int S, int P, float *y, int OH, int OW, int relu, int nthreads) {
    if (Cout % 4 || Cin < 1 || K < 1 || S < 1 || P < 0 || P >= K || OH < 1 || OW < 1 || nthreads < 1) return -1;
    const int64_t rows = (int64_t)N * OH;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1 && rows > 1)
#endif
    for (int64_t t = 0; t < rows; t++) {
        const int n = (int)(t / OH), oy = (int)(t % OH);
        const float *xn = x + (int64_t)n * H * W * Cin;
        float *yr = y + t * OW * Cout;
        if (K == 3 && S == 2 && Cin == 3) /* the usual stem: constants let the tap loops unroll */
            stem_row(xn, yr, oy, H, W, 3, w, bias, Cout, 3, 2, P, OW, relu);
        else
            stem_row(xn, yr, oy, H, W, Cin, w, bias, Cout, K, S, P, OW, relu);
    }
    return 0;
}
