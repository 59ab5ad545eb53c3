/* Circular cross-correlation over a range of lags: the direct, lag-blocked kernel and the
 * FFT route for wide lag ranges (csrc/_align.pxd chooses between them, nmr_prefer_fft).
 *
 * Both compute c[j] = sum_{i<n} r[i] * u[i + j] for 0 <= j < n_lags, where u is the
 * periodic extension of the second signal, laid out by the caller.
 */
#ifndef NMRLADDER_CORRELATE_H
#define NMRLADDER_CORRELATE_H

#include <math.h>
#include <stddef.h>
#include <string.h>

#include "multiversion.h"


/* The direct kernels, written once over a vector type and instantiated per instruction set:
 * 16-byte vectors for the portable baseline (SSE2, NEON), 32-byte vectors with FMA where the
 * CPU has AVX2 (chosen at run time; the build never uses -march=native). Lags go in blocks of
 * 8 vectors (each r[i] loaded once per block, 8 independent sums hide the add latency), the
 * rest in blocks of 2 vectors with 4 partial sums over i. */
typedef double nmr_d2 __attribute__((vector_size(16)));
typedef double nmr_d4 __attribute__((vector_size(32)));
typedef float nmr_f4 __attribute__((vector_size(16)));
typedef float nmr_f8 __attribute__((vector_size(32)));

#define NMR_LOAD(VT, p) __extension__({ VT v_; memcpy(&v_, (p), sizeof v_); v_; })

/* Values of u read past n + n_lags - 1 (narrow blocks round the lags up to 2 vectors). */
#define NMR_LAG_SLACK 64

/* The lags' worth of u beyond n that the direct kernels read: u holds n + this - 1 values. */
static inline ptrdiff_t nmr_padded_lags(ptrdiff_t n_lags)
{
    return n_lags + NMR_LAG_SLACK;
}

/* One block of lags j0.. of c[j] = sum_i r[i] * u[i + j] into the double array total[]. */
#define NMR_WIDE_BLOCK(VT, W, T, FROM, TO)                                                  \
    do {                                                                                   \
        VT a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0}, a5 = {0}, a6 = {0}, a7 = {0}; \
        for (ptrdiff_t i = (FROM); i < (TO); i++) {                                        \
            const T ri = r[i];                                                             \
            const T *up = u + i + j0;                                                      \
            a0 += ri * NMR_LOAD(VT, up);                                                   \
            a1 += ri * NMR_LOAD(VT, up + (W));                                             \
            a2 += ri * NMR_LOAD(VT, up + 2 * (W));                                         \
            a3 += ri * NMR_LOAD(VT, up + 3 * (W));                                         \
            a4 += ri * NMR_LOAD(VT, up + 4 * (W));                                         \
            a5 += ri * NMR_LOAD(VT, up + 5 * (W));                                         \
            a6 += ri * NMR_LOAD(VT, up + 6 * (W));                                         \
            a7 += ri * NMR_LOAD(VT, up + 7 * (W));                                         \
        }                                                                                  \
        for (int b = 0; b < (W); b++) {                                                    \
            total[b] += a0[b];                                                             \
            total[(W) + b] += a1[b];                                                       \
            total[2 * (W) + b] += a2[b];                                                   \
            total[3 * (W) + b] += a3[b];                                                   \
            total[4 * (W) + b] += a4[b];                                                   \
            total[5 * (W) + b] += a5[b];                                                   \
            total[6 * (W) + b] += a6[b];                                                   \
            total[7 * (W) + b] += a7[b];                                                   \
        }                                                                                  \
    } while (0)

#define NMR_NARROW_BLOCK(VT, W, T, FROM, TO)                                                \
    do {                                                                                   \
        VT a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0}, c0 = {0}, c1 = {0}, d0 = {0}, d1 = {0}; \
        ptrdiff_t i = (FROM);                                                              \
        for (; i + 4 <= (TO); i += 4) {                                                    \
            a0 += r[i] * NMR_LOAD(VT, u + i + j0);                                         \
            a1 += r[i] * NMR_LOAD(VT, u + i + j0 + (W));                                   \
            b0 += r[i + 1] * NMR_LOAD(VT, u + i + 1 + j0);                                 \
            b1 += r[i + 1] * NMR_LOAD(VT, u + i + 1 + j0 + (W));                           \
            c0 += r[i + 2] * NMR_LOAD(VT, u + i + 2 + j0);                                 \
            c1 += r[i + 2] * NMR_LOAD(VT, u + i + 2 + j0 + (W));                           \
            d0 += r[i + 3] * NMR_LOAD(VT, u + i + 3 + j0);                                 \
            d1 += r[i + 3] * NMR_LOAD(VT, u + i + 3 + j0 + (W));                           \
        }                                                                                  \
        for (; i < (TO); i++) {                                                            \
            a0 += r[i] * NMR_LOAD(VT, u + i + j0);                                         \
            a1 += r[i] * NMR_LOAD(VT, u + i + j0 + (W));                                   \
        }                                                                                  \
        a0 += (b0 + c0) + d0;                                                              \
        a1 += (b1 + c1) + d1;                                                              \
        for (int b = 0; b < (W); b++) {                                                    \
            total[b] += a0[b];                                                             \
            total[(W) + b] += a1[b];                                                       \
        }                                                                                  \
    } while (0)

/* c[j] = sum_{i<n} r[i] u[i + j], j < n_lags, in double; u holds n + nmr_padded_lags - 1. */
#define NMR_DEFINE_DIRECT(NAME, VT, W, ATTRIBUTES)                                          \
    ATTRIBUTES static void NAME(const double *r, const double *u, ptrdiff_t n,              \
                                ptrdiff_t n_lags, double *c)                               \
    {                                                                                      \
        double total[8 * (W)];                                                             \
        for (ptrdiff_t j0 = 0, step; j0 < n_lags; j0 += step) {                            \
            step = n_lags - j0 >= 8 * (W) ? 8 * (W) : 2 * (W);                             \
            for (int b = 0; b < 8 * (W); b++)                                              \
                total[b] = 0.0;                                                            \
            if (step == 8 * (W))                                                           \
                NMR_WIDE_BLOCK(VT, W, double, 0, n);                                       \
            else                                                                           \
                NMR_NARROW_BLOCK(VT, W, double, 0, n);                                     \
            for (ptrdiff_t b = 0; b < step && j0 + b < n_lags; b++)                        \
                c[j0 + b] = total[b];                                                      \
        }                                                                                  \
    }

/* Screening correlation for estimate_shift (csrc/_align.pxd): the same c in float32, twice
 * the lanes of the double kernel, accumulated in float32 over chunks of NMR_SCREEN_CHUNK
 * points and in double across chunks. For every lag,
 *     |c_screen - c_exact| <= nmr_screen_bound() * ||r|| * ||v||
 * (rounding of r and u to float32, and of chunk sums of NMR_SCREEN_CHUNK products; ||v||
 * over one period, which every lag's window of u covers once). */
#define NMR_SCREEN_CHUNK 1024

#define NMR_DEFINE_SCREEN(NAME, VT, W, ATTRIBUTES)                                          \
    ATTRIBUTES static void NAME(const float *r, const float *u, ptrdiff_t n,                \
                                ptrdiff_t n_lags, double *c)                               \
    {                                                                                      \
        double total[8 * (W)];                                                             \
        for (ptrdiff_t j0 = 0, step; j0 < n_lags; j0 += step) {                            \
            step = n_lags - j0 >= 8 * (W) ? 8 * (W) : 2 * (W);                             \
            for (int b = 0; b < 8 * (W); b++)                                              \
                total[b] = 0.0;                                                            \
            for (ptrdiff_t start = 0; start < n; start += NMR_SCREEN_CHUNK) {              \
                const ptrdiff_t stop = n - start < NMR_SCREEN_CHUNK ? n : start + NMR_SCREEN_CHUNK; \
                if (step == 8 * (W))                                                       \
                    NMR_WIDE_BLOCK(VT, W, float, start, stop);                             \
                else                                                                       \
                    NMR_NARROW_BLOCK(VT, W, float, start, stop);                           \
            }                                                                              \
            for (ptrdiff_t b = 0; b < step && j0 + b < n_lags; b++)                        \
                c[j0 + b] = total[b];                                                      \
        }                                                                                  \
    }

static inline double nmr_screen_bound(void)
{
    const double unit = 1.0 / 16777216.0; /* 2^-24 */
    return 1.01 * (NMR_SCREEN_CHUNK + 3) * unit + 1e-12;
}

NMR_DEFINE_DIRECT(nmr_correlate_direct_base, nmr_d2, 2, )
NMR_DEFINE_SCREEN(nmr_correlate_screen_base, nmr_f4, 4, )

#if defined(__x86_64__) && defined(__GNUC__) && !defined(NMRLADDER_NO_MULTIVERSION)
NMR_DEFINE_DIRECT(nmr_correlate_direct_avx2, nmr_d4, 4, __attribute__((target("avx2,fma"))))
NMR_DEFINE_SCREEN(nmr_correlate_screen_avx2, nmr_f8, 8, __attribute__((target("avx2,fma"))))

static inline int nmr_has_avx2(void)
{
    static int known = -1; /* a benign race: every thread computes the same value */
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return known;
}
#else
static inline int nmr_has_avx2(void) { return 0; }
#define nmr_correlate_direct_avx2 nmr_correlate_direct_base
#define nmr_correlate_screen_avx2 nmr_correlate_screen_base
#endif

static inline void nmr_correlate_direct(const double *r, const double *u, ptrdiff_t n,
                                        ptrdiff_t n_lags, double *c)
{
    if (nmr_has_avx2())
        nmr_correlate_direct_avx2(r, u, n, n_lags, c);
    else
        nmr_correlate_direct_base(r, u, n, n_lags, c);
}

static inline void nmr_correlate_screen(const float *r, const float *u, ptrdiff_t n,
                                        ptrdiff_t n_lags, double *c)
{
    if (nmr_has_avx2())
        nmr_correlate_screen_avx2(r, u, n, n_lags, c);
    else
        nmr_correlate_screen_base(r, u, n, n_lags, c);
}

/* Sums for centring and norms, four vector partial sums: a double sum is not vectorised
 * otherwise, and a single chain of adds waits on every add. */
static inline nmr_d4 nmr_load_f32_as_f64(const float *p)
{
    return __builtin_convertvector(NMR_LOAD(nmr_f4, p), nmr_d4);
}

#define NMR_DEFINE_SUM(NAME, T, LOAD4, SQUARE)                                              \
    NMR_MULTIVERSION static double NAME(const T *x, ptrdiff_t n)                           \
    {                                                                                      \
        nmr_d4 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, v0, v1, v2, v3;                     \
        ptrdiff_t i = 0;                                                                   \
        for (; i + 16 <= n; i += 16) {                                                     \
            v0 = LOAD4(x + i);                                                             \
            v1 = LOAD4(x + i + 4);                                                         \
            v2 = LOAD4(x + i + 8);                                                         \
            v3 = LOAD4(x + i + 12);                                                        \
            a0 += (SQUARE) ? v0 * v0 : v0;                                                 \
            a1 += (SQUARE) ? v1 * v1 : v1;                                                 \
            a2 += (SQUARE) ? v2 * v2 : v2;                                                 \
            a3 += (SQUARE) ? v3 * v3 : v3;                                                 \
        }                                                                                  \
        a0 += (a1 + a2) + a3;                                                              \
        double total = (a0[0] + a0[1]) + (a0[2] + a0[3]);                                  \
        for (; i < n; i++)                                                                 \
            total += (SQUARE) ? (double)x[i] * (double)x[i] : (double)x[i];                \
        return total;                                                                      \
    }

#define NMR_LOAD_F64(p) NMR_LOAD(nmr_d4, p)
NMR_DEFINE_SUM(nmr_sum_f32, float, nmr_load_f32_as_f64, 0)
NMR_DEFINE_SUM(nmr_sum_f64, double, NMR_LOAD_F64, 0)
NMR_DEFINE_SUM(nmr_sum_squares_f64, double, NMR_LOAD_F64, 1)

/* Smallest power of two >= n. */
static inline ptrdiff_t nmr_fft_size(ptrdiff_t n)
{
    ptrdiff_t size = 1;
    while (size < n)
        size <<= 1;
    return size;
}

/* Twiddles exp(-2 pi i k / size) for k < size / 2, interleaved (re, im). */
static void nmr_fft_twiddles(ptrdiff_t size, double *twiddles)
{
    const double step = -2.0 * 3.14159265358979323846 / (double)size;
    for (ptrdiff_t k = 0; k < size / 2; k++) {
        twiddles[2 * k] = cos(step * (double)k);
        twiddles[2 * k + 1] = sin(step * (double)k);
    }
}

/* In-place iterative radix-2 FFT of `size` interleaved complex values (size a power of two).
 * inverse != 0 uses the conjugate twiddles and does not divide by size. */
static void nmr_fft(double *z, ptrdiff_t size, const double *twiddles, int inverse)
{
    for (ptrdiff_t i = 1, j = 0; i < size; i++) {
        ptrdiff_t bit = size >> 1;
        for (; j & bit; bit >>= 1)
            j ^= bit;
        j ^= bit;
        if (i < j) {
            double t = z[2 * i]; z[2 * i] = z[2 * j]; z[2 * j] = t;
            t = z[2 * i + 1]; z[2 * i + 1] = z[2 * j + 1]; z[2 * j + 1] = t;
        }
    }
    const double sign = inverse ? -1.0 : 1.0;
    for (ptrdiff_t len = 2; len <= size; len <<= 1) {
        const ptrdiff_t half = len >> 1, stride = size / len;
        for (ptrdiff_t start = 0; start < size; start += len) {
            for (ptrdiff_t k = 0; k < half; k++) {
                const double wr = twiddles[2 * k * stride];
                const double wi = sign * twiddles[2 * k * stride + 1];
                double *a = z + 2 * (start + k), *b = z + 2 * (start + k + half);
                const double tr = b[0] * wr - b[1] * wi, ti = b[0] * wi + b[1] * wr;
                b[0] = a[0] - tr; b[1] = a[1] - ti;
                a[0] += tr; a[1] += ti;
            }
        }
    }
}

/* The same c as nmr_correlate_direct through one forward and one inverse FFT of
 * size = nmr_fft_size(n + n_lags - 1): r and u packed as the real and imaginary parts of one
 * signal, then conj(R) * U back-transformed. Zero padding to `size` leaves the needed lags
 * free of wrap-around. z and spectrum hold 2 * size doubles; twiddles (size doubles) come
 * from nmr_fft_twiddles(size, ...), computed once per size by the caller. */
static void nmr_correlate_fft(const double *r, const double *u, ptrdiff_t n, ptrdiff_t n_lags,
                              double *c, ptrdiff_t size, double *z, double *spectrum,
                              const double *twiddles)
{
    const ptrdiff_t u_len = n + n_lags - 1;
    for (ptrdiff_t k = 0; k < size; k++) {
        z[2 * k] = k < n ? r[k] : 0.0;
        z[2 * k + 1] = k < u_len ? u[k] : 0.0;
    }
    nmr_fft(z, size, twiddles, 0);
    for (ptrdiff_t k = 0; k < size; k++) {
        const ptrdiff_t mirror = (size - k) & (size - 1);
        const double zr = z[2 * k], zi = z[2 * k + 1];
        const double mr = z[2 * mirror], mi = z[2 * mirror + 1];
        const double rr = 0.5 * (zr + mr), ri = 0.5 * (zi - mi); /* spectrum of r */
        const double ur = 0.5 * (zi + mi), ui = -0.5 * (zr - mr); /* spectrum of u */
        spectrum[2 * k] = rr * ur + ri * ui;                       /* conj(R) * U */
        spectrum[2 * k + 1] = rr * ui - ri * ur;
    }
    nmr_fft(spectrum, size, twiddles, 1);
    for (ptrdiff_t j = 0; j < n_lags; j++)
        c[j] = spectrum[2 * j] / (double)size;
}

/* Cost model, in nanoseconds measured on the 2-core Zen 4 (docs/kernels.md): direct
 * ~ n * lags / 15 (15 multiply-adds per ns with AVX2); FFT ~ 5 * size * log2(size) for the
 * two transforms of size = nmr_fft_size(n + lags - 1). The crossover is near 2600 lags at
 * n = 32768 and near 900 lags at n = 4096. */
static inline int nmr_prefer_fft(ptrdiff_t n, ptrdiff_t n_lags)
{
    const double direct = (double)n * (double)n_lags / 15.0;
    const ptrdiff_t size = nmr_fft_size(n + n_lags - 1);
    const double fft = 5.0 * (double)size * log2((double)size);
    return fft < direct;
}

#endif
