# Order statistics without a full sort: MSD radix selection on order-preserving keys.
#
# The nogil core of robust.pyx, shared with the ladder chain. Every order statistic is an
# exact input value; the interpolations (even-length median, linear percentile) are done in
# double exactly as NumPy does them, so results equal np.median / np.percentile of the
# float64 copy that the reference takes.
#
# Selection of rank k among n values:
#   1. min/max of the input: the leading key bits shared by every value carry no order
#      information, so digits start below them;
#   2. histogram of the next digit (11 bits, fewer for a few hundred keys: digit_bits_for);
#      the bucket holding rank k is found by a prefix sum;
#   3. the keys of that bucket (of every requested rank's bucket, in one pass) are gathered;
#   4. the gathered keys are narrowed the same way until a handful remain, then sorted.
# Equal values share a key, so ties end the narrowing early (min == max). Of two adjacent
# ranks (an even-length median) the second is read off the first in one pass (next_key).

from libc.math cimport INFINITY, NAN, fabs, floor, nextafter, nextafterf
from libc.stdint cimport int8_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from _common cimport (
    MAD_TO_SIGMA,
    floating,
    nmr_count_bracket_f32,
    nmr_count_bracket_f64,
    nmr_detrended_residuals_f32,
    nmr_deviations_f32,
    nmr_deviations_f64,
    nmr_detrended_residuals_f64,
    nmr_gather_bracket_f32,
    nmr_gather_bracket_f64,
    nmr_key_f32,
    nmr_key_f64,
    nmr_value_f32,
    nmr_value_f64,
    nmr_varying_bits,
)

cdef enum:
    DIGIT_BITS = 11
    N_BUCKETS = 2048        # 1 << DIGIT_BITS
    N_TABLES = 4            # interleaved histograms: consecutive equal digits do not wait on
                            # each other's increment (store-to-load forwarding)
    SMALL_SELECTION = 32    # candidates finished by insertion sort
    MIN_DIGIT_BITS = 6      # the narrowest digit a histogram takes (digit_bits_for)
    MAX_RANKS = 4           # median (2 ranks) and one percentile (2 ranks) in one pass
    NO_REGION = -1          # region_of for buckets not gathered
    SAMPLE_SIZE = 1024      # bracket selection: sample from which the brackets are read
    SAMPLE_MARGIN = 48      # sample ranks on either side of the expected one (3 sigma at 1/2)
    BRACKET_MIN = 8192      # shorter inputs go straight to radix selection
    GATHER_TARGET = 256     # narrowing stops when the bracket holds this few values
    PIVOT_MARGIN = 3        # pivots either side of the interpolated position

# Flags of robust_stats_of: which statistics to compute.
cdef enum:
    WANT_MEDIAN = 1
    WANT_PERCENTILE = 2
    WANT_MAD = 4


cdef struct Selector:
    # Scratch of one thread, for inputs of up to `capacity` values.
    Py_ssize_t capacity
    uint64_t* candidates    # gathered keys of the buckets that hold the requested ranks
    uint64_t* work          # the keys being narrowed for one rank
    uint32_t* counts        # digit histograms, N_TABLES x N_BUCKETS
    int8_t* region_of       # bucket -> index of its gathered region, NO_REGION elsewhere
    double* deviations      # |x - median| for the MAD
    double* gathered        # masked values (read as float* or double*)
    double* bracketed       # capacity: values inside a bracket of select_ranks
    double* sample          # 2 x SAMPLE_SIZE: the sample, then the sorted pivots
    double* prefix_sums     # capacity + 1: running sums for the detrended MAD
    double* prefix_counts   # capacity + 1 (counts held as doubles: exact below 2**53)


cdef inline int selector_init(Selector* s, Py_ssize_t capacity) noexcept nogil:
    """Allocate scratch for inputs of up to `capacity` values; 0 on success, -1 on failure."""
    cdef Py_ssize_t size = capacity if capacity > 0 else 1
    s.capacity = capacity
    s.candidates = <uint64_t*>malloc(size * sizeof(uint64_t))
    s.work = <uint64_t*>malloc(size * sizeof(uint64_t))
    s.counts = <uint32_t*>malloc(N_TABLES * N_BUCKETS * sizeof(uint32_t))
    s.region_of = <int8_t*>malloc(N_BUCKETS * sizeof(int8_t))
    s.deviations = <double*>malloc(size * sizeof(double))
    s.gathered = <double*>malloc(size * sizeof(double))
    s.bracketed = <double*>malloc(size * sizeof(double))
    s.sample = <double*>malloc(2 * SAMPLE_SIZE * sizeof(double))
    s.prefix_sums = <double*>malloc((size + 1) * sizeof(double))
    s.prefix_counts = <double*>malloc((size + 1) * sizeof(double))
    if (s.candidates == NULL or s.work == NULL or s.counts == NULL or s.region_of == NULL
            or s.deviations == NULL or s.gathered == NULL or s.bracketed == NULL
            or s.sample == NULL or s.prefix_sums == NULL
            or s.prefix_counts == NULL):
        selector_free(s)
        return -1
    memset(s.region_of, NO_REGION, N_BUCKETS * sizeof(int8_t))
    return 0


cdef inline void selector_free(Selector* s) noexcept nogil:
    free(s.candidates)
    free(s.work)
    free(s.counts)
    free(s.region_of)
    free(s.deviations)
    free(s.gathered)
    free(s.bracketed)
    free(s.sample)
    free(s.prefix_sums)
    free(s.prefix_counts)
    s.bracketed = NULL
    s.sample = NULL
    s.prefix_sums = NULL
    s.prefix_counts = NULL
    s.candidates = NULL
    s.work = NULL
    s.counts = NULL
    s.region_of = NULL
    s.deviations = NULL
    s.gathered = NULL


cdef inline uint64_t key_of(floating value) noexcept nogil:
    if floating is float:
        return nmr_key_f32(value)
    else:
        return nmr_key_f64(value)


cdef inline int digit_bits_for(int bits, Py_ssize_t m) noexcept nogil:
    """The digit width for m keys whose varying bits are `bits`: DIGIT_BITS, narrowed while
    the buckets outnumber twice the keys. Clearing and summing N_TABLES x 2048 counters
    costs more than histogramming a few hundred keys (a bracket's gathered values, the
    bracket sample); more, narrower rounds give the same exact key."""
    cdef int digit_bits = DIGIT_BITS if bits > DIGIT_BITS else bits
    while digit_bits > MIN_DIGIT_BITS and (<Py_ssize_t>1 << digit_bits) > 2 * m:
        digit_bits -= 1
    return digit_bits


cdef inline void histogram_of_keys(const uint64_t* keys, Py_ssize_t m, int shift,
                                   uint64_t digit_mask, uint32_t* counts) noexcept nogil:
    """counts[d] = number of keys with digit (key >> shift) & digit_mask == d."""
    cdef Py_ssize_t i, size = <Py_ssize_t>digit_mask + 1
    memset(counts, 0, N_TABLES * size * sizeof(uint32_t))
    i = 0
    while i + N_TABLES <= m:
        counts[(keys[i] >> shift) & digit_mask] += 1
        counts[size + ((keys[i + 1] >> shift) & digit_mask)] += 1
        counts[2 * size + ((keys[i + 2] >> shift) & digit_mask)] += 1
        counts[3 * size + ((keys[i + 3] >> shift) & digit_mask)] += 1
        i += N_TABLES
    while i < m:
        counts[(keys[i] >> shift) & digit_mask] += 1
        i += 1
    for i in range(size):
        counts[i] += counts[size + i] + counts[2 * size + i] + counts[3 * size + i]


cdef inline uint32_t bucket_of_rank(const uint32_t* counts, Py_ssize_t* rank) noexcept nogil:
    """The bucket holding `rank`; rank becomes the rank inside that bucket."""
    cdef uint32_t bucket = 0
    while counts[bucket] <= rank[0]:
        rank[0] -= counts[bucket]
        bucket += 1
    return bucket


cdef inline uint64_t narrow_to_rank(uint64_t* keys, Py_ssize_t m, Py_ssize_t rank,
                                    uint32_t* counts) noexcept nogil:
    """The key of rank `rank` (0-based) among keys[:m]; reorders keys. np.partition on keys."""
    cdef Py_ssize_t i, j
    cdef uint64_t lo, hi, key, digit_mask
    cdef int bits, digit_bits, shift
    cdef uint64_t bucket
    while True:
        if m <= SMALL_SELECTION:
            for i in range(1, m):
                key = keys[i]
                j = i - 1
                while j >= 0 and keys[j] > key:
                    keys[j + 1] = keys[j]
                    j -= 1
                keys[j + 1] = key
            return keys[rank]
        lo = keys[0]
        hi = keys[0]
        for i in range(1, m):
            lo = keys[i] if keys[i] < lo else lo
            hi = keys[i] if keys[i] > hi else hi
        if lo == hi:
            return lo
        bits = nmr_varying_bits(lo, hi)
        digit_bits = digit_bits_for(bits, m)
        shift = bits - digit_bits
        digit_mask = (<uint64_t>1 << digit_bits) - 1
        histogram_of_keys(keys, m, shift, digit_mask, counts)
        bucket = bucket_of_rank(counts, &rank)
        j = 0
        for i in range(m):              # branch-free compaction
            key = keys[i]
            keys[j] = key
            j += ((key >> shift) & digit_mask) == bucket
        m = j


cdef inline uint64_t next_key(const uint64_t* keys, Py_ssize_t m, uint64_t key,
                              Py_ssize_t rank) noexcept nogil:
    """The key of rank + 1 among keys[:m], given `key`, the key of rank `rank`: `key` itself
    when more than rank + 1 keys are <= it, else the smallest key above it. One pass, where
    narrowing again from all m keys takes a histogram round or more (the two middle ranks of
    an even-length median)."""
    cdef Py_ssize_t i, at_most = 0
    cdef uint64_t above = <uint64_t>0xFFFFFFFFFFFFFFFF, k
    for i in range(m):
        k = keys[i]
        at_most += k <= key
        above = k if (k > key and k < above) else above
    return key if at_most > rank + 1 else above


cdef inline void value_range(const floating* x, Py_ssize_t n, floating* lo,
                             floating* hi) noexcept nogil:
    # min and max with 4 independent chains each (one chain waits on every compare).
    cdef floating lo0 = x[0], lo1 = x[0], lo2 = x[0], lo3 = x[0]
    cdef floating hi0 = x[0], hi1 = x[0], hi2 = x[0], hi3 = x[0], v
    cdef Py_ssize_t i = 0
    while i + 4 <= n:
        lo0 = x[i] if x[i] < lo0 else lo0
        hi0 = x[i] if x[i] > hi0 else hi0
        lo1 = x[i + 1] if x[i + 1] < lo1 else lo1
        hi1 = x[i + 1] if x[i + 1] > hi1 else hi1
        lo2 = x[i + 2] if x[i + 2] < lo2 else lo2
        hi2 = x[i + 2] if x[i + 2] > hi2 else hi2
        lo3 = x[i + 3] if x[i + 3] < lo3 else lo3
        hi3 = x[i + 3] if x[i + 3] > hi3 else hi3
        i += 4
    while i < n:
        lo0 = x[i] if x[i] < lo0 else lo0
        hi0 = x[i] if x[i] > hi0 else hi0
        i += 1
    lo0 = lo1 if lo1 < lo0 else lo0
    lo2 = lo3 if lo3 < lo2 else lo2
    hi0 = hi1 if hi1 > hi0 else hi0
    hi2 = hi3 if hi3 > hi2 else hi2
    lo[0] = lo2 if lo2 < lo0 else lo0
    hi[0] = hi2 if hi2 > hi0 else hi0


cdef inline void radix_select_ranks(const floating* x, Py_ssize_t n, const Py_ssize_t* ranks,
                                    int n_ranks, double* out, Selector* s) noexcept nogil:
    """out[j] = the value of rank ranks[j] (0-based) among x[:n], exactly, by radix
    selection (see the top of this file). Preconditions as select_ranks."""
    cdef Py_ssize_t i, j, m
    cdef floating lo_value, hi_value
    cdef uint64_t lo, hi, key, digit_mask
    cdef int bits, digit_bits, shift, g, n_regions = 0
    cdef uint32_t b
    cdef uint32_t bucket[MAX_RANKS]
    cdef Py_ssize_t local_rank[MAX_RANKS]
    cdef Py_ssize_t bucket_size[MAX_RANKS]
    cdef Py_ssize_t region_start[MAX_RANKS]
    cdef Py_ssize_t region_fill[MAX_RANKS]
    cdef Py_ssize_t size
    cdef uint32_t region_bucket[MAX_RANKS]
    cdef uint32_t* counts = s.counts

    value_range(x, n, &lo_value, &hi_value)
    lo = key_of(lo_value)
    hi = key_of(hi_value)
    if lo == hi:
        for j in range(n_ranks):
            out[j] = lo_value
        return

    bits = nmr_varying_bits(lo, hi)
    digit_bits = digit_bits_for(bits, n)
    shift = bits - digit_bits
    digit_mask = (<uint64_t>1 << digit_bits) - 1
    size = <Py_ssize_t>digit_mask + 1
    memset(counts, 0, N_TABLES * size * sizeof(uint32_t))
    i = 0
    while i + N_TABLES <= n:
        counts[(key_of(x[i]) >> shift) & digit_mask] += 1
        counts[size + ((key_of(x[i + 1]) >> shift) & digit_mask)] += 1
        counts[2 * size + ((key_of(x[i + 2]) >> shift) & digit_mask)] += 1
        counts[3 * size + ((key_of(x[i + 3]) >> shift) & digit_mask)] += 1
        i += N_TABLES
    while i < n:
        counts[(key_of(x[i]) >> shift) & digit_mask] += 1
        i += 1
    for i in range(size):
        counts[i] += counts[size + i] + counts[2 * size + i] + counts[3 * size + i]

    # The bucket of each rank, and one gathered region per distinct bucket.
    for j in range(n_ranks):
        local_rank[j] = ranks[j]
        b = bucket_of_rank(counts, &local_rank[j])
        bucket[j] = b
        bucket_size[j] = counts[b]
        if s.region_of[b] == NO_REGION:
            s.region_of[b] = <int8_t>n_regions
            region_bucket[n_regions] = b
            region_start[n_regions] = 0 if n_regions == 0 else (
                region_start[n_regions - 1] + counts[region_bucket[n_regions - 1]])
            region_fill[n_regions] = region_start[n_regions]
            n_regions += 1
    for i in range(n):
        key = key_of(x[i])
        g = s.region_of[(key >> shift) & digit_mask]
        if g != NO_REGION:               # rare, hence well predicted
            s.candidates[region_fill[g]] = key
            region_fill[g] += 1

    # narrow_to_rank reuses the histogram: bucket sizes were kept above.
    for j in range(n_ranks):
        g = s.region_of[bucket[j]]
        m = bucket_size[j]
        if j > 0 and bucket[j] == bucket[j - 1] and local_rank[j] == local_rank[j - 1] + 1:
            key = next_key(s.candidates + region_start[g], m, key, local_rank[j - 1])
        else:
            memcpy(s.work, s.candidates + region_start[g], m * sizeof(uint64_t))
            key = narrow_to_rank(s.work, m, local_rank[j], counts)
        if floating is float:
            out[j] = nmr_value_f32(key)
        else:
            out[j] = nmr_value_f64(key)
    for g in range(n_regions):
        s.region_of[region_bucket[g]] = NO_REGION


cdef inline void count_bracket(const floating* x, Py_ssize_t n, floating lo, floating hi,
                               Py_ssize_t* below, Py_ssize_t* up_to) noexcept nogil:
    # below = #(x < lo), up_to = #(x <= hi): one vectorised pass (multiversioned C).
    if floating is float:
        nmr_count_bracket_f32(x, n, lo, hi, below, up_to)
    else:
        nmr_count_bracket_f64(x, n, lo, hi, below, up_to)


cdef inline floating step_down(floating v) noexcept nogil:
    if floating is float:
        return nextafterf(v, -INFINITY)
    else:
        return nextafter(v, -INFINITY)


cdef inline floating step_up(floating v) noexcept nogil:
    if floating is float:
        return nextafterf(v, INFINITY)
    else:
        return nextafter(v, INFINITY)


cdef inline bint bracket_select_group(const floating* x, Py_ssize_t n, const Py_ssize_t* ranks,
                                      int n_ranks, double* out, floating* pivots,
                                      Py_ssize_t n_pivots, floating lo, floating hi,
                                      Selector* s) noexcept nogil:
    """Values of ranks[:n_ranks] (ascending) that lie in [lo, hi]; pivots: sorted sample values
    inside it. Narrows the bracket by counting passes at pivots (interpolated, else bisected)
    until few values remain, then gathers those and selects among them. False if a rank is
    outside [lo, hi]."""
    cdef Py_ssize_t below, up_to, at_most, less, a = 0, b = n_pivots - 1, mid, i, count
    cdef Py_ssize_t span, lo_index, hi_index
    cdef bint narrowed
    cdef Py_ssize_t first_rank = ranks[0], last_rank = ranks[n_ranks - 1]
    cdef floating* inside = <floating*>s.bracketed
    cdef uint64_t key
    cdef int j
    count_bracket(x, n, lo, hi, &below, &up_to)
    if below > first_rank or up_to <= last_rank:
        return False
    while a <= b and up_to - below > GATHER_TARGET:
        # Interpolation: the pivots split the bracket's values about evenly, so the ranks
        # sit near pivot a + (rank - below) * (pivots + 1) / span; one counting pass at two
        # pivots a few places either side usually leaves a bracket small enough to gather.
        span = up_to - below
        lo_index = a + ((first_rank - below) * (b - a + 2)) // span - PIVOT_MARGIN
        hi_index = a + ((last_rank - below) * (b - a + 2)) // span + PIVOT_MARGIN
        if lo_index <= a and hi_index >= b:       # too few pivots left to interpolate:
            mid = (a + b) // 2                    # bisect
            lo_index = mid
            hi_index = mid
        lo_index = a if lo_index < a else lo_index
        hi_index = b if hi_index > b else hi_index
        count_bracket(x, n, pivots[lo_index], pivots[hi_index], &less, &at_most)
        if less > last_rank:                     # every rank below the lower pivot
            hi = step_down(pivots[lo_index])
            up_to = less
            b = lo_index - 1
        elif at_most <= first_rank:              # every rank above the upper pivot
            lo = step_up(pivots[hi_index])
            below = at_most
            a = hi_index + 1
        elif lo_index == hi_index and less <= first_rank and at_most > last_rank:
            for j in range(n_ranks):             # a single pivot holds every rank: it is them
                out[j] = pivots[lo_index]
            return True
        else:                                    # each side that holds narrows
            narrowed = False
            if less <= first_rank:
                lo = pivots[lo_index]
                below = less
                a = lo_index + 1
                narrowed = True
            if at_most > last_rank:
                hi = pivots[hi_index]
                up_to = at_most
                b = hi_index - 1
                narrowed = True
            if not narrowed:                     # the ranks reach past both pivots
                break
    if floating is float:
        count = nmr_gather_bracket_f32(x, n, lo, hi, inside)
    else:
        count = nmr_gather_bracket_f64(x, n, lo, hi, inside)
    for i in range(count):
        s.candidates[i] = key_of(inside[i])  # kept: narrow_to_rank reorders its copy
    for j in range(n_ranks):
        if j > 0 and ranks[j] == ranks[j - 1] + 1:
            key = next_key(s.candidates, count, key, ranks[j - 1] - below)
        else:
            memcpy(s.work, s.candidates, count * sizeof(uint64_t))
            key = narrow_to_rank(s.work, count, ranks[j] - below, s.counts)
        if floating is float:
            out[j] = nmr_value_f32(key)
        else:
            out[j] = nmr_value_f64(key)
    return True


cdef inline bint bracket_select_ranks(const floating* x, Py_ssize_t n, const Py_ssize_t* ranks,
                                      int n_ranks, double* out, Selector* s) noexcept nogil:
    """Floyd-Rivest-style selection: a bracket around the requested ranks is read off a
    sample (radix-selected); vectorised counting passes at sample values inside it narrow it
    (bisection) until a few values remain; one pass gathers them and they are selected by
    radix. Ranks far apart (median and P95) get one bracket each. Returns False, with
    nothing written, when a rank falls outside its bracket: the caller then uses radix
    selection on the whole input.
    """
    cdef Py_ssize_t i, j, k, t, stride = n // SAMPLE_SIZE, n_pivots
    cdef Py_ssize_t group_start, group_end
    cdef Py_ssize_t bounds_ranks[2]
    cdef double bounds[2]
    cdef double values[MAX_RANKS]
    cdef Py_ssize_t order[MAX_RANKS]
    cdef Py_ssize_t sorted_ranks[MAX_RANKS]
    cdef floating* sample = <floating*>s.sample
    cdef floating* pivots = (<floating*>s.sample) + SAMPLE_SIZE
    cdef floating lo, hi, v
    cdef Py_ssize_t first, last
    cdef uint32_t jitter

    # The sample: one value per stride, jittered by a fixed hash (only speed depends on it),
    # its 32 bits mapped onto [0, stride) by a multiply and a shift: no division per value.
    for i in range(SAMPLE_SIZE):
        jitter = <uint32_t>(<uint64_t>i * 2654435761u)
        sample[i] = x[i * stride + <Py_ssize_t>((<uint64_t>jitter * <uint64_t>stride) >> 32)]

    # The ranks in ascending order (at most MAX_RANKS: insertion sort of their indices).
    for j in range(n_ranks):
        order[j] = j
        k = j
        while k > 0 and ranks[order[k - 1]] > ranks[j]:
            order[k] = order[k - 1]
            k -= 1
        order[k] = j
    for j in range(n_ranks):
        sorted_ranks[j] = ranks[order[j]]

    # Groups of ranks whose sample ranges overlap share one bracket.
    group_start = 0
    while group_start < n_ranks:
        t = <Py_ssize_t>((<double>sorted_ranks[group_start] * SAMPLE_SIZE) / n)
        first = t - SAMPLE_MARGIN
        group_end = group_start + 1
        while group_end < n_ranks:
            k = <Py_ssize_t>((<double>sorted_ranks[group_end] * SAMPLE_SIZE) / n)
            if k - SAMPLE_MARGIN > <Py_ssize_t>((<double>sorted_ranks[group_end - 1]
                                                 * SAMPLE_SIZE) / n) + SAMPLE_MARGIN:
                break
            group_end += 1
        last = <Py_ssize_t>((<double>sorted_ranks[group_end - 1] * SAMPLE_SIZE) / n) + SAMPLE_MARGIN
        first = 0 if first < 0 else first
        last = SAMPLE_SIZE - 1 if last > SAMPLE_SIZE - 1 else last
        bounds_ranks[0] = first
        bounds_ranks[1] = last
        radix_select_ranks(sample, SAMPLE_SIZE, bounds_ranks, 2, bounds, s)
        # Open at the sample's ends, so that extreme ranks stay inside.
        lo = <floating>(-INFINITY if first == 0 else bounds[0])
        hi = <floating>(INFINITY if last == SAMPLE_SIZE - 1 else bounds[1])
        # Pivots: the sample values strictly inside the bracket, sorted.
        n_pivots = 0
        for i in range(SAMPLE_SIZE):
            v = sample[i]
            if v > lo and v < hi:
                k = n_pivots
                while k > 0 and pivots[k - 1] > v:
                    pivots[k] = pivots[k - 1]
                    k -= 1
                pivots[k] = v
                n_pivots += 1
        if not bracket_select_group(x, n, sorted_ranks + group_start, <int>(group_end - group_start),
                                    values + group_start, pivots, n_pivots, lo, hi, s):
            return False
        group_start = group_end
    for j in range(n_ranks):
        out[order[j]] = values[j]
    return True


cdef inline void select_ranks(const floating* x, Py_ssize_t n, const Py_ssize_t* ranks,
                              int n_ranks, double* out, Selector* s) noexcept nogil:
    """out[j] = the value of rank ranks[j] (0-based) among x[:n], exactly.

    NumPy equivalent: ``np.partition(x, ranks)[ranks]``. 1 <= n <= s.capacity,
    0 <= ranks[j] < n, n_ranks <= MAX_RANKS, no NaN in x.
    """
    if n >= BRACKET_MIN and bracket_select_ranks(x, n, ranks, n_ranks, out, s):
        return
    radix_select_ranks(x, n, ranks, n_ranks, out, s)


cdef inline int median_ranks(Py_ssize_t n, Py_ssize_t* ranks) noexcept nogil:
    """Ranks whose mean is the median (np.median): one for odd n, two for even n."""
    if n % 2:
        ranks[0] = n // 2
        return 1
    ranks[0] = n // 2 - 1
    ranks[1] = n // 2
    return 2


cdef inline double median_from(const double* values, int count) noexcept nogil:
    return values[0] if count == 1 else (values[0] + values[1]) / 2.0


cdef inline int percentile_ranks(Py_ssize_t n, double q, Py_ssize_t* ranks,
                                 double* gamma) noexcept nogil:
    """Ranks and weight of np.percentile(x, q) (method "linear"); 0 <= q <= 100."""
    cdef double virtual_index = (n - 1) * (q / 100.0)
    cdef double previous
    if virtual_index >= n - 1:
        ranks[0] = n - 1
        gamma[0] = 0.0
        return 1
    previous = floor(virtual_index)
    ranks[0] = <Py_ssize_t>previous
    ranks[1] = ranks[0] + 1
    gamma[0] = virtual_index - previous
    return 2


cdef inline double percentile_from(const double* values, int count, double gamma) noexcept nogil:
    # NumPy's _lerp: a + (b - a) * t, or b - (b - a) * (1 - t) from t = 0.5 on.
    cdef double a, diff
    if count == 1:
        return values[0]
    a = values[0]
    diff = values[1] - a
    if gamma >= 0.5:
        return values[1] - diff * (1.0 - gamma)
    return a + diff * gamma


cdef inline double median_of(const floating* x, Py_ssize_t n, Selector* s) noexcept nogil:
    """np.median(x[:n]) of the float64 values; NaN when n == 0."""
    cdef Py_ssize_t ranks[2]
    cdef double values[2]
    cdef int count
    values[0] = values[1] = 0.0
    if n == 0:
        return NAN
    count = median_ranks(n, ranks)
    select_ranks(x, n, ranks, count, values, s)
    return median_from(values, count)


cdef inline double mad_sigma_around(const floating* x, Py_ssize_t n, double median,
                                    Selector* s) noexcept nogil:
    """1.4826 * np.median(np.abs(x - median)) in float64; NaN when n == 0."""
    if n == 0:
        return NAN
    if floating is float:
        nmr_deviations_f32(x, n, median, s.deviations)
    else:
        nmr_deviations_f64(x, n, median, s.deviations)
    return MAD_TO_SIGMA * median_of(s.deviations, n, s)


cdef inline void robust_stats_of(const floating* x, Py_ssize_t n, double q, int want,
                                 double* median, double* percentile, double* sigma,
                                 Selector* s) noexcept nogil:
    """Median, q-th percentile and MAD sigma of x[:n] (those flagged in `want`), one selection
    pass for the median and the percentile together. NaN for n == 0.

    NumPy equivalent: ``np.median(x)``, ``np.percentile(x, q)``,
    ``1.4826 * np.median(np.abs(x - np.median(x)))`` on ``x.astype(np.float64)``.
    """
    cdef Py_ssize_t ranks[MAX_RANKS]
    cdef double values[MAX_RANKS]
    cdef double gamma = 0.0
    cdef int j, n_median = 0, n_percentile = 0
    for j in range(MAX_RANKS):
        values[j] = 0.0
    if n == 0:
        median[0] = NAN
        percentile[0] = NAN
        sigma[0] = NAN
        return
    if want & (WANT_MEDIAN | WANT_MAD):
        n_median = median_ranks(n, ranks)
    if want & WANT_PERCENTILE:
        n_percentile = percentile_ranks(n, q, ranks + n_median, &gamma)
    select_ranks(x, n, ranks, n_median + n_percentile, values, s)
    if n_median:
        median[0] = median_from(values, n_median)
    if n_percentile:
        percentile[0] = percentile_from(values + n_median, n_percentile, gamma)
    if want & WANT_MAD:
        sigma[0] = mad_sigma_around(x, n, median[0], s)


cdef inline Py_ssize_t gather_masked(const floating* x, const uint8_t* mask, Py_ssize_t n,
                                     floating* out) noexcept nogil:
    """out[:count] = x[mask]; returns count. Branch-free (out needs room for n values)."""
    cdef Py_ssize_t i, count = 0
    for i in range(n):
        out[count] = x[i]
        count += mask[i] != 0
    return count


cdef inline double mad_sigma_detrended_of(const floating* x, const uint8_t* mask, Py_ssize_t n,
                                          Py_ssize_t radius, Selector* s) noexcept nogil:
    """MAD sigma over the masked points after removing the local mean of the masked values in
    [i - radius, i + radius]; NaN for an empty mask. radius >= 0.

    NumPy equivalent: ``reference.mad_sigma_detrended(x, mask, radius)``, with its running
    sums (np.cumsum's, sequential) to the last bit.
    """
    cdef Py_ssize_t i, count
    cdef double* sums = s.prefix_sums
    cdef double* counts = s.prefix_counts
    cdef double* residuals = s.gathered
    cdef double median = 0.0, unused = 0.0, sigma = 0.0, running = 0.0, running_count = 0.0
    cdef bint inside
    # Running sums kept in registers; the sum itself is sequential, as np.cumsum's.
    sums[0] = 0.0
    counts[0] = 0.0
    for i in range(n):
        inside = mask[i] != 0
        running = running + (<double>x[i] if inside else 0.0)
        running_count += inside
        sums[i + 1] = running
        counts[i + 1] = running_count
    if running_count == 0:
        return NAN
    # s.deviations is free until the MAD of the residuals: it holds the trend meanwhile.
    if floating is float:
        count = nmr_detrended_residuals_f32(x, mask, n, radius, sums, counts, s.deviations,
                                            residuals)
    else:
        count = nmr_detrended_residuals_f64(x, mask, n, radius, sums, counts, s.deviations,
                                            residuals)
    robust_stats_of(residuals, count, 0.0, WANT_MEDIAN | WANT_MAD, &median, &unused, &sigma, s)
    return sigma
