/* Fused Ghost bottlenecks, NHWC float32, used by ghostdet.deploy for the memory-bound blocks on
 * large maps. ghostdet_ghost_block_s1 (no SE, identity shortcut) computes
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
 * here. ghostdet_ghost_block_s2 (below) is the stride-2 form with a strided depthwise conv
 * between the Ghost modules and a shortcut computed by the caller; ghostdet_ghost_front and
 * ghostdet_ghost_back split a block with SE into two calls around the gate. A thread doing
 * consecutive bands moves the rows they share instead of computing them twice. */
#include "kernels.h"
#include "pointwise.h"
#include "gate.h"
#ifdef _OPENMP
#include <omp.h>
#endif

static inline int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* KxK depthwise with stride S over rows held in scratch (no bounds checks: the caller points src
 * at the top-left tap of output (0, 0) and provides zero padding). src: srow pixels per row,
 * sp floats per pixel; out row r, column x reads src rows S*r.., columns S*x..; optional residual
 * res (rrow pixels per row, rp floats per pixel) and ReLU. */
#define DW_BLOCK(VT, VI, VW)                                                                      \
    for (; VW <= GHOSTDET_VW && c + VW <= C; c += VW) {                                            \
        VT wk[25];                                                                                \
        for (int t = 0; t < K * K; t++) wk[t] = LOADV(VT, wt + t * C + c);                           \
        const VT bv = LOADV(VT, bias + c);                                                           \
        for (int r = 0; r < rows; r++) {                                                          \
            const float *s0 = src + (int64_t)r * S * srow * sp + c;                               \
            for (int x = 0; x < W; x++) {                                                         \
                VT acc = bv;                                                                      \
                for (int ky = 0; ky < K; ky++)                                                    \
                    for (int kx = 0; kx < K; kx++)                                                \
                        acc += LOADV(VT, s0 + ((int64_t)ky * srow + S * x + kx) * sp) * wk[ky * K + kx]; \
                if (res) acc += LOADV(VT, res + ((int64_t)r * rrow + x) * rp + c);                   \
                if (relu) RELUV(VI, acc);                                                          \
                STOREV(VT, dst + ((int64_t)r * drow + x) * dp + c, acc);                              \
            }                                                                                     \
        }                                                                                         \
    }

static inline __attribute__((always_inline)) void dw_band(
    const float *src, int64_t srow, int64_t sp, int rows, int W, int C, int K, int S,
    const float *wt, const float *bias, float *dst, int64_t drow, int64_t dp, const float *res,
    int64_t rrow, int64_t rp, int relu) {
    int c = 0;
    DW_BLOCK(v16, vi16, 16)
    DW_BLOCK(v8, vi8, 8)
    DW_BLOCK(v4, vi4, 4)
}

/* The specialisations the blocks use (K and S constant, so the tap loops unroll). */
static void dw3_s1(const float *src, int64_t srow, int64_t sp, int rows, int W, int C, const float *wt,
                   const float *bias, float *dst, int64_t drow, int64_t dp, const float *res,
                   int64_t rrow, int64_t rp, int relu) {
    dw_band(src, srow, sp, rows, W, C, 3, 1, wt, bias, dst, drow, dp, res, rrow, rp, relu);
}
static void dw3_s2(const float *src, int64_t srow, int64_t sp, int rows, int W, int C, const float *wt,
                   const float *bias, float *dst, int64_t drow, int64_t dp) {
    dw_band(src, srow, sp, rows, W, C, 3, 2, wt, bias, dst, drow, dp, 0, 0, 0, 0);
}
static void dw5_s2(const float *src, int64_t srow, int64_t sp, int rows, int W, int C, const float *wt,
                   const float *bias, float *dst, int64_t drow, int64_t dp) {
    dw_band(src, srow, sp, rows, W, C, 5, 2, wt, bias, dst, drow, dp, 0, 0, 0, 0);
}

/* The blocks' last step for output rows [0, R): y = [p, dw3(p) + d2] + res. P holds p rows
 * -1 .. R with one zero pixel each side (W + 2 pixels of M2 floats); y and res have 2 * M2
 * floats per pixel and W pixels per row. */
static void ghost2_output(const float *P, int R, int W, int M2, const float *d2, const float *bd2,
                          const float *res, float *y) {
    const int64_t C = 2 * M2;
    for (int r = 0; r < R; r++) {
        const float *prow = P + ((int64_t)(r + 1) * (W + 2) + 1) * M2;
        const float *rrow = res + (int64_t)r * W * C;
        float *yrow = y + (int64_t)r * W * C;
        for (int px = 0; px < W; px++)
            for (int c = 0; c < M2; c++) yrow[px * C + c] = prow[(int64_t)px * M2 + c] + rrow[px * C + c];
    }
    dw3_s1(P, W + 2, M2, R, W, M2, d2, bd2, y + M2, W, C, res + M2, W, C, 0);
}

/* Task t of a kernel's band loop: image n, first row y0 and height R of the band, and whether
 * this thread did the band just above (a full one: only an image's last band is short, and the
 * band after it is in the next image), so the rows the two share may be moved instead of
 * computed again. *prev is the task this thread did last (start it at -2). */
typedef struct {
    int n, y0, R, reuse;
} band_task;

static inline band_task next_band(int64_t t, int64_t per_img, int band, int rows, int64_t *prev) {
    band_task bt;
    bt.n = (int)(t / per_img);
    bt.y0 = (int)(t % per_img) * band;
    bt.R = bt.y0 + band < rows ? band : rows - bt.y0;
    bt.reuse = t == *prev + 1 && bt.y0 > 0;
    *prev = t;
    return bt;
}

/* Floats of scratch one thread needs for bands of `band` rows (with a DFC gate: and a gated
 * copy of the band's a rows, since the band below computes its b rows from the ungated ones). */
int64_t ghostdet_ghost_block_scratch(int W, int M1, int M2, int band, int gated) {
    return (int64_t)(W + 2) * ((int64_t)(2 * band + 6 + (gated ? band + 2 : 0)) * M1 + (int64_t)(band + 2) * M2);
}

/* x, y: N x H x W x C dense NHWC (C = 2 * M2). w1t: C x M1, d1: 9 x M1, w2t: 2*M1 x M2,
 * d2: 9 x M2 (taps-major). g: NULL, or a DFC gate on ghost1's output [a b] (see dfc_gate), applied
 * before ghost2. scratch: nthreads * ghostdet_ghost_block_scratch(W, M1, M2, band, g != NULL)
 * floats, any content. Returns 0, or -1 when unsupported. */
int ghostdet_ghost_block_s1(const float *x, float *y, int N, int H, int W, int C, int M1, int M2,
                            const float *w1t, const float *b1, const float *d1, const float *bd1,
                            const float *w2t, const float *b2, const float *d2, const float *bd2,
                            const float *g, int Hg, int Wg, const int32_t *gy, const int32_t *gx,
                            int band, float *scratch, int nthreads) {
    const dfc_gate gt = {g, Hg, Wg, gy, gx, 2 * (int64_t)M1};
    if (C != 2 * M2 || M1 % 4 || M2 % 4 || band < 1 || nthreads < 1 || !gate_fits(&gt, H, W)) return -1;
    const int64_t per_img = (H + band - 1) / band, total = (int64_t)N * per_img;
    const int64_t Wp = W + 2, per_thread = ghostdet_ghost_block_scratch(W, M1, M2, band, g != NULL);
#ifdef _OPENMP
#pragma omp parallel num_threads(nthreads) if (nthreads > 1 && total > 1)
#endif
    {
        const int tid = thread_id();
        /* A (band+4 rows), B (band+2 rows), P (band+2 rows), each row W + 2 pixels with a zero
         * pixel on both sides; zeroed once, the pad pixels are never written afterwards */
        float *A = scratch + tid * per_thread;
        float *B = A + (int64_t)(band + 4) * Wp * M1;
        float *Pb = B + (int64_t)(band + 2) * Wp * M1;
        float *GA = Pb + (int64_t)(band + 2) * Wp * M2; /* gated a rows 1 .. R+2 (with a gate) */
        memset(A, 0, sizeof(float) * per_thread);
        int64_t prev = -2; /* the band this thread did last */
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t t = 0; t < total; t++) {
            const band_task bt = next_band(t, per_img, band, H, &prev);
            const int n = bt.n, y0 = bt.y0, R = bt.R, reuse = bt.reuse;
            const float *xn = x + (int64_t)n * H * W * C;
            float *yn = y + (int64_t)n * H * W * C;
            /* reuse: the band above's last 4 a rows and last 2 p rows are this band's first ones
             * (b and p rows r0.. are computed; b rows 0, 1 would only feed p rows 0, 1) */
            if (reuse) {
                memmove(A, A + (int64_t)band * Wp * M1, sizeof(float) * 4 * Wp * M1);
                memmove(Pb, Pb + (int64_t)band * Wp * M2, sizeof(float) * 2 * Wp * M2);
            }
            const int r0 = reuse ? 2 : 0; /* first b and p row to compute (a: r0 + 2) */
            /* a rows y0-2 .. y0+R+1 (zero outside the image); interior columns 1..W */
            for (int r = reuse ? 4 : 0; r < R + 4; r++) {
                const int iy = y0 - 2 + r;
                float *row = A + (int64_t)r * Wp * M1;
                if (iy < 0 || iy >= H) {
                    memset(row, 0, sizeof(float) * Wp * M1);
                    continue;
                }
                pointwise(xn + (int64_t)iy * W * C, C, C, NULL, 0, 0, w1t, b1, M1, row + M1, M1, W, 1);
            }
            /* b rows y0-1 .. y0+R from a; rows outside the image are not needed as b (p is zero) */
            dw3_s1(A + (int64_t)r0 * Wp * M1, Wp, M1, R + 2 - r0, W, M1, d1, bd1, B + ((int64_t)r0 * Wp + 1) * M1,
                   Wp, M1, NULL, 0, 0, 1);
            /* p rows y0-1 .. y0+R (zero outside the image) from g * [a b] */
            for (int r = r0; r < R + 2; r++) {
                const int iy = y0 - 1 + r;
                float *row = Pb + (int64_t)r * Wp * M2;
                if (iy < 0 || iy >= H) {
                    memset(row, 0, sizeof(float) * Wp * M2);
                    continue;
                }
                const float *arow = A + ((int64_t)(r + 1) * Wp + 1) * M1;
                float *brow = B + ((int64_t)r * Wp + 1) * M1;
                if (g) { /* b in place (this band's own rows), a into its copy */
                    const float *grow = gate_row_of(&gt, n, iy);
                    float *garow = GA + ((int64_t)r * Wp + 1) * M1;
                    gate_row(arow, garow, M1, W, M1, grow, 2 * M1, gx);
                    gate_row(brow, brow, M1, W, M1, grow + M1, 2 * M1, gx);
                    arow = garow;
                }
                pointwise(arow, M1, M1, brow, M1, M1, w2t, b2, M2, row + M2, M2, W, 0);
            }
            ghost2_output(Pb, R, W, M2, d2, bd2, xn + (int64_t)y0 * W * C, yn + (int64_t)y0 * W * C);
        }
    }
    return 0;
}

/* The stride-2 blocks' first steps for z rows zy0 .. zy0+nz-1 of one image: AB row i holds
 * [a b] of image row base + i (base = 2*zy0 - P - 1, NA = 2*nz + K rows, P zero pixels each
 * side, rows outside the image zero). Rows below `keep` are already there (moved from the band
 * above: a valid in all of them, b in all but the last). */
static void s2_fill_ab(const float *xn, int H, int W, int Cin, int M1, int K, int base, int NA, int keep,
                       const float *w1t, const float *b1, const float *d1, const float *bd1, float *AB) {
    const int P = K / 2, C2 = 2 * M1;
    const int64_t Wab = W + 2 * P;
    for (int i = keep; i < NA; i++) {
        const int iy = base + i;
        float *row = AB + (int64_t)i * Wab * C2;
        if (iy < 0 || iy >= H)
            memset(row, 0, sizeof(float) * Wab * C2);
        else
            pointwise(xn + (int64_t)iy * W * Cin, Cin, Cin, 0, 0, 0, w1t, b1, M1, row + (int64_t)P * C2, C2, W, 1);
    }
    /* b = relu(dw3(a)) for rows max(1, keep-1) .. NA-2, then zero where the row is outside the image */
    const int ib = keep > 1 ? keep - 1 : 1;
    dw3_s1(AB + ((int64_t)(ib - 1) * Wab + P - 1) * C2, Wab, C2, NA - 1 - ib, W, M1, d1, bd1,
           AB + ((int64_t)ib * Wab + P) * C2 + M1, Wab, C2, 0, 0, 0, 1);
    for (int i = ib; i < NA - 1; i++) {
        const int iy = base + i;
        if (iy >= 0 && iy < H) continue;
        float *row = AB + (int64_t)i * Wab * C2;
        for (int64_t px = 0; px < Wab; px++) memset(row + px * C2 + M1, 0, sizeof(float) * M1);
    }
}

/* z rows j = jlo .. jhi-1 of the band filled by s2_fill_ab (z row zy0 + j, window top AB row
 * 2j + 1) into dst (row j at dst + (j - jlo) * zrow, pixels C2 apart). */
static void s2_z_rows(const float *AB, int W, int OW, int M1, int K, int jlo, int jhi, const float *dzt,
                      const float *dz, float *dst, int64_t zrow) {
    const int C2 = 2 * M1;
    const int64_t Wab = W + 2 * (K / 2);
    const float *src = AB + (int64_t)(2 * jlo + 1) * Wab * C2;
    if (K == 3)
        dw3_s2(src, Wab, C2, jhi - jlo, OW, C2, dzt, dz, dst, zrow / C2, C2);
    else
        dw5_s2(src, Wab, C2, jhi - jlo, OW, C2, dzt, dz, dst, zrow / C2, C2);
}

/* ghost2 and the residual for output rows oy0 .. oy0+R-1: p rows oy0-1 .. oy0+R (PB row j, zero
 * outside the image rows jlo .. jhi-1) from z (z row of PB row j at z + (j - jlo) * OW * C2),
 * rows below `keep` already in PB; then y = [p, dw3(p) + d2] + res (res, y at row oy0). */
static void ghost2_band(const float *z, int jlo, int jhi, int keep, int R, int OW, int C2, int M2,
                        const float *w2t, const float *b2, const float *d2, const float *bd2, float *PB,
                        const float *res, float *y) {
    for (int j = keep; j < R + 2; j++) {
        float *row = PB + (int64_t)j * (OW + 2) * M2;
        if (j < jlo || j >= jhi)
            memset(row, 0, sizeof(float) * (OW + 2) * M2);
        else
            pointwise(z + (int64_t)(j - jlo) * OW * C2, C2, C2, 0, 0, 0, w2t, b2, M2, row + M2, M2, OW, 0);
    }
    ghost2_output(PB, R, OW, M2, d2, bd2, res, y);
}

/* Floats of scratch one thread needs for the stride-2 block (bands of `band` output rows; with a
 * DFC gate also a gated copy of the [a b] rows, which the next band needs ungated). */
int64_t ghostdet_ghost_block_s2_scratch(int W, int OW, int M1, int M2, int K, int band, int gated) {
    const int64_t Wab = W + 2 * (K / 2), ab = (int64_t)(2 * band + K + 4) * Wab * 2 * M1;
    return (gated ? 2 : 1) * ab + (int64_t)(band + 2) * OW * 2 * M1 + (int64_t)(band + 2) * (OW + 2) * M2;
}

/* AB rows [i0, i1) (image rows base + i, W pixels of 2*M1 floats from column P on) gated into the
 * same rows of GAB; rows outside the image are zero. */
static void gate_ab_rows(const float *AB, float *GAB, int i0, int i1, int base, int H, int W, int P, int M1,
                         const dfc_gate *gt, int n) {
    const int C2 = 2 * M1;
    const int64_t Wab = W + 2 * P;
    for (int i = i0; i < i1; i++) {
        const int iy = base + i;
        float *grow = GAB + (int64_t)i * Wab * C2;
        if (iy < 0 || iy >= H)
            memset(grow, 0, sizeof(float) * Wab * C2);
        else
            gate_row(AB + ((int64_t)i * Wab + P) * C2, grow + (int64_t)P * C2, C2, W, C2, gate_row_of(gt, n, iy),
                     C2, gt->gx);
    }
}

/* Fused stride-2 Ghost bottleneck without SE; its shortcut is computed by the caller (res):
 *   a = relu(x W1 + b1), b = relu(dw3(a) + d1)          M1 + M1 channels at H x W
 *   z = dwK_s2([a b]) + dz                               2*M1 channels at OH x OW (no ReLU)
 *   p = z W2 + b2, c = dw3(p) + d2                       M2 + M2 channels
 *   y = [p c] + res                                      res, y: N x OH x OW x 2*M2, dense
 * x: N x H x W x Cin dense. K (3 or 5) has padding K/2. Returns 0, or -1 when unsupported. */
int ghostdet_ghost_block_s2(const float *x, const float *res, float *y, int N, int H, int W, int Cin,
                            int M1, int M2, int K, const float *w1t, const float *b1, const float *d1,
                            const float *bd1, const float *dzt, const float *dz, const float *w2t,
                            const float *b2, const float *d2, const float *bd2, const float *g, int Hg,
                            int Wg, const int32_t *gy, const int32_t *gx, int band, float *scratch,
                            int nthreads) {
    const dfc_gate gt = {g, Hg, Wg, gy, gx, 2 * (int64_t)M1};
    if ((K != 3 && K != 5) || M1 % 4 || M2 % 4 || band < 1 || nthreads < 1 || !gate_fits(&gt, H, W)) return -1;
    const int P = K / 2, C2 = 2 * M1, Cout = 2 * M2;
    const int OH = conv_out_size(H, K, 2, P), OW = conv_out_size(W, K, 2, P);
    const int64_t Wab = W + 2 * P;
    const int64_t per_img = (OH + band - 1) / band, total = (int64_t)N * per_img;
    const int64_t per_thread = ghostdet_ghost_block_s2_scratch(W, OW, M1, M2, K, band, g != NULL);
#ifdef _OPENMP
#pragma omp parallel num_threads(nthreads) if (nthreads > 1 && total > 1)
#endif
    {
        const int tid = thread_id();
        float *AB = scratch + tid * per_thread;                 /* a|b rows, P zero pixels each side */
        float *Z = AB + (int64_t)(2 * band + K + 4) * Wab * C2; /* z rows */
        float *PB = Z + (int64_t)(band + 2) * OW * C2;          /* p rows, 1 zero pixel each side */
        float *GAB = PB + (int64_t)(band + 2) * (OW + 2) * M2;  /* gated AB rows (with a gate) */
        memset(AB, 0, sizeof(float) * per_thread);
        int64_t prev = -2; /* the band this thread did last */
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t t = 0; t < total; t++) {
            const band_task bt = next_band(t, per_img, band, OH, &prev);
            const int n = bt.n, oy0 = bt.y0, R = bt.R, oy1 = oy0 + R, reuse = bt.reuse;
            /* z rows oy0-1 .. oy1 (Z row j = z row oy0-1+j). reuse: the band above leaves its
             * last K+4 AB rows and last 2 p rows (z rows 0, 1 would only feed p rows 0, 1) */
            if (reuse) {
                memmove(AB, AB + (int64_t)2 * band * Wab * C2, sizeof(float) * (K + 4) * Wab * C2);
                memmove(PB, PB + (int64_t)band * (OW + 2) * M2, sizeof(float) * 2 * (OW + 2) * M2);
            }
            const int base = 2 * (oy0 - 1) - P - 1;
            s2_fill_ab(x + (int64_t)n * H * W * Cin, H, W, Cin, M1, K, base, 2 * R + K + 4, reuse ? K + 4 : 0, w1t,
                       b1, d1, bd1, AB);
            const int jlo = oy0 - 1 < 0 ? 1 : reuse ? 2 : 0, jhi = oy1 + 1 > OH ? R + 1 : R + 2;
            if (g) /* z rows jlo .. jhi-1 read AB rows 2*jlo+1 .. 2*jhi+K-2 */
                gate_ab_rows(AB, GAB, 2 * jlo + 1, 2 * jhi + K - 1, base, H, W, P, M1, &gt, n);
            s2_z_rows(g ? GAB : AB, W, OW, M1, K, jlo, jhi, dzt, dz, Z + (int64_t)jlo * OW * C2, (int64_t)OW * C2);
            const int64_t out = ((int64_t)n * OH + oy0) * OW * Cout;
            ghost2_band(Z + (int64_t)jlo * OW * C2, jlo, jhi, reuse ? 2 : 0, R, OW, C2, M2, w2t, b2, d2, bd2, PB,
                        res + out, y + out);
        }
    }
    return 0;
}

/* Two-pass form for bottlenecks whose ghost1 output needs something computed outside the band
 * loop: an SE gate (the mean of the whole map, between ghost1 and ghost2) or a DFC gate
 * (GhostNetV2/V3: an elementwise gate on ghost1's output, computed by the caller at half
 * resolution). Front: z = g * [a b] (S = 1) or z = dwK_s2(g * [a b]) + dz (S = 2), written to the
 * caller's z (N x OH x OW x 2*M1, dense), and its per-image channel sums (N x 2*M1); without a
 * DFC gate g = 1. Back: y = [p, dw3(p) + d2] + res with p = z W2[n] + b2, where the caller
 * folded any SE gate into W2[n]. */
int64_t ghostdet_ghost_front_scratch(int N, int W, int M1, int K, int S, int band, int gated) {
    if (S == 1) return (int64_t)(band + 2) * (W + 2) * M1 + (int64_t)N * 2 * M1;
    /* a gated copy of the band's [a b] rows for the strided conv (the rows kept for the next band
     * must stay ungated: its b rows are computed from them) */
    const int64_t ab = (int64_t)(2 * band + K) * (W + 2 * (K / 2)) * 2 * M1;
    return (gated ? 2 : 1) * ab + (int64_t)N * 2 * M1;
}

/* x (N x H x W, pixels `pitch` floats apart, channels [0, C) gated) *= the gate, in place; the
 * gate's pixels are `gpitch` floats apart (a channel slice of a wider gate). */
int ghostdet_gate_mul(float *x, int64_t pitch, int N, int H, int W, int C, const float *g, int64_t gpitch,
                      int Hg, int Wg, const int32_t *gy, const int32_t *gx, int nthreads) {
    if (pitch < C || gpitch < C || C < 1 || Hg < 1 || Wg < 1 || nthreads < 1) return -1;
    for (int y = 0; y < H; y++)
        if (gy[y] < 0 || gy[y] >= Hg) return -1;
    for (int i = 0; i < W; i++)
        if (gx[i] < 0 || gx[i] >= Wg) return -1;
    const int64_t total = (int64_t)N * H;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static) if (nthreads > 1 && total > 1)
#endif
    for (int64_t r = 0; r < total; r++) {
        const int n = (int)(r / H), y = (int)(r % H);
        float *row = x + r * W * pitch;
        const dfc_gate gt = {g, Hg, Wg, gy, gx, gpitch};
        gate_row(row, row, pitch, W, C, gate_row_of(&gt, n, y), gpitch, gx);
    }
    return 0;
}

static void add_sums(const float *z, int64_t npix, int C2, float *acc) {
    for (int64_t i = 0; i < npix; i++)
        for (int c = 0; c < C2; c++) acc[c] += z[i * C2 + c];
}

/* g: NULL, or the DFC gate of ghost1's output (N x Hg x Wg x 2*M1 dense, with gy[H], gx[W]: see
 * dfc_gate); scratch: nthreads * ghostdet_ghost_front_scratch(..., g != NULL) floats. */
int ghostdet_ghost_front(const float *x, float *z, float *sums, int N, int H, int W, int Cin, int M1, int K,
                         int S, const float *w1t, const float *b1, const float *d1, const float *bd1,
                         const float *dzt, const float *dz, const float *g, int Hg, int Wg, const int32_t *gy,
                         const int32_t *gx, int band, float *scratch, int nthreads) {
    const dfc_gate gt = {g, Hg, Wg, gy, gx, 2 * (int64_t)M1};
    if ((S == 2 && K != 3 && K != 5) || (S != 1 && S != 2) || M1 % 4 || band < 1 || nthreads < 1) return -1;
    if (!gate_fits(&gt, H, W)) return -1;
    const int P = S == 2 ? K / 2 : 0, C2 = 2 * M1;
    /* stride 1: z is ghost1's output, the size of x */
    const int OH = S == 2 ? conv_out_size(H, K, 2, P) : H, OW = S == 2 ? conv_out_size(W, K, 2, P) : W;
    const int64_t per_img = (OH + band - 1) / band, total = (int64_t)N * per_img;
    const int64_t per_thread = ghostdet_ghost_front_scratch(N, W, M1, K, S, band, g != NULL);
    const int64_t Wp = W + 2, Wab = W + 2 * P;
    memset(sums, 0, sizeof(float) * N * C2);
#ifdef _OPENMP
#pragma omp parallel num_threads(nthreads) if (nthreads > 1 && total > 1)
#endif
    {
        const int tid = thread_id();
        float *buf = scratch + tid * per_thread;
        float *part = buf + per_thread - (int64_t)N * C2; /* this thread's channel sums */
        memset(buf, 0, sizeof(float) * per_thread);
        int64_t prev = -2;
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t t = 0; t < total; t++) {
            const band_task bt = next_band(t, per_img, band, OH, &prev);
            const int n = bt.n, y0 = bt.y0, R = bt.R, reuse = bt.reuse;
            const float *xn = x + (int64_t)n * H * W * Cin;
            float *zb = z + ((int64_t)n * OH + y0) * OW * C2;
            if (S == 1) {
                /* a rows y0-1 .. y0+R in buf (row r = image row y0-1+r, one zero pixel each side) */
                if (reuse) memmove(buf, buf + (int64_t)band * Wp * M1, sizeof(float) * 2 * Wp * M1);
                for (int r = reuse ? 2 : 0; r < R + 2; r++) {
                    const int iy = y0 - 1 + r;
                    float *row = buf + (int64_t)r * Wp * M1;
                    if (iy < 0 || iy >= H)
                        memset(row, 0, sizeof(float) * Wp * M1);
                    else
                        pointwise(xn + (int64_t)iy * W * Cin, Cin, Cin, NULL, 0, 0, w1t, b1, M1, row + M1, M1, W, 1);
                }
                for (int r = 0; r < R; r++) {
                    const float *arow = buf + ((int64_t)(r + 1) * Wp + 1) * M1;
                    float *zrow = zb + (int64_t)r * W * C2;
                    for (int px = 0; px < W; px++) memcpy(zrow + (int64_t)px * C2, arow + (int64_t)px * M1, sizeof(float) * M1);
                }
                dw3_s1(buf, Wp, M1, R, W, M1, d1, bd1, zb + M1, W, C2, NULL, 0, 0, 1);
                for (int r = 0; g && r < R; r++) {
                    float *zrow = zb + (int64_t)r * W * C2;
                    gate_row(zrow, zrow, C2, W, C2, gate_row_of(&gt, n, y0 + r), C2, gx);
                }
            } else {
                if (reuse) memmove(buf, buf + (int64_t)2 * band * Wab * C2, sizeof(float) * K * Wab * C2);
                const int base = 2 * y0 - P - 1;
                s2_fill_ab(xn, H, W, Cin, M1, K, base, 2 * R + K, reuse ? K : 0, w1t, b1, d1, bd1, buf);
                const float *ab = buf;
                if (g) { /* the strided conv reads AB rows 1 .. 2R+K-2: gate them into the copy */
                    float *gab = buf + (int64_t)(2 * band + K) * Wab * C2;
                    gate_ab_rows(buf, gab, 1, 2 * R + K - 1, base, H, W, P, M1, &gt, n);
                    ab = gab;
                }
                s2_z_rows(ab, W, OW, M1, K, 0, R, dzt, dz, zb, (int64_t)OW * C2);
            }
            add_sums(zb, (int64_t)R * OW, C2, part + (int64_t)n * C2);
        }
#ifdef _OPENMP
#pragma omp critical
#endif
        for (int64_t i = 0; i < (int64_t)N * C2; i++) sums[i] += part[i];
    }
    return 0;
}

int64_t ghostdet_ghost_back_scratch(int OW, int M2, int band) { return (int64_t)(band + 2) * (OW + 2) * M2; }

/* z: N x OH x OW x C2 dense; w2t: N weights (C2 x M2) w2_stride floats apart (0: one for all);
 * res, y: N x OH x OW x 2*M2 dense. */
int ghostdet_ghost_back(const float *z, const float *res, float *y, int N, int OH, int OW, int C2, int M2,
                        const float *w2t, int64_t w2_stride, const float *b2, const float *d2, const float *bd2,
                        int band, float *scratch, int nthreads) {
    if (M2 % 4 || C2 % 4 || band < 1 || nthreads < 1) return -1;
    const int64_t per_img = (OH + band - 1) / band, total = (int64_t)N * per_img;
    const int64_t per_thread = ghostdet_ghost_back_scratch(OW, M2, band), Cout = 2 * M2;
#ifdef _OPENMP
#pragma omp parallel num_threads(nthreads) if (nthreads > 1 && total > 1)
#endif
    {
        float *PB = scratch + thread_id() * per_thread;
        memset(PB, 0, sizeof(float) * per_thread);
        int64_t prev = -2;
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t t = 0; t < total; t++) {
            const band_task bt = next_band(t, per_img, band, OH, &prev);
            const int n = bt.n, oy0 = bt.y0, R = bt.R, oy1 = oy0 + R, reuse = bt.reuse;
            if (reuse) memmove(PB, PB + (int64_t)band * (OW + 2) * M2, sizeof(float) * 2 * (OW + 2) * M2);
            /* PB row j = p row oy0-1+j, inside the image for j in [jlo, jhi) */
            const int jlo = oy0 == 0 ? 1 : reuse ? 2 : 0, jhi = oy1 + 1 > OH ? R + 1 : R + 2;
            const int64_t out = ((int64_t)n * OH + oy0) * OW * Cout;
            ghost2_band(z + ((int64_t)n * OH + oy0 - 1 + jlo) * OW * C2, jlo, jhi, reuse ? 2 : 0, R, OW, C2, M2,
                        w2t + n * w2_stride, b2, d2, bd2, PB, res + out, y + out);
        }
    }
    return 0;
}
