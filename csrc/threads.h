/* OpenMP thread count, with a fallback when the kernels are built without OpenMP. */
#ifndef NMRLADDER_THREADS_H
#define NMRLADDER_THREADS_H

#ifdef _OPENMP
#include <omp.h>
static inline int nmr_max_threads(void) { return omp_get_max_threads(); }
#else
static inline int nmr_max_threads(void) { return 1; }
#endif

#endif
