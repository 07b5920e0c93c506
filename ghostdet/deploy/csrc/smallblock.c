/* Whole Ghost bottlenecks on small and medium maps, NHWC float32, in one call: any width on maps
 * up to 32x32, the wide blocks (112-160 channels out, 480-960 hidden) up to 64x64 (the limits are
 * SMALL_BLOCK_MAX_PIXELS and WIDE_SMALL_BLOCK_MAX_PIXELS in ghostdet/deploy/ghost.py), with or
 * without SE, stride 1 or 2, identity or conv shortcut, optionally a DFC gate (GhostNetV2/V3):
 *
 *   z = [a b],  a = relu(x W1 + b1),  b = relu(dw3(a) + d1)        2*M1 channels, H x W
 *   z *= g                                                         (DFC gate, if any)
 *   z = dwK_s2(z) + dz                                             (stride 2 only)
 *   z *= clamp(relu(mean(z) Wr + br) We + be, 0, 1)                (SE, if any)
 *   p = z W2 + b2,  y = [p, dw3(p) + d2] + shortcut(x)             2*M2 channels, OH x OW
 *   shortcut(x) = x, or (dwSK_S(x) + sd) Wp + bp
 *
 * Why it exists: on these maps each of the block's ~20 torch ops (GEMMs, depthwise calls, the
 * SE's mean and matrix-vector products, slices, adds) costs tens of microseconds of dispatch
 * while its arithmetic is a few; the block's tensors fit in L2. On larger maps (up to the limits
 * above) the whole-map stages still measured faster than the band kernels. Unlike the band kernels of
 * ghostblock.c, every stage runs over the whole map (the 1x1 convs over all pixels of all
 * images at once, in chunks shared among threads), with the intermediates in the caller's
 * scratch. The depthwise convs are ghostdet_dwconv2d (dwconv.c). */
#include "kernels.h"
#include "pointwise.h"
#include "gate.h"

#define PW_CHUNK 48 /* pixels per 1x1-conv task (a multiple of the micro-kernel's 6 and 8) */

/* out = act(in W + bias) for npix pixels (in: k floats used of each pixel's `pi`; out: `po`). */
static void pointwise_all(const float *in, int64_t pi, int k, const float *w, const float *bias, int cout,
                          float *out, int64_t po, int64_t npix, int relu, int nthreads) {
    /* a map of fewer than nthreads chunks is split evenly (in multiples of 6 pixels) instead */
    int64_t chunk = PW_CHUNK;
    if (npix < (int64_t)PW_CHUNK * nthreads) chunk = ((npix + nthreads - 1) / nthreads + 5) / 6 * 6;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static) if (nthreads > 1 && npix > chunk)
#endif
    for (int64_t i = 0; i < npix; i += chunk) {
        const int m = npix - i < chunk ? (int)(npix - i) : (int)chunk;
        pointwise(in + i * pi, pi, k, 0, 0, 0, w, bias, cout, out + i * po, po, m, relu);
    }
    (void)nthreads;
}

/* sum_i a[i] * b[i], in vector lanes (a scalar loop would not be vectorised: the compiler keeps
 * the order of a float sum). */
static float dot(const float *a, const float *b, int n) {
    v8 acc8 = {0};
    v4 acc4 = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8) acc8 += LOADV(v8, a + i) * LOADV(v8, b + i);
    for (; i + 4 <= n; i += 4) acc4 += LOADV(v4, a + i) * LOADV(v4, b + i);
    float sum = 0.0f;
    for (int j = 0; j < 8; j++) sum += acc8[j];
    for (int j = 0; j < 4; j++) sum += acc4[j];
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

/* The SE gate of one image's z (npix pixels of C floats) multiplied into it: wr (R x C) and
 * we (C x R) row-major, hard-sigmoid folded into we / be (clamp to [0, 1]). */
static void squeeze_excite(float *z, int64_t npix, int C, int R, const float *wr, const float *br,
                           const float *we, const float *be, float *tmp) {
    float *mean = tmp, *s = tmp + C;
    for (int c = 0; c < C; c++) mean[c] = 0.0f;
    for (int64_t i = 0; i < npix; i++)
        for (int c = 0; c < C; c++) mean[c] += z[i * C + c];
    for (int c = 0; c < C; c++) mean[c] /= (float)npix;
    for (int r = 0; r < R; r++) {
        const float acc = br[r] + dot(wr + (int64_t)r * C, mean, C);
        s[r] = acc > 0.0f ? acc : 0.0f;
    }
    for (int c = 0; c < C; c++) {
        const float acc = be[c] + dot(we + (int64_t)c * R, s, R);
        mean[c] = acc < 0.0f ? 0.0f : acc > 1.0f ? 1.0f : acc; /* the gate, over the means */
    }
    for (int64_t i = 0; i < npix; i++)
        for (int c = 0; c < C; c++) z[i * C + c] *= mean[c];
}

/* Floats of scratch the call needs (shared by its threads). */
int64_t ghostdet_ghost_block_small_scratch(int N, int H, int W, int Cin, int M1, int M2, int S, int K, int R,
                                           int conv_shortcut) {
    const int P = K / 2, OH = S == 2 ? conv_out_size(H, K, 2, P) : H, OW = S == 2 ? conv_out_size(W, K, 2, P) : W;
    const int64_t in = (int64_t)N * H * W, out = (int64_t)N * OH * OW;
    return in * 2 * M1 + (S == 2 ? out * 2 * M1 : 0) + (conv_shortcut ? out * (Cin + 2 * (int64_t)M2) : 0) +
           2 * (int64_t)M1 + R;
}

/* x: N x H x W x Cin dense; y: N x OH x OW x 2*M2 dense. Weights as in ghostblock.c (1x1 as
 * (in, out), depthwise taps-major); dzt/dz: the stride-2 depthwise conv (K x K, padding K/2),
 * NULL for stride 1; R = 0: no SE; sdt == NULL: identity shortcut (Cin == 2*M2, S == 1), else
 * the shortcut's depthwise (SK x SK, stride S, padding SK/2, taps-major (SK*SK, Cin)) and 1x1
 * (Cin, 2*M2) convs; g: NULL or the DFC gate of z (see gate.h). Returns 0, or -1 when
 * unsupported (nothing is written then). */
int ghostdet_ghost_block_small(const float *x, float *y, int N, int H, int W, int Cin, int M1, int M2, int S,
                               int K, const float *w1t, const float *b1, const float *d1, const float *bd1,
                               const float *dzt, const float *dz, int R, const float *wr, const float *br,
                               const float *we, const float *be, const float *w2t, const float *b2,
                               const float *d2, const float *bd2, int SK, const float *sdt, const float *sd,
                               const float *spt, const float *sp, const float *g, int Hg, int Wg,
                               const int32_t *gy, const int32_t *gx, float *scratch, int nthreads) {
    const int C2 = 2 * M1, Cout = 2 * M2, P = K / 2;
    const dfc_gate gt = {g, Hg, Wg, gy, gx, C2};
    if (M1 % 4 || M2 % 4 || Cin % 4 || (S != 1 && S != 2) || (S == 2 && !dzt) || R < 0 || nthreads < 1 ||
        (!sdt && (Cin != Cout || S != 1)) || !gate_fits(&gt, H, W))
        return -1;
    const int OH = S == 2 ? conv_out_size(H, K, 2, P) : H, OW = S == 2 ? conv_out_size(W, K, 2, P) : W;
    if (OH < 1 || OW < 1 || (sdt && (OH != conv_out_size(H, SK, S, SK / 2) || OW != conv_out_size(W, SK, S, SK / 2))))
        return -1;
    const int64_t in = (int64_t)N * H * W, out = (int64_t)N * OH * OW;
    float *z = scratch, *zs = z + in * C2, *t = zs + (S == 2 ? out * C2 : 0);
    float *rs = t + (sdt ? out * Cin : 0), *se = rs + (sdt ? out * Cout : 0);
    /* ghost1 (and its gate) */
    pointwise_all(x, Cin, Cin, w1t, b1, M1, z, C2, in, 1, nthreads);
    if (ghostdet_dwconv2d(z, C2, N, H, W, M1, d1, bd1, 3, 1, 1, z + M1, C2, H, W, 1, nthreads)) return -1;
    for (int64_t r = 0; g && r < (int64_t)N * H; r++) {
        float *row = z + r * W * C2;
        gate_row(row, row, C2, W, C2, gate_row_of(&gt, (int)(r / H), (int)(r % H)), C2, gx);
    }
    if (S == 2) {
        if (ghostdet_dwconv2d(z, C2, N, H, W, C2, dzt, dz, K, 2, P, zs, C2, OH, OW, 0, nthreads)) return -1;
        z = zs;
    }
    for (int n = 0; R && n < N; n++) squeeze_excite(z + (int64_t)n * OH * OW * C2, (int64_t)OH * OW, C2, R, wr, br, we, be, se);
    /* ghost2 */
    pointwise_all(z, C2, C2, w2t, b2, M2, y, Cout, out, 0, nthreads);
    if (ghostdet_dwconv2d(y, Cout, N, OH, OW, M2, d2, bd2, 3, 1, 1, y + M2, Cout, OH, OW, 0, nthreads)) return -1;
    /* the shortcut */
    const float *res = x;
    if (sdt) {
        if (ghostdet_dwconv2d(x, Cin, N, H, W, Cin, sdt, sd, SK, S, SK / 2, t, Cin, OH, OW, 0, nthreads)) return -1;
        pointwise_all(t, Cin, Cin, spt, sp, Cout, rs, Cout, out, 0, nthreads);
        res = rs;
    }
    for (int64_t i = 0; i < out * Cout; i++) y[i] += res[i];
    return 0;
}
