/* Shared by ghostdet's native kernels (dwconv.c, ghostblock.c, stemconv.c, built into one
 * library): the exported declarations (ghostdet.h), the conv output-size formula, and vector types and helpers
 * (GCC/Clang vector extensions: the compiler lowers them to whatever SIMD width -march gives it). */
#ifndef GHOSTDET_KERNELS_H
#define GHOSTDET_KERNELS_H
#include <stdint.h>
#include <string.h>

/* The exported functions and the ABI version: declared once, in ghostdet.h (which
 * ghostdet/deploy/native.py also reads, for cffi). */
#include "ghostdet.h"

/* Output size of a convolution along one axis: input size, kernel, stride, zero padding. */
static inline int conv_out_size(int size, int k, int s, int p) { return (size + 2 * p - k) / s + 1; }

/* The widest vector the kernels use, in floats, from the instruction set the compiler targets:
 * 16 with AVX-512 (32 registers of 16 floats), 8 with AVX/AVX2 (16 registers of 8 floats), 4
 * otherwise. A vector wider than the registers is split into register-sized parts, so a register
 * tile written for 16-float vectors (e.g. 8 pixels x 16 channels of accumulators) would need twice
 * the registers and spill: on AVX2 the channels go in 8-float vectors instead. Each channel's
 * arithmetic is the same whatever the width, so the results do not depend on it. */
#if defined(__AVX512F__)
#define GHOSTDET_VW 16
#elif defined(__AVX__)
#define GHOSTDET_VW 8
#else
#define GHOSTDET_VW 4
#endif

typedef float v16 __attribute__((vector_size(64)));
typedef float v8 __attribute__((vector_size(32)));
typedef float v4 __attribute__((vector_size(16)));
typedef int32_t vi16 __attribute__((vector_size(64)));
typedef int32_t vi8 __attribute__((vector_size(32)));
typedef int32_t vi4 __attribute__((vector_size(16)));

/* Unaligned vector load/store (compiles to a single unaligned move). */
#define LOADV(VT, p) ({ VT v_; memcpy(&v_, (p), sizeof(VT)); v_; })
#define STOREV(VT, p, v) do { VT s_ = (v); memcpy((p), &s_, sizeof(VT)); } while (0)
/* ReLU as a vector compare and bitwise and-not (a scalar loop here would not be vectorised);
 * clears lanes <= 0 only, so a NaN stays NaN as in torch.relu. */
#define RELUV(VI, a) do { a = (__typeof__(a))((VI)(a) & ~(VI)((a) <= (__typeof__(a)){0})); } while (0)

#endif
