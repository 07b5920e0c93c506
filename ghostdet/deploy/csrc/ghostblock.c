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
 * in per-thread scratch, so only x is read and y written. Within a band each row of each stage
 * is computed as soon as the rows it reads are there, so it is read back from L1/L2 (a whole
 * stage at a time, a band of a large map's rows had gone to L3 before the next stage read it). The caller
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
 * res (rrow pixels per row, rp floats per pixel) and ReLU.
 *
 * Row by row, and within a row every channel vector, so the K source rows an output row reads
 * stay in cache across its channel vectors (channel vector by channel vector over the whole band
 * read a band of hundreds of KB once per vector). With K = 3 four neighbouring pixels go
 * together: per kernel row the 3*S+3 source vectors they share are loaded once and feed up to 3
 * accumulators each. Each output is the same sum in the same order either way. */
#define DW_PIXEL(VT, VI, x)                                                                       \
    {                                                                                             \
        VT acc = bv;                                                                              \
        for (int ky = 0; ky < K; ky++)                                                            \
            for (int kx = 0; kx < K; kx++)                                                        \
                acc += LOADV(VT, s0 + ((int64_t)ky * srow + S * (x) + kx) * sp) * wk[ky * K + kx]; \
        if (res) acc += LOADV(VT, rr + (int64_t)(x) * rp);                                        \
        if (relu) RELUV(VI, acc);                                                                 \
        STOREV(VT, dr + (int64_t)(x) * dp, acc);                                                  \
    }
#define DW_ROW(VT, VI, VW)                                                                        \
    for (; VW <= GHOSTDET_VW && c + VW <= C; c += VW) {                                           \
        VT wk[25];                                                                                \
        for (int t = 0; t < K * K; t++) wk[t] = LOADV(VT, wt + t * C + c);                        \
        const VT bv = LOADV(VT, bias + c);                                                        \
        const float *s0 = src + (int64_t)r * S * srow * sp + c;                                   \
        const float *rr = res ? res + (int64_t)r * rrow * rp + c : 0;                             \
        float *dr = dst + (int64_t)r * drow * dp + c;                                             \
        int x = 0;                                                                                \
        for (; K == 3 && x + NPX <= W; x += NPX) {                                                \
            VT acc[4];                                                                            \
            for (int j = 0; j < NPX; j++) acc[j] = bv;                                            \
            for (int ky = 0; ky < 3; ky++) {                                                      \
                const float *pr = s0 + ((int64_t)ky * srow + S * x) * sp;                         \
                VT v[3 * 2 + 3];                                                                  \
                for (int i = 0; i < (NPX - 1) * S + 3; i++) v[i] = LOADV(VT, pr + (int64_t)i * sp); \
                for (int kx = 0; kx < 3; kx++)                                                    \
                    for (int j = 0; j < NPX; j++) acc[j] += v[j * S + kx] * wk[ky * 3 + kx];      \
            }                                                                                     \
            for (int j = 0; j < NPX; j++) {                                                       \
                if (res) acc[j] += LOADV(VT, rr + (int64_t)(x + j) * rp);                         \
                if (relu) RELUV(VI, acc[j]);                                                      \
                STOREV(VT, dr + (int64_t)(x + j) * dp, acc[j]);                                   \
            }                                                                                     \
        }                                                                                         \
        for (; x < W; x++) DW_PIXEL(VT, VI, x)                                                    \
    }

static inline __attribute__((always_inline)) void dw_band(
    const float *src, int64_t srow, int64_t sp, int rows, int W, int C, int K, int S,
    const float *wt, const float *bias, float *dst, int64_t drow, int64_t dp, const float *res,
    int64_t rrow, int64_t rp, int relu) {
    const int NPX = S == 1 ? 4 : 2; /* pixels a group (4 at stride 2 spilled their addresses) */
    for (int r = 0; r < rows; r++) {
        int c = 0;
        DW_ROW(v16, vi16, 16)
        DW_ROW(v8, vi8, 8)
        DW_ROW(v4, vi4, 4)
    }
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
            /* step st: a row st (a rows y0-2 .. y0+R+1, zero outside the image; interior columns
             * 1..W), then b and p row st-2 (image row y0-3+st), then output row st-4: each row is
             * read back while it is still in cache */
            for (int st = reuse ? 4 : 0; st < R + 4; st++) {
                const int iy = y0 - 2 + st;
                float *row = A + (int64_t)st * Wp * M1;
                if (iy < 0 || iy >= H)
                    memset(row, 0, sizeof(float) * Wp * M1);
                else
                    pointwise(xn + (int64_t)iy * W * C, C, C, NULL, 0, 0, w1t, b1, M1, row + M1, M1, W, 1);
                const int r = st - 2, py = y0 - 1 + r;
                if (r >= r0 && r < R + 2) {
                    float *prow = Pb + (int64_t)r * Wp * M2;
                    if (py < 0 || py >= H) { /* p is zero outside the image (b is not needed there) */
                        memset(prow, 0, sizeof(float) * Wp * M2);
                    } else {
                        const float *arow = A + ((int64_t)(r + 1) * Wp + 1) * M1;
                        float *brow = B + ((int64_t)r * Wp + 1) * M1;
                        dw3_s1(A + (int64_t)r * Wp * M1, Wp, M1, 1, W, M1, d1, bd1, brow, Wp, M1, NULL, 0, 0, 1);
                        if (g) { /* b in place (this band's own rows), a into its copy */
                            const float *grow = gate_row_of(&gt, n, py);
                            float *garow = GA + ((int64_t)r * Wp + 1) * M1;
                            gate_row(arow, garow, M1, W, M1, grow, 2 * M1, gx);
                            gate_row(brow, brow, M1, W, M1, grow + M1, 2 * M1, gx);
                            arow = garow;
                        }
                        pointwise(arow, M1, M1, brow, M1, M1, w2t, b2, M2, prow + M2, M2, W, 0);
                    }
                }
                const int o = st - 4; /* output row o reads p rows o .. o+2 */
                if (o >= 0 && o < R)
                    ghost2_output(Pb + (int64_t)o * Wp * M2, 1, W, M2, d2, bd2, xn + (int64_t)(y0 + o) * W * C,
                                  yn + (int64_t)(y0 + o) * W * C);
            }
        }
    }
    return 0;
}

/* The stride-2 blocks' first steps for z rows zy0 .. zy0+nz-1 of one image: AB row i holds
 * [a b] of image row base + i (base = 2*zy0 - P - 1, NA = 2*nz + K rows, P zero pixels each
 * side, rows outside the image zero). Rows below `keep` are already there (moved from the band
 * above: a valid in all of them, b in all but the last). b is needed in rows 1 .. NA-2 only.
 *
 * s2_ab_step(i) writes a in row i and then b in row i - 1 (whose three a rows are now there), so
 * a row's a is read back while it is still in cache; after step i rows up to i - 1 are whole. */
static void s2_ab_step(const float *xn, int H, int W, int Cin, int M1, int K, int base, int NA, int keep, int i,
                       const float *w1t, const float *b1, const float *d1, const float *bd1, float *AB) {
    const int P = K / 2, C2 = 2 * M1;
    const int64_t Wab = W + 2 * P;
    const int iy = base + i;
    float *row = AB + (int64_t)i * Wab * C2;
    if (iy < 0 || iy >= H)
        memset(row, 0, sizeof(float) * Wab * C2);
    else
        pointwise(xn + (int64_t)iy * W * Cin, Cin, Cin, 0, 0, 0, w1t, b1, M1, row + (int64_t)P * C2, C2, W, 1);
    /* b = relu(dw3(a)) in row i - 1, or zero where that row is outside the image */
    const int ib = i - 1, iyb = base + ib;
    if (ib < (keep > 1 ? keep - 1 : 1) || ib > NA - 2) return;
    float *brow = AB + (int64_t)ib * Wab * C2;
    if (iyb >= 0 && iyb < H)
        dw3_s1(brow - (Wab - P + 1) * C2, Wab, C2, 1, W, M1, d1, bd1, brow + (int64_t)P * C2 + M1, Wab, C2, 0, 0, 0,
               1);
    else
        for (int64_t px = 0; px < Wab; px++) memset(brow + px * C2 + M1, 0, sizeof(float) * M1);
}

/* z rows j = jlo .. jhi-1 of the band filled by s2_ab_step (z row zy0 + j, window top AB row
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

/* One step of the stride-2 kernels' row stream: AB row i (s2_ab_step; the step i = keep - 1 only
 * takes stock of the kept rows), then, with a DFC gate (gt->g), the gated copies in GAB of the AB
 * rows now whole (up to row g1 - 1), then the z rows j < jhi whose K AB rows are there (z row j
 * at Z + j * OW * 2*M1). *ig and *jz: the next AB row to gate and the next z row. */
static void s2_stream_step(const float *xn, int H, int W, int OW, int Cin, int M1, int K, int base, int NA,
                           int keep, int i, const float *w1t, const float *b1, const float *d1, const float *bd1,
                           const float *dzt, const float *dz, float *AB, float *GAB, const dfc_gate *gt, int n,
                           int g1, int jhi, float *Z, int *ig, int *jz) {
    const int C2 = 2 * M1;
    if (i >= keep) s2_ab_step(xn, H, W, Cin, M1, K, base, NA, keep, i, w1t, b1, d1, bd1, AB);
    int ready = i - 1; /* AB rows 0 .. i-1 hold a and b */
    if (gt->g) {
        for (; *ig <= ready && *ig < g1; ++*ig) gate_ab_rows(AB, GAB, *ig, *ig + 1, base, H, W, K / 2, M1, gt, n);
        ready = *ig - 1;
    }
    for (; *jz < jhi && 2 * *jz + K <= ready; ++*jz)
        s2_z_rows(gt->g ? GAB : AB, W, OW, M1, K, *jz, *jz + 1, dzt, dz, Z + (int64_t)*jz * OW * C2, (int64_t)OW * C2);
}

/* PB row j of the stride-2 blocks' ghost2: p = z W2 + b2 from z row zrow, or zero (outside the
 * image). PB rows are OW + 2 pixels of M2 floats with one zero pixel each side. */
static inline void ghost2_p_row(const float *zrow, int OW, int C2, int M2, const float *w2t, const float *b2,
                                float *row) {
    if (!zrow)
        memset(row, 0, sizeof(float) * (OW + 2) * M2);
    else
        pointwise(zrow, C2, C2, 0, 0, 0, w2t, b2, M2, row + M2, M2, OW, 0);
}

/* ghost2 and the residual for output rows oy0 .. oy0+R-1: p rows oy0-1 .. oy0+R (PB row j, zero
 * outside the image rows jlo .. jhi-1) from z (z row of PB row j at z + (j - jlo) * OW * C2),
 * rows below `keep` already in PB; then y = [p, dw3(p) + d2] + res (res, y at row oy0). */
static void ghost2_band(const float *z, int jlo, int jhi, int keep, int R, int OW, int C2, int M2,
                        const float *w2t, const float *b2, const float *d2, const float *bd2, float *PB,
                        const float *res, float *y) {
    for (int j = keep; j < R + 2; j++)
        ghost2_p_row(j < jlo || j >= jhi ? 0 : z + (int64_t)(j - jlo) * OW * C2, OW, C2, M2, w2t, b2,
                     PB + (int64_t)j * (OW + 2) * M2);
    ghost2_output(PB, R, OW, M2, d2, bd2, res, y);
}

/* Floats of scratch one thread needs for the stride-2 block (bands of `band` output rows; with a
 * DFC gate also a gated copy of the [a b] rows, which the next band needs ungated). */
int64_t ghostdet_ghost_block_s2_scratch(int W, int OW, int M1, int M2, int K, int band, int gated) {
    const int64_t Wab = W + 2 * (K / 2), ab = (int64_t)(2 * band + K + 4) * Wab * 2 * M1;
    return (gated ? 2 : 1) * ab + (int64_t)(band + 2) * OW * 2 * M1 + (int64_t)(band + 2) * (OW + 2) * M2;
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
            /* one AB row at a time (s2_ab_step), each z row, p row and output row as soon as the
             * rows it reads are there, so each row is read back while it is still in cache */
            const int base = 2 * (oy0 - 1) - P - 1, NA = 2 * R + K + 4, keep = reuse ? K + 4 : 0;
            const int jlo = oy0 - 1 < 0 ? 1 : reuse ? 2 : 0, jhi = oy1 + 1 > OH ? R + 1 : R + 2;
            const int g1 = 2 * jhi + K - 1; /* z rows jlo .. jhi-1 read AB rows 2*jlo+1 .. g1-1 */
            const float *xn = x + (int64_t)n * H * W * Cin;
            const int64_t out = ((int64_t)n * OH + oy0) * OW * Cout;
            int ig = 2 * jlo + 1, jz = jlo, jp = reuse ? 2 : 0, ro = 0; /* next row to gate / of z, p, y */
            for (int i = keep - 1; i < NA; i++) {
                s2_stream_step(xn, H, W, OW, Cin, M1, K, base, NA, keep, i, w1t, b1, d1, bd1, dzt, dz, AB, GAB, &gt,
                               n, g1, jhi, Z, &ig, &jz);
                for (; jp < R + 2 && (jp < jlo || jp >= jhi || jp < jz); jp++)
                    ghost2_p_row(jp < jlo || jp >= jhi ? 0 : Z + (int64_t)jp * OW * C2, OW, C2, M2, w2t, b2,
                                 PB + (int64_t)jp * (OW + 2) * M2);
                for (; ro < R && ro + 2 < jp; ro++)
                    ghost2_output(PB + (int64_t)ro * (OW + 2) * M2, 1, OW, M2, d2, bd2, res + out + (int64_t)ro * OW * Cout,
                                  y + out + (int64_t)ro * OW * Cout);
            }
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
                /* AB rows one at a time, each z row as soon as its K rows are there (the
                 * strided conv reads AB rows 1 .. 2R+K-2: with a gate, gated into the copy) */
                const int base = 2 * y0 - P - 1, NA = 2 * R + K, keep = reuse ? K : 0;
                float *gab = buf + (int64_t)(2 * band + K) * Wab * C2;
                int ig = 1, jz = 0;
                for (int i = keep - 1; i < NA; i++)
                    s2_stream_step(xn, H, W, OW, Cin, M1, K, base, NA, keep, i, w1t, b1, d1, bd1, dzt, dz, buf, gab,
                                   &gt, n, NA - 1, R, zb, &ig, &jz);
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
