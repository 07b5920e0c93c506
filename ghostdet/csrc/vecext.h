/* Vector types and helpers shared by ghostdet's native kernels (GCC/Clang vector extensions:
 * the compiler lowers them to whatever SIMD width -march gives it). */
#ifndef GHOSTDET_VECEXT_H
#define GHOSTDET_VECEXT_H
#include <stdint.h>
#include <string.h>

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
