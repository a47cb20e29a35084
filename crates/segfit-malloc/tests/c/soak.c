/* soak: a long-running, multi-threaded check of a malloc implementation.
 *
 * usage: soak SECONDS [THREADS]      (SOAK_VERBOSE=1 prints a line per second; SOAK_CHECK_TRIM=1
 *                                     also checks the RSS after malloc_trim, see below)
 *
 * THREADS workers (default 4) run for SECONDS, each for a random number of operations before it
 * exits and the main thread starts another in its place (so thread caches are created, retired
 * and handed on all the time). A worker keeps 1024 slots of blocks and does, at random: malloc,
 * calloc (checked zero), realloc (grow and shrink; the kept prefix checked), posix_memalign /
 * aligned_alloc / memalign (alignment checked), free, and hands blocks to a shared queue from which
 * any thread takes, checks and frees them (cross-thread frees, also of blocks whose allocating
 * thread has exited). Sizes are log-uniform 1 B..32 KiB, with 1 in 40 of 32 KiB..1 MiB and 1 in
 * 500 of 1..4 MiB. Every block is filled with a pattern derived from a tag and checked in full
 * before it is freed or reallocated, so a block handed out twice, overlapping blocks or a stray
 * write show up as a mismatch. malloc_usable_size must cover the request.
 *
 * Memory is checked too. The main thread samples RSS and the bytes the workers hold; the peak RSS
 * of the second half of the run must stay under 1.5x that of the first half plus 16 MiB (no creep
 * under a stationary load). With SOAK_CHECK_TRIM set, the RSS must also come back to within
 * 16 MiB of where it started once everything is freed and malloc_trim(0) was called (segfit gives
 * every free page back there; glibc keeps some in its thread arenas, and mimalloc, jemalloc and
 * tcmalloc do not implement malloc_trim).
 *
 * Prints one line "soak ok ..." and exits 0, or prints what failed and exits 1. */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SLOTS 1024
#define QUEUE 4096
#define MAX_THREADS 64

typedef struct {
    unsigned char *p;
    size_t size;
    uint64_t tag;
} block_t;

static atomic_long live_bytes;
static atomic_long total_ops;
static atomic_long cross_frees;
static atomic_int stop;

static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static block_t queue[QUEUE];
static int qhead, qlen;

static uint64_t next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void die(const char *what, const block_t *b) {
    fprintf(stderr, "soak: FAILED: %s (block %p, size %zu, tag %016llx)\n", what,
            b ? (void *)b->p : NULL, b ? b->size : 0, b ? (unsigned long long)b->tag : 0ULL);
    fflush(stderr);
    _exit(1);
}

/* The pattern: bytes 0..7 are the tag's bytes, every later byte is the tag's low byte plus its
 * offset / 64, so a block copied to the wrong offset or overlapping another fails. */
static unsigned char pat(uint64_t tag, size_t i) {
    return i < 8 ? (unsigned char)(tag >> (8 * i)) : (unsigned char)(tag + (i >> 6));
}

static void fill(block_t *b, size_t from) {
    for (size_t i = from; i < b->size; i++) b->p[i] = pat(b->tag, i);
}

static void check(const block_t *b, size_t upto) {
    for (size_t i = 0; i < upto; i++)
        if (b->p[i] != pat(b->tag, i)) die(i < 8 ? "block's tag overwritten" : "block's contents changed", b);
}

static size_t pick_size(uint64_t *rng) {
    uint64_t r = next(rng);
    unsigned bits;
    if (r % 500 == 0) bits = 20 + (unsigned)(next(rng) % 2);      /* 1..4 MiB */
    else if (r % 40 == 0) bits = 15 + (unsigned)(next(rng) % 5);  /* 32 KiB..1 MiB */
    else bits = (unsigned)(next(rng) % 15);                        /* 1 B..32 KiB */
    size_t lo = (size_t)1 << bits;
    return lo + (size_t)(next(rng) % lo);
}

static void release(block_t *b) {
    check(b, b->size);
    free(b->p);
    atomic_fetch_sub(&live_bytes, (long)b->size);
    b->p = NULL;
}

static void allocate(block_t *b, uint64_t *rng) {
    size_t n = pick_size(rng);
    b->tag = next(rng);
    b->size = n;
    unsigned kind = (unsigned)(next(rng) % 20);
    size_t align = 0;
    if (kind < 14) {
        b->p = malloc(n);
    } else if (kind < 16) {
        b->p = calloc(1, n);
        if (b->p)
            for (size_t i = 0; i < n; i++)
                if (b->p[i]) die("calloc returned non-zero memory", b);
    } else if (kind < 17) {
        b->p = realloc(NULL, n);
    } else {
        align = (size_t)16 << (next(rng) % 13); /* 16 B..64 KiB */
        if (kind == 17) {
            void *q = NULL;
            if (posix_memalign(&q, align, n) != 0) q = NULL;
            b->p = q;
        } else if (kind == 18) {
            b->p = aligned_alloc(align, (n + align - 1) & ~(align - 1));
        } else {
            b->p = memalign(align, n);
        }
        if (b->p && ((uintptr_t)b->p & (align - 1))) die("misaligned block", b);
    }
    if (!b->p) die("out of memory", b);
    if (malloc_usable_size(b->p) < n) die("malloc_usable_size below the request", b);
    fill(b, 0);
    atomic_fetch_add(&live_bytes, (long)n);
}

static void resize(block_t *b, uint64_t *rng) {
    size_t n = pick_size(rng);
    size_t keep = n < b->size ? n : b->size;
    check(b, b->size);
    unsigned char *q = realloc(b->p, n);
    if (!q) die("realloc failed", b);
    b->p = q;
    atomic_fetch_add(&live_bytes, (long)n - (long)b->size);
    size_t old = b->size;
    b->size = keep;
    check(b, keep);
    b->size = n;
    if (n > old) fill(b, keep);
}

/* Puts b on the queue (1) or leaves it with the caller when the queue is full (0). */
static int give(block_t *b) {
    int ok = 0;
    pthread_mutex_lock(&qlock);
    if (qlen < QUEUE) {
        queue[(qhead + qlen) % QUEUE] = *b;
        qlen++;
        ok = 1;
    }
    pthread_mutex_unlock(&qlock);
    if (ok) b->p = NULL;
    return ok;
}

static int take(block_t *b) {
    int ok = 0;
    pthread_mutex_lock(&qlock);
    if (qlen > 0) {
        *b = queue[qhead];
        qhead = (qhead + 1) % QUEUE;
        qlen--;
        ok = 1;
    }
    pthread_mutex_unlock(&qlock);
    return ok;
}

static void *worker(void *arg) {
    uint64_t rng = (uint64_t)(uintptr_t)arg * 0x2545f4914f6cdd1dULL + 1;
    long ops = 20000 + (long)(next(&rng) % 400000);
    block_t *slots = calloc(SLOTS, sizeof(block_t));
    if (!slots) die("out of memory (slots)", NULL);
    long done = 0;
    for (; done < ops && !atomic_load_explicit(&stop, memory_order_relaxed); done++) {
        block_t *b = &slots[next(&rng) % SLOTS];
        unsigned r = (unsigned)(next(&rng) % 16);
        if (!b->p) {
            allocate(b, &rng);
        } else if (r < 3) {
            resize(b, &rng);
        } else if (r < 5) {
            if (!give(b)) release(b);
        } else {
            release(b);
        }
        if ((done & 7) == 0) {
            block_t t;
            if (take(&t)) {
                release(&t);
                atomic_fetch_add(&cross_frees, 1);
            }
        }
    }
    /* On exit: a third of the blocks go to the queue (freed later by other threads, after this
     * thread is gone), the rest are freed here. */
    for (int i = 0; i < SLOTS; i++) {
        if (!slots[i].p) continue;
        if (i % 3 != 0 || !give(&slots[i])) release(&slots[i]);
    }
    free(slots);
    atomic_fetch_add(&total_ops, done);
    return NULL;
}

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = 0;
        fclose(f);
    }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

typedef struct {
    pthread_t th;
    atomic_int done;
    uintptr_t seed;
} slot_t;

static slot_t threads[MAX_THREADS];

static void *run(void *arg) {
    slot_t *s = arg;
    worker((void *)s->seed);
    atomic_store(&s->done, 1);
    return NULL;
}

static void start(slot_t *s, uintptr_t seed) {
    s->seed = seed;
    atomic_store(&s->done, 0);
    if (pthread_create(&s->th, NULL, run, s) != 0) die("pthread_create failed", NULL);
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 10;
    int nthreads = argc > 2 ? atoi(argv[2]) : 4;
    if (nthreads < 1 || nthreads > MAX_THREADS || !(seconds > 0)) {
        fprintf(stderr, "usage: soak SECONDS [THREADS 1..%d]\n", MAX_THREADS);
        return 2;
    }
    int verbose = getenv("SOAK_VERBOSE") != NULL;
    long rss0 = rss_kib();
    double t0 = now(), last = t0;
    uintptr_t seeds = 1;
    long started = 0, peak_first = 0, peak_second = 0, peak_live = 0;
    for (int i = 0; i < nthreads; i++, started++) start(&threads[i], seeds++);
    for (;;) {
        usleep(20000);
        double t = now();
        int ending = t - t0 >= seconds;
        if (ending) atomic_store(&stop, 1);
        for (int i = 0; i < nthreads; i++) {
            if (!atomic_load(&threads[i].done)) continue;
            pthread_join(threads[i].th, NULL);
            atomic_store(&threads[i].done, 0);
            if (ending) {
                threads[i].seed = 0; /* joined, not restarted */
            } else {
                start(&threads[i], seeds++);
                started++;
            }
        }
        long rss = rss_kib(), live = atomic_load(&live_bytes) / 1024;
        if (t - t0 < seconds / 2) {
            if (rss > peak_first) peak_first = rss;
        } else if (rss > peak_second) {
            peak_second = rss;
        }
        if (live > peak_live) peak_live = live;
        if (verbose && t - last >= 1.0) {
            last = t;
            fprintf(stderr, "soak: %6.1f s  rss %7ld KiB  live %7ld KiB  ops %ld  threads %ld\n",
                    t - t0, rss, live, atomic_load(&total_ops), started);
        }
        if (ending) {
            int all = 1;
            for (int i = 0; i < nthreads; i++)
                if (threads[i].seed) all = 0;
            if (all) break;
        }
    }
    block_t b;
    while (take(&b)) release(&b);
    if (atomic_load(&live_bytes) != 0) die("live byte count not back to zero", NULL);
    if (peak_second > peak_first + peak_first / 2 + 16384) {
        fprintf(stderr, "soak: FAILED: RSS crept: peak %ld KiB in the first half, %ld KiB in the second\n",
                peak_first, peak_second);
        return 1;
    }
    malloc_trim(0);
    usleep(200000);
    long rss_end = rss_kib();
    if (getenv("SOAK_CHECK_TRIM") && rss_end > rss0 + 16384) {
        fprintf(stderr, "soak: FAILED: RSS %ld KiB after freeing everything and malloc_trim (started at %ld KiB)\n",
                rss_end, rss0);
        return 1;
    }
    printf("soak ok: %.0f s, %ld operations, %ld threads, %ld cross-thread frees, peak live %ld KiB, "
           "peak RSS %ld / %ld KiB (first / second half), RSS %ld KiB at start, %ld KiB at the end\n",
           now() - t0, atomic_load(&total_ops), started, atomic_load(&cross_frees), peak_live,
           peak_first, peak_second, rss0, rss_end);
    return 0;
}
