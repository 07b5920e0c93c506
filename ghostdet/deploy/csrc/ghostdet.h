/* The native kernels' exported functions: the one declaration of the library's interface.
 *
 * Every kernel source includes this file (through kernels.h), so the compiler checks each
 * definition against it, and ghostdet/deploy/native.py hands this same text to cffi's cdef, so
 * the Python side calls exactly these signatures (argument count and types checked per call).
 * It therefore holds only what cffi's parser reads: plain prototypes, standard integer types and
 * integer #defines; no include guard (repeating these declarations is legal C).
 *
 * Layout conventions: tensors are float32, channels_last (pixel-major, channels contiguous);
 * "pitch" arguments are the floats between neighbouring pixels; a weight "t" suffix is the
 * transposed (input-major) matrix; nthreads is the OpenMP thread count for the call. Every
 * kernel returns 0 on success and a nonzero code when it declines the input (the caller then
 * computes the op another way); *_scratch functions give the floats of scratch one call needs
 * per thread (or in all, as documented at each definition). */

/* Bump whenever an exported function's signature or meaning changes. */
#define GHOSTDET_ABI 6

int ghostdet_abi(void);

int ghostdet_dwconv2d(const float *in, int64_t in_pitch, int N, int H, int W, int C, const float *wt,
                      const float *bias, int K, int S, int P, float *out, int64_t out_pitch, int OH, int OW,
                      int relu, int nthreads);

int ghostdet_stem_conv(const float *x, int N, int H, int W, int Cin, const float *w, const float *bias,
                       int Cout, int K, int S, int P, float *y, int OH, int OW, int relu, int nthreads);

int64_t ghostdet_ghost_block_scratch(int W, int M1, int M2, int band, int gated);
int ghostdet_ghost_block_s1(const float *x, float *y, int N, int H, int W, int C, int M1, int M2,
                            const float *w1t, const float *b1, const float *d1, const float *bd1,
                            const float *w2t, const float *b2, const float *d2, const float *bd2,
                            const float *g, int Hg, int Wg, const int32_t *gy, const int32_t *gx,
                            int band, float *scratch, int nthreads);

int64_t ghostdet_ghost_block_s2_scratch(int W, int OW, int M1, int M2, int K, int band, int gated);
int ghostdet_ghost_block_s2(const float *x, const float *res, float *y, int N, int H, int W, int Cin,
                            int M1, int M2, int K, const float *w1t, const float *b1, const float *d1,
                            const float *bd1, const float *dzt, const float *dz, const float *w2t,
                            const float *b2, const float *d2, const float *bd2, const float *g, int Hg,
                            int Wg, const int32_t *gy, const int32_t *gx, int band, float *scratch,
                            int nthreads);

int64_t ghostdet_ghost_front_scratch(int N, int W, int M1, int K, int S, int band, int gated);
int ghostdet_ghost_front(const float *x, float *z, float *sums, int N, int H, int W, int Cin, int M1, int K,
                         int S, const float *w1t, const float *b1, const float *d1, const float *bd1,
                         const float *dzt, const float *dz, const float *g, int Hg, int Wg, const int32_t *gy,
                         const int32_t *gx, int band, float *scratch, int nthreads);

int64_t ghostdet_ghost_back_scratch(int OW, int M2, int band);
int ghostdet_ghost_back(const float *z, const float *res, float *y, int N, int OH, int OW, int C2, int M2,
                        const float *w2t, int64_t w2_stride, const float *b2, const float *d2, const float *bd2,
                        int band, float *scratch, int nthreads);

int ghostdet_gate_mul(float *x, int64_t pitch, int N, int H, int W, int C, const float *g, int64_t gpitch,
                      int Hg, int Wg, const int32_t *gy, const int32_t *gx, int nthreads);

int64_t ghostdet_ghost_block_small_scratch(int N, int H, int W, int Cin, int M1, int M2, int S, int K, int R,
                                           int conv_shortcut);
int ghostdet_ghost_block_small(const float *x, float *y, int N, int H, int W, int Cin, int M1, int M2, int S,
                               int K, const float *w1t, const float *b1, const float *d1, const float *bd1,
                               const float *dzt, const float *dz, int R, const float *wr, const float *br,
                               const float *we, const float *be, const float *w2t, const float *b2,
                               const float *d2, const float *bd2, int SK, const float *sdt, const float *sd,
                               const float *spt, const float *sp, const float *g, int Hg, int Wg,
                               const int32_t *gy, const int32_t *gx, float *scratch, int nthreads);

int64_t ghostdet_dfc_gate_scratch(int N, int H, int W, int Cin, int C);
int ghostdet_dfc_gate(const float *x, int N, int H, int W, int Cin, int C, const float *wpt, const float *bp,
                      const float *wh, const float *bh, const float *wv, const float *bv, float *g,
                      float *scratch, int nthreads);
