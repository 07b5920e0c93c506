/* The 1x1-convolution micro-kernel shared by ghostblock.c and dfcgate.c (each gets its own static
 * copy): pointwise(in1, p1, k1, in2, p2, k2, w, bias, cout, out, po, npix, relu) for NHWC pixel
 * rows whose input channels may come in two parts. */
#ifndef GHOSTDET_POINTWISE_H
#define GHOSTDET_POINTWISE_H
#include "kernels.h"

/* out[i, :] = act(bias + in1[i, :k1] W[:k1] + in2[i, :k2] W[k1:]) for npix pixels; in2 may be
 * NULL (k2 = 0). Pixels go 8 at a time (8 independent FMA chains hide the FMA latency, which 4
 * did not for the 8- and 4-wide vectors), output channels in 16/8/4-wide vectors. */
#define PW_BLOCK(VT, VI, VW)                                                                      \
    for (; VW <= GHOSTDET_VW && c + VW <= cout; c += VW) {                                         \
        const VT bv = LOADV(VT, bias + c);                                                           \
        int i = 0;                                                                                \
        for (; i + 8 <= npix; i += 8) {                                                           \
            VT acc[8] = {bv, bv, bv, bv, bv, bv, bv, bv};                                                         \
            for (int k = 0; k < k1; k++) {                                                        \
                const VT wv = LOADV(VT, w + (int64_t)k * cout + c);                                  \
                for (int j = 0; j < 8; j++) acc[j] += in1[(int64_t)(i + j) * p1 + k] * wv;        \
            }                                                                                     \
            for (int k = 0; k < k2; k++) {                                                        \
                const VT wv = LOADV(VT, w + (int64_t)(k1 + k) * cout + c);                           \
                for (int j = 0; j < 8; j++) acc[j] += in2[(int64_t)(i + j) * p2 + k] * wv;        \
            }                                                                                     \
            for (int j = 0; j < 8; j++) {                                                         \
                if (relu) RELUV(VI, acc[j]);                                                       \
                STOREV(VT, out + (int64_t)(i + j) * po + c, acc[j]);                                  \
            }                                                                                     \
        }                                                                                         \
        for (; i < npix; i++) {                                                                   \
            VT acc = bv;                                                                          \
            for (int k = 0; k < k1; k++) acc += in1[(int64_t)i * p1 + k] * LOADV(VT, w + (int64_t)k * cout + c); \
            for (int k = 0; k < k2; k++)                                                          \
                acc += in2[(int64_t)i * p2 + k] * LOADV(VT, w + (int64_t)(k1 + k) * cout + c);       \
            if (relu) RELUV(VI, acc);                                                              \
            STOREV(VT, out + (int64_t)i * po + c, acc);                                               \
        }                                                                                         \
    }

/* With 16 registers (AVX2), 2 channel vectors x 6 pixels: 12 accumulators, 2 weight vectors and
 * a broadcast input fit, and each input load feeds 2 FMAs (1 with PW_BLOCK's 8 pixels x 1 vector,
 * which leaves the loads, not the FMAs, the limit). Each output is the same sum in the same order
 * as in PW_BLOCK. */
#define PW_PAIR_ACC(VT, VW, NPX, IN, P, K0, KN)                                                    \
    for (int k = 0; k < (KN); k++) {                                                               \
        const float *wk = w + (int64_t)((K0) + k) * cout + c;                                      \
        const VT w0 = LOADV(VT, wk), w1 = LOADV(VT, wk + VW);                                      \
        for (int j = 0; j < NPX; j++) {                                                            \
            const float v = IN[(int64_t)(i + j) * (P) + k];                                        \
            a0[j] += v * w0;                                                                       \
            a1[j] += v * w1;                                                                       \
        }                                                                                          \
    }
#define PW_PAIR_STORE(VT, VI, VW, NPX)                                                             \
    for (int j = 0; j < NPX; j++) {                                                                \
        if (relu) {                                                                                \
            RELUV(VI, a0[j]);                                                                      \
            RELUV(VI, a1[j]);                                                                      \
        }                                                                                          \
        STOREV(VT, out + (int64_t)(i + j) * po + c, a0[j]);                                        \
        STOREV(VT, out + (int64_t)(i + j) * po + c + VW, a1[j]);                                   \
    }
#define PW_PAIR_TILE(VT, VI, VW, NPX)                                                              \
    {                                                                                              \
        VT a0[NPX], a1[NPX];                                                                       \
        for (int j = 0; j < NPX; j++) a0[j] = b0, a1[j] = b1;                                      \
        PW_PAIR_ACC(VT, VW, NPX, in1, p1, 0, k1)                                                   \
        PW_PAIR_ACC(VT, VW, NPX, in2, p2, k1, k2)                                                  \
        PW_PAIR_STORE(VT, VI, VW, NPX)                                                             \
    }
/* The pixels go in T = ceil(npix / 6) tiles of as even a size as fits (49 pixels: 4 x 6 + 5 x 5;
 * 320: 50 x 6 + 4 x 5), rather than tiles of 6 and one of what is left: a tile of 1-3 pixels has
 * too few accumulators to hide the FMA latency (each of its FMAs waits for the one before on the
 * same accumulator), so its K steps cost about as much as a full tile's. Tiles of 4-6 keep the
 * FMA units busy. The weight block is read once per tile either way (on small maps with wide
 * weights, e.g. 960 x 160 on a 3x3 map, those reads are the cost). */
#define PW_PAIR(VT, VI, VW, NPX)                                                                   \
    for (; c + 2 * VW <= cout; c += 2 * VW) {                                                      \
        const VT b0 = LOADV(VT, bias + c), b1 = LOADV(VT, bias + c + VW);                          \
        const int ntiles = (npix + NPX - 1) / NPX, size = ntiles ? npix / ntiles : 0;              \
        const int bigger = ntiles ? npix % ntiles : 0; /* the first `bigger` tiles: size + 1 */    \
        for (int t = 0, i = 0; t < ntiles; t++) {                                                  \
            switch (size + (t < bigger)) {                                                         \
            case 6: PW_PAIR_TILE(VT, VI, VW, 6) i += 6; break;                                     \
            case 5: PW_PAIR_TILE(VT, VI, VW, 5) i += 5; break;                                     \
            case 4: PW_PAIR_TILE(VT, VI, VW, 4) i += 4; break;                                     \
            case 3: PW_PAIR_TILE(VT, VI, VW, 3) i += 3; break;                                     \
            case 2: PW_PAIR_TILE(VT, VI, VW, 2) i += 2; break;                                     \
            default: PW_PAIR_TILE(VT, VI, VW, 1) i += 1; break;                                    \
            }                                                                                      \
        }                                                                                          \
    }

static inline void pointwise(const float *in1, int64_t p1, int k1, const float *in2, int64_t p2, int k2,
                      const float *w, const float *bias, int cout, float *out, int64_t po, int npix,
                      int relu) {
    int c = 0;
    PW_BLOCK(v16, vi16, 16)
#if GHOSTDET_VW == 8
    PW_PAIR(v8, vi8, 8, 6)
#endif
    PW_BLOCK(v8, vi8, 8)
    PW_BLOCK(v4, vi4, 4)
}

#endif
