/* Order-preserving unsigned keys of floats, for radix selection (csrc/_robust.pxd).
 *
 * key(a) < key(b)  <=>  a < b  for every non-NaN a, b; both zeros map to the key of +0.0.
 * A float32 key sits in the high half of the 64-bit key, so one selection routine serves
 * float32 and float64 input, and the leading bits shared by every key can be skipped.
 */
#ifndef NMRLADDER_ORDER_KEYS_H
#define NMRLADDER_ORDER_KEYS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "multiversion.h"

static inline uint64_t nmr_key_f32(float v)
{
    uint32_t u;
    v += 0.0f; /* -0.0 + 0.0 == +0.0: equal values get equal keys */
    memcpy(&u, &v, sizeof u);
    u ^= (uint32_t)((int32_t)u >> 31) | 0x80000000u; /* negative: all bits; else the sign */
    return (uint64_t)u << 32;
}

static inline float nmr_value_f32(uint64_t key)
{
    uint32_t u = (uint32_t)(key >> 32);
    float v;
    u ^= (u >> 31) ? 0x80000000u : 0xFFFFFFFFu;
    memcpy(&v, &u, sizeof v);
    return v;
}

static inline uint64_t nmr_key_f64(double v)
{
    uint64_t u;
    v += 0.0;
    memcpy(&u, &v, sizeof u);
    u ^= (uint64_t)((int64_t)u >> 63) | 0x8000000000000000ull;
    return u;
}

static inline double nmr_value_f64(uint64_t key)
{
    uint64_t u = key;
    double v;
    u ^= (u >> 63) ? 0x8000000000000000ull : 0xFFFFFFFFFFFFFFFFull;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* Number of low bits in which lo and hi differ (0 when equal): the bits left to resolve. */
static inline int nmr_varying_bits(uint64_t lo, uint64_t hi)
{
    return lo == hi ? 0 : 64 - __builtin_clzll(lo ^ hi);
}

/* Non-finite test on the bit pattern (exponent all ones), branch-free so loops vectorise. */
static inline int nmr_nonfinite_f32(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return (u & 0x7F800000u) == 0x7F800000u;
}

static inline int nmr_nonfinite_f64(double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return (u & 0x7FF0000000000000ull) == 0x7FF0000000000000ull;
}

/* Counts of x[i] < lo and of x[i] <= hi: the vectorisable pass of bracket selection
 * (csrc/_robust.pxd), int accumulators (what the vectoriser handles) over blocks that
 * cannot overflow them. */
#define NMR_COUNT_BLOCK ((ptrdiff_t)1 << 30)

NMR_MULTIVERSION
static void nmr_count_bracket_f32(const float *x, ptrdiff_t n, float lo, float hi,
                                  ptrdiff_t *below, ptrdiff_t *up_to)
{
    *below = 0;
    *up_to = 0;
    for (ptrdiff_t start = 0; start < n; start += NMR_COUNT_BLOCK) {
        const ptrdiff_t stop = n - start < NMR_COUNT_BLOCK ? n : start + NMR_COUNT_BLOCK;
        int b = 0, u = 0;
        for (ptrdiff_t i = start; i < stop; i++) {
            b += x[i] < lo;
            u += x[i] <= hi;
        }
        *below += b;
        *up_to += u;
    }
}

NMR_MULTIVERSION
static void nmr_count_bracket_f64(const double *x, ptrdiff_t n, double lo, double hi,
                                  ptrdiff_t *below, ptrdiff_t *up_to)
{
    *below = 0;
    *up_to = 0;
    for (ptrdiff_t start = 0; start < n; start += NMR_COUNT_BLOCK) {
        const ptrdiff_t stop = n - start < NMR_COUNT_BLOCK ? n : start + NMR_COUNT_BLOCK;
        int b = 0, u = 0;
        for (ptrdiff_t i = start; i < stop; i++) {
            b += x[i] < lo;
            u += x[i] <= hi;
        }
        *below += b;
        *up_to += u;
    }
}

/* out[:count] = the values of x inside [lo, hi], in order; returns count. A vectorised pass
 * marks each chunk's values in a byte array; the marks are then read 8 at a time, so that
 * when the bracket holds few values nearly every word is skipped on one branch. */
#define NMR_GATHER_CHUNK 512

#define NMR_GATHER_DEFINE(NAME, T)                                                         \
    NMR_MULTIVERSION                                                                       \
    static ptrdiff_t NAME(const T *x, ptrdiff_t n, T lo, T hi, T *out)                    \
    {                                                                                      \
        unsigned char inside[NMR_GATHER_CHUNK];                                            \
        ptrdiff_t count = 0;                                                               \
        for (ptrdiff_t start = 0; start < n; start += NMR_GATHER_CHUNK) {                  \
            const ptrdiff_t m = n - start < NMR_GATHER_CHUNK ? n - start : NMR_GATHER_CHUNK; \
            const T *chunk = x + start;                                                    \
            for (ptrdiff_t t = 0; t < m; t++)                                              \
                inside[t] = (chunk[t] >= lo) & (chunk[t] <= hi);                           \
            for (ptrdiff_t t = 0; t < m; t += 8) {                                         \
                uint64_t word = 0;                                                         \
                memcpy(&word, inside + t, m - t < 8 ? (size_t)(m - t) : 8);                \
                if (!word)                                                                 \
                    continue;                                                              \
                for (ptrdiff_t k = t; k < t + 8 && k < m; k++)                             \
                    if (inside[k])                                                         \
                        out[count++] = chunk[k];                                           \
            }                                                                              \
        }                                                                                  \
        return count;                                                                      \
    }

NMR_GATHER_DEFINE(nmr_gather_bracket_f32, float)
NMR_GATHER_DEFINE(nmr_gather_bracket_f64, double)

/* Residuals x[i] - trend[i] of the masked points (out[:count], returns count), the trend
 * being the mean of the masked values in [i - radius, i + radius] from the running sums
 * sums[0..n] and counts[0..n] of np.cumsum (csrc/_robust.pxd, mad_sigma_detrended_of).
 * trend holds n values of scratch. */
#define NMR_DETREND_DEFINE(NAME, T)                                                         \
    NMR_MULTIVERSION                                                                       \
    static ptrdiff_t NAME(const T *x, const unsigned char *mask, ptrdiff_t n,              \
                          ptrdiff_t radius, const double *sums, const double *counts,      \
                          double *trend, double *out)                                      \
    {                                                                                      \
        ptrdiff_t i = 0, count = 0;                                                        \
        for (; i < n && i < radius; i++) {                                                 \
            const ptrdiff_t hi = i + radius + 1 < n ? i + radius + 1 : n;                  \
            trend[i] = sums[hi] / counts[hi];                                              \
        }                                                                                  \
        for (; i < n - radius - 1; i++) /* no clamping: vectorised divisions */            \
            trend[i] = (sums[i + radius + 1] - sums[i - radius])                           \
                       / (counts[i + radius + 1] - counts[i - radius]);                    \
        for (; i < n; i++) {                                                               \
            const ptrdiff_t lo = i - radius > 0 ? i - radius : 0;                          \
            trend[i] = (sums[n] - sums[lo]) / (counts[n] - counts[lo]);                    \
        }                                                                                  \
        for (i = 0; i < n; i++) {                                                          \
            out[count] = (double)x[i] - trend[i];                                          \
            count += mask[i] != 0;                                                         \
        }                                                                                  \
        return count;                                                                      \
    }

NMR_DETREND_DEFINE(nmr_detrended_residuals_f32, float)
NMR_DETREND_DEFINE(nmr_detrended_residuals_f64, double)

/* out[i] = sum_j padded[i + j] * taps[j] for i < n (Savitzky-Golay on an edge-padded line,
 * csrc/_masks.pxd): blocks of outputs stay in L1 across the taps. */
#define NMR_SMOOTH_BLOCK 2048

NMR_MULTIVERSION
static void nmr_smooth_padded(const double *padded, ptrdiff_t n, const double *taps,
                              ptrdiff_t window, double *out)
{
    for (ptrdiff_t start = 0; start < n; start += NMR_SMOOTH_BLOCK) {
        const ptrdiff_t stop = n - start < NMR_SMOOTH_BLOCK ? n : start + NMR_SMOOTH_BLOCK;
        const double first = taps[0];
        for (ptrdiff_t i = start; i < stop; i++)
            out[i] = padded[i] * first;
        for (ptrdiff_t j = 1; j < window; j++) {
            const double tap = taps[j];
            for (ptrdiff_t i = start; i < stop; i++)
                out[i] += padded[i + j] * tap;
        }
    }
}

/* out[i] = |x[i] - center| in double (the MAD's deviations, csrc/_robust.pxd). */
#define NMR_DEVIATIONS_DEFINE(NAME, T)                                                     \
    NMR_MULTIVERSION                                                                       \
    static void NAME(const T *x, ptrdiff_t n, double center, double *out)                 \
    {                                                                                      \
        for (ptrdiff_t i = 0; i < n; i++)                                                  \
            out[i] = fabs((double)x[i] - center);                                          \
    }

NMR_DEVIATIONS_DEFINE(nmr_deviations_f32, float)
NMR_DEVIATIONS_DEFINE(nmr_deviations_f64, double)

/* out[i] = (float)(((double)x[i] - center) / sigma): the network's input (runtime/scaling.py),
 * rounded once from double as NumPy's (x - center) / sigma cast to float32 is. A division,
 * not a multiplication by 1 / sigma, so that the bits match. */
#define NMR_STANDARDISE_DEFINE(NAME, T)                                                    \
    NMR_MULTIVERSION                                                                       \
    static void NAME(const T *x, ptrdiff_t n, double center, double sigma, float *out)    \
    {                                                                                      \
        for (ptrdiff_t i = 0; i < n; i++)                                                  \
            out[i] = (float)(((double)x[i] - center) / sigma);                             \
    }

NMR_STANDARDISE_DEFINE(nmr_standardise_f32, float)
NMR_STANDARDISE_DEFINE(nmr_standardise_f64, double)

#endif
