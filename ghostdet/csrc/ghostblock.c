/* Fused stride-1 Ghost bottleneck without SE and with an identity shortcut, NHWC float32.
 *
 *   a = relu(x W1 + b1)            M1 channels      (ghost1 primary, 1x1)
 *   b = relu(dw3(a) + d1)          M1 channels      (ghost1 cheap, 3x3 depthwise)
 *   p = [a b] W2 + b2              M2 channels      (ghost2 primary, 1x1)
 *   c = dw3(p) + d2                M2 channels      (ghost2 cheap, 3x3 depthwise)
 *   y = [p c] + x                  C = 2 * M2 channels
 *
 * Rows are processed in bands; a band's a, b and p rows (with the halo the 3x3 convs need) live
 * in per-thread scratch that stays in cache, so only x is read and y written. The caller
 * provides the scratch (ghostdet_ghost_block_scratch floats per thread), so nothing is allocated
 * here. */
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

typedef float f16v __attribute__((vector_size(64)));
typedef float f8v __attribute__((vector_size(32)));
typedef float f4v __attribute__((vector_size(16)));
typedef int32_t i16v __attribute__((vector_size(64)));
typedef int32_t i8v __attribute__((vector_size(32)));
typedef int32_t i4v __attribute__((vector_size(16)));
#define LD(VT, p) ({ VT v_; memcpy(&v_, (p), sizeof(VT)); v_; })
#define ST(VT, p, v) do { VT s_ = (v); memcpy((p), &s_, sizeof(VT)); } while (0)
#define RELU(VI, a) do { a = (__typeof__(a))((VI)(a) & ~(VI)((a) <= (__typeof__(a)){0})); } while (0)

/* out[i, :] = act(bias + in1[i, :k1] W[:k1] + in2[i, :k2] W[k1:]) for npix pixels; in2 may be
 * NULL (k2 = 0). Pixels go 4 at a time, output channels in 16/8/4-wide vectors. */
#define PW_BLOCK(VT, VI, VW)                                                                      \
    for (; c + VW <= cout; c += VW) {                                                             \
        const VT bv = LD(VT, bias + c);                                                           \
        int i = 0;                                                                                \
        for (; i + 4 <= npix; i += 4) {                                                           \
            VT acc[4] = {bv, bv, bv, bv};                                                         \
            for (int k = 0; k < k1; k++) {                                                        \
                const VT wv = LD(VT, w + (int64_t)k * cout + c);                                  \
                for (int j = 0; j < 4; j++) acc[j] += in1[(int64_t)(i + j) * p1 + k] * wv;        \
            }                                                                                     \
            for (int k = 0; k < k2; k++) {                                                        \
                const VT wv = LD(VT, w + (int64_t)(k1 + k) * cout + c);                           \
                for (int j = 0; j < 4; j++) acc[j] += in2[(int64_t)(i + j) * p2 + k] * wv;        \
            }                                                                                     \
            for (int j = 0; j < 4; j++) {                                                         \
                if (relu) RELU(VI, acc[j]);                                                       \
                ST(VT, out + (int64_t)(i + j) * po + c, acc[j]);                                  \
            }                                                                                     \
        }                                                                                         \
        for (; i < npix; i++) {                                                                   \
            VT acc = bv;                                                                          \
            for (int k = 0; k < k1; k++) acc += in1[(int64_t)i * p1 + k] * LD(VT, w + (int64_t)k * cout + c); \
            for (int k = 0; k < k2; k++)                                                          \
                acc += in2[(int64_t)i * p2 + k] * LD(VT, w + (int64_t)(k1 + k) * cout + c);       \
            if (relu) RELU(VI, acc);                                                              \
            ST(VT, out + (int64_t)i * po + c, acc);                                               \
        }                                                                                         \
    }

static void pointwise(const float *in1, int64_t p1, int k1, const float *in2, int64_t p2, int k2,
                      const float *w, const float *bias, int cout, float *out, int64_t po, int npix,
                      int relu) {
    int c = 0;
    PW_BLOCK(f16v, i16v, 16)
    PW_BLOCK(f8v, i8v, 8)
    PW_BLOCK(f4v, i4v, 4)
}

/* 3x3 depthwise over a scratch band whose rows have a zero column on each side (row length
 * W + 2): out row r = rows r..r+2 of src, no bounds checks. Optional residual add and ReLU. */
#define DW_BLOCK(VT, VI, VW)                                                                      \
    for (; c + VW <= C; c += VW) {                                                                \
        VT wk[9];                                                                                 \
        for (int t = 0; t < 9; t++) wk[t] = LD(VT, wt + t * C + c);                               \
        const VT bv = LD(VT, bias + c);                                                           \
        for (int r = 0; r < rows; r++) {                                                          \
            const float *s0 = src + (int64_t)r * (W + 2) * C + c;                                 \
            for (int x = 0; x < W; x++) {                                                         \
                VT acc = bv;                                                                      \
                for (int ky = 0; ky < 3; ky++)                                                    \
                    for (int kx = 0; kx < 3; kx++)                                                \
                        acc += LD(VT, s0 + ((int64_t)ky * (W + 2) + x + kx) * C) * wk[ky * 3 + kx]; \
                if (res) acc += LD(VT, res + ((int64_t)r * W + x) * rpitch + c);                  \
                if (relu) RELU(VI, acc);                                                          \
                ST(VT, dst + ((int64_t)r * dstride + x) * dpitch + c, acc);                       \
            }                                                                                     \
        }                                                                                         \
    }

static void dw3_band(const float *src, int rows, int W, int C, const float *wt, const float *bias,
                     float *dst, int64_t dstride, int64_t dpitch, const float *res, int64_t rpitch,
                     int relu) {
    int c = 0;
    DW_BLOCK(f16v, i16v, 16)
    DW_BLOCK(f8v, i8v, 8)
    DW_BLOCK(f4v, i4v, 4)
}

int ghostdet_ghost_block_abi(void) { return 1; }

/* Floats of scratch one thread needs for bands of `band` rows. */
int64_t ghostdet_ghost_block_scratch(int W, int M1, int M2, int band) {
    return (int64_t)(W + 2) * ((int64_t)(2 * band + 6) * M1 + (int64_t)(band + 2) * M2);
}

/* x, y: N x H x W x C dense NHWC (C = 2 * M2). w1t: C x M1, d1: 9 x M1, w2t: 2*M1 x M2,
 * d2: 9 x M2 (taps-major). scratch: nthreads * ghostdet_ghost_block_scratch(W, M1, M2, band)
 * floats, any content. Returns 0, or -1 when unsupported. */
int ghostdet_ghost_block_s1(const float *x, float *y, int N, int H, int W, int C, int M1, int M2,
                            const float *w1t, const float *b1, const float *d1, const float *bd1,
                            const float *w2t, const float *b2, const float *d2, const float *bd2,
                            int band, float *scratch, int nthreads) {
    if (C != 2 * M2 || M1 % 4 || M2 % 4 || band < 1 || nthreads < 1) return -1;
    const int64_t per_img = (H + band - 1) / band, total = (int64_t)N * per_img;
    const int64_t Wp = W + 2, per_thread = ghostdet_ghost_block_scratch(W, M1, M2, band);
#ifdef _OPENMP
#pragma omp parallel num_threads(nthreads) if (nthreads > 1 && total > 1)
#endif
    {
#ifdef _OPENMP
        const int tid = omp_get_thread_num();
#else
        const int tid = 0;
#endif
        /* A (band+4 rows), B (band+2 rows), P (band+2 rows), each row W + 2 pixels with a zero
         * pixel on both sides; zeroed once, the pad pixels are never written afterwards */
        float *A = scratch + tid * per_thread;
        float *B = A + (int64_t)(band + 4) * Wp * M1;
        float *Pb = B + (int64_t)(band + 2) * Wp * M1;
        memset(A, 0, sizeof(float) * per_thread);
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t t = 0; t < total; t++) {
            const int n = (int)(t / per_img), y0 = (int)(t % per_img) * band;
            const int y1 = y0 + band < H ? y0 + band : H, R = y1 - y0;
            const float *xn = x + (int64_t)n * H * W * C;
            float *yn = y + (int64_t)n * H * W * C;
            /* a rows y0-2 .. y1+1 (zero outside the image); interior columns 1..W */
            for (int r = 0; r < R + 4; r++) {
                const int iy = y0 - 2 + r;
                float *row = A + (int64_t)r * Wp * M1;
                if (iy < 0 || iy >= H) {
                    memset(row, 0, sizeof(float) * Wp * M1);
                    continue;
                }
                pointwise(xn + (int64_t)iy * W * C, C, C, NULL, 0, 0, w1t, b1, M1, row + M1, M1, W, 1);
            }
            /* b rows y0-1 .. y1 from a; rows outside the image are not needed as b (p is zero) */
            dw3_band(A, R + 2, W, M1, d1, bd1, B + M1, Wp, M1, NULL, 0, 1);
            /* p rows y0-1 .. y1 (zero outside the image) */
            for (int r = 0; r < R + 2; r++) {
                const int iy = y0 - 1 + r;
                float *row = Pb + (int64_t)r * Wp * M2;
                if (iy < 0 || iy >= H) {
                    memset(row, 0, sizeof(float) * Wp * M2);
                    continue;
                }
                pointwise(A + ((int64_t)(r + 1) * Wp + 1) * M1, M1, M1, B + ((int64_t)r * Wp + 1) * M1,
                          M1, M1, w2t, b2, M2, row + M2, M2, W, 0);
            }
            /* y first half: p + x[:, :M2]; second half: dw3(p) + d2 + x[:, M2:] */
            for (int r = 0; r < R; r++) {
                const float *prow = Pb + ((int64_t)(r + 1) * Wp + 1) * M2;
                const float *xrow = xn + (int64_t)(y0 + r) * W * C;
                float *yrow = yn + (int64_t)(y0 + r) * W * C;
                for (int px = 0; px < W; px++)
                    for (int c = 0; c < M2; c++)
                        yrow[(int64_t)px * C + c] = prow[(int64_t)px * M2 + c] + xrow[(int64_t)px * C + c];
            }
            dw3_band(Pb, R, W, M2, d2, bd2, yn + (int64_t)y0 * W * C + M2, W, C, xn + (int64_t)y0 * W * C + M2,
                     C, 0);
        }
    }
    return 0;
}
