/* The DFC gate (GhostNetV2/V3) as the kernels take it, shared by ghostblock.c and
 * smallblock.c (each gets its own static copy): the gate values at half resolution and, per row
 * and column of the gated map, the gate row and column nearest upsampling takes. */
#ifndef GHOSTDET_GATE_H
#define GHOSTDET_GATE_H
#include "kernels.h"

/* The DFC gate as the caller gives it: one image's N x Hg x Wg x C values g (dense) and, for
 * each row and column of the gated map, the gate row gy[y] and column gx[x] it takes (nearest
 * upsampling, as torch computes the indices). dst row = src row * g row gy[y], pixel by pixel;
 * src and dst pixels are `pitch` floats apart, channels [0, C) of each. src may equal dst. */
typedef struct {
    const float *g;
    int Hg, Wg;
    const int32_t *gy, *gx;
    int64_t pitch; /* floats between neighbouring gate pixels */
} dfc_gate;

#define GATE_BLOCK(VT, VW)                                                                        \
    for (; VW <= GHOSTDET_VW && c + VW <= C; c += VW)                                              \
        STOREV(VT, d + c, LOADV(VT, s + c) * LOADV(VT, gp + c));

static inline void gate_row(const float *src, float *dst, int64_t pitch, int W, int C, const float *grow,
                     int64_t gpitch, const int32_t *gx) {
    for (int x = 0; x < W; x++) {
        const float *s = src + (int64_t)x * pitch, *gp = grow + (int64_t)gx[x] * gpitch;
        float *d = dst + (int64_t)x * pitch;
        int c = 0;
        GATE_BLOCK(v16, 16)
        GATE_BLOCK(v8, 8)
        GATE_BLOCK(v4, 4)
        for (; c < C; c++) d[c] = s[c] * gp[c];
    }
}

/* The gate row for row y of image n. */
static inline const float *gate_row_of(const dfc_gate *gt, int n, int y) {
    return gt->g + ((int64_t)n * gt->Hg + gt->gy[y]) * gt->Wg * gt->pitch;
}

static inline int gate_fits(const dfc_gate *gt, int H, int W) {
    if (!gt->g) return 1;
    if (gt->Hg < 1 || gt->Wg < 1) return 0;
    for (int y = 0; y < H; y++)
        if (gt->gy[y] < 0 || gt->gy[y] >= gt->Hg) return 0;
    for (int i = 0; i < W; i++)
        if (gt->gx[i] < 0 || gt->gx[i] >= gt->Wg) return 0;
    return 1;
}

#endif
