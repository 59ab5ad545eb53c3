/* Function multiversioning for the few hot loops that gain from wider vectors: each is
 * compiled for the portable x86-64 baseline and for x86-64-v3/v4, and the loader picks the
 * best the CPU supports (the build itself never uses -march=native). */
#ifndef NMRLADDER_MULTIVERSION_H
#define NMRLADDER_MULTIVERSION_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(NMRLADDER_NO_MULTIVERSION)
#define NMR_MULTIVERSION __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define NMR_MULTIVERSION
#endif

#endif
