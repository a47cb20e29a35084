/* Contract tests for libsegfit (CONTRACT.md, "The contract checklist").
 *
 * Run as `contract <name>` with libsegfit preloaded; each test runs in its own process and exits 0
 * on success. A failed check prints "FAIL <file>:<line>: <expr>" and exits 1. The Rust driver
 * (tests/contract.rs) runs every name listed by `contract --list`.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

void free_sized(void *, size_t);
void free_aligned_sized(void *, size_t, size_t);
size_t segfit_collect(void);

#define CHECK(e)                                                                      \
    do {                                                                              \
        if (!(e)) {                                                                   \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #e);              \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)
#define ALIGNED(p, a) (((uintptr_t)(p) & ((uintptr_t)(a)-1)) == 0)
/* Keeps the compiler from reasoning about allocator results (we also build -fno-builtin). */
static void *volatile sink;
static size_t PAGE;
static volatile size_t big_zero = 0; /* defeats constant folding of huge sizes */

static void fill(void *p, size_t n, unsigned seed) {
    unsigned char *c = p;
    for (size_t i = 0; i < n; i++) c[i] = (unsigned char)(seed + i * 7);
}
static int check_fill(const void *p, size_t n, unsigned seed) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i] != (unsigned char)(seed + i * 7)) return 0;
    return 1;
}

/* Sizes around every size class boundary (the classes are at most 12.5% apart, so stepping
 * through every size up to 40 KiB covers each boundary +-1) and into the large and huge paths. */
static size_t sizes[4096];
static int nsizes;
static void make_sizes(void) {
    nsizes = 0;
    for (size_t s = 0; s <= 256; s++) sizes[nsizes++] = s;
    for (size_t s = 272; s <= 40000; s += s / 16) { sizes[nsizes++] = s - 1; sizes[nsizes++] = s; sizes[nsizes++] = s + 1; }
    for (int k = 15; k <= 26; k++) {
        size_t s = (size_t)1 << k;
        sizes[nsizes++] = s - 1; sizes[nsizes++] = s; sizes[nsizes++] = s + 1;
    }
    sizes[nsizes++] = (32u << 20) + 1; /* just above the huge threshold */
}

static int s1(void) { void *p = malloc(0); CHECK(p); free(p); return 0; }
static int s2(void) { void *a = malloc(0), *b = malloc(0); CHECK(a && b && a != b); free(a); free(b); return 0; }
static int s3(void) {
    for (size_t n = 1; n <= 64; n++) { void *p = malloc(n); CHECK(p && ALIGNED(p, 16)); free(p); }
    return 0;
}
static int s4(void) {
    for (size_t n = 65; n <= 40000; n++) { void *p = malloc(n); CHECK(p && ALIGNED(p, 16)); free(p); }
    for (int i = 0; i < nsizes; i++) { void *p = malloc(sizes[i]); CHECK(p && ALIGNED(p, 16)); free(p); }
    return 0;
}
static int s5(void) {
    errno = 0; void *p = malloc((size_t)PTRDIFF_MAX + 1 + big_zero); CHECK(!p && errno == ENOMEM);
    return 0;
}
static int s6(void) {
    free(malloc(10));
    for (size_t k = 0; k < 16384; k++) {
        errno = 0; void *p = malloc(SIZE_MAX - k - big_zero); CHECK(!p && errno == ENOMEM);
        if (k % 1000 == 0) free(malloc(k));
    }
    return 0;
}
static int s7_first(void) { free(NULL); return 0; } /* run before anything else in main */
static int s8(void) {
    size_t ns[] = {16, 1000, 32768, 100000, 1 << 20, 40 << 20};
    for (int i = 0; i < 6; i++) {
        void *p = malloc(ns[i]); CHECK(p);
        errno = 4242; free(p); CHECK(errno == 4242);
    }
    /* many frees, so bins overflow into the central lists */
    void *v[2000];
    for (int i = 0; i < 2000; i++) v[i] = malloc(48);
    errno = 4243;
    for (int i = 0; i < 2000; i++) free(v[i]);
    CHECK(errno == 4243);
    return 0;
}
#define KEEP_ERRNO(stmt) do { errno = 777; stmt; CHECK(errno == 777); } while (0)
static int s9(void) {
    void *p, *q;
    for (int i = 0; i < nsizes; i++) {
        size_t n = sizes[i];
        KEEP_ERRNO(p = malloc(n)); CHECK(p);
        KEEP_ERRNO(q = realloc(p, n * 2 + 1)); CHECK(q);
        KEEP_ERRNO(p = realloc(q, n / 2 + 1)); CHECK(p);
        KEEP_ERRNO(free(p));
        KEEP_ERRNO(p = calloc(1, n)); CHECK(p); KEEP_ERRNO(free(p));
        KEEP_ERRNO(p = memalign(256, n)); CHECK(p); KEEP_ERRNO(free(p));
        KEEP_ERRNO(p = aligned_alloc(4096, n)); CHECK(p); KEEP_ERRNO(free(p));
        KEEP_ERRNO(CHECK(posix_memalign(&p, 64, n) == 0)); KEEP_ERRNO(free(p));
        KEEP_ERRNO(p = valloc(n)); CHECK(p); KEEP_ERRNO(free(p));
        KEEP_ERRNO(p = pvalloc(n)); CHECK(p); KEEP_ERRNO(malloc_usable_size(p)); KEEP_ERRNO(free(p));
        KEEP_ERRNO(p = reallocarray(NULL, 3, n)); CHECK(p); KEEP_ERRNO(free(p));
    }
    KEEP_ERRNO(malloc_trim(0));
    KEEP_ERRNO(segfit_collect());
    return 0;
}
static int s10(void) {
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < nsizes; i++) {
            size_t n = sizes[i];
            void *d = malloc(n); CHECK(d); memset(d, 0xAA, n); free(d);
            unsigned char *p = calloc(1, n); CHECK(p);
            for (size_t j = 0; j < n; j++) CHECK(p[j] == 0);
            memset(p, 0x55, n);
            free(p);
        }
    return 0;
}
static int s11(void) {
    void *a = calloc(0, 16), *b = calloc(16, 0), *c = calloc(0, 0);
    CHECK(a && b && c); free(a); free(b); free(c); return 0;
}
static int s12(void) {
    size_t cases[][2] = {{SIZE_MAX, 2}, {((size_t)1 << 32) + 1, (size_t)1 << 32}, {SIZE_MAX, SIZE_MAX}, {(size_t)1 << 33, (size_t)1 << 31}};
    for (int i = 0; i < 4; i++) { errno = 0; void *p = calloc(cases[i][0], cases[i][1] + big_zero); CHECK(!p && errno == ENOMEM); }
    return 0;
}
static int s13(void) {
    void *p = realloc(NULL, 100); CHECK(p && ALIGNED(p, 16)); memset(p, 1, 100); free(p);
    p = realloc(NULL, 0); CHECK(p); free(p);
    p = realloc(NULL, 1 << 20); CHECK(p); free(p);
    return 0;
}
static int s14(void) {
    for (int i = 0; i + 1 < nsizes; i += 3) {
        size_t a = sizes[i], b = sizes[nsizes - 1 - i];
        void *p = malloc(a); CHECK(p); fill(p, a, (unsigned)i);
        void *q = realloc(p, b); CHECK(q); CHECK(check_fill(q, a < b ? a : b, (unsigned)i));
        fill(q, b, (unsigned)i + 1);
        void *r = realloc(q, a + 1); CHECK(r); CHECK(check_fill(r, a + 1 < b ? a + 1 : b, (unsigned)i + 1));
        free(r);
    }
    /* step a block up through every size and back down */
    char *p = malloc(1); p[0] = 42;
    for (size_t n = 2; n < (3u << 20); n += n / 3 + 1) { p = realloc(p, n); CHECK(p && p[0] == 42 && p[n / 2 - n / 2] == 42); p[n - 1] = 7; CHECK(p[n - 1] == 7); }
    for (size_t n = 3u << 20; n > 1; n /= 3) { p = realloc(p, n); CHECK(p && p[0] == 42); }
    free(p);
    return 0;
}
static int s15(void) {
    size_t huge[] = {SIZE_MAX, (size_t)PTRDIFF_MAX + 1, (size_t)1 << 62, (size_t)1 << 50};
    size_t start[] = {10, 5000, 100000, 40 << 20};
    for (int s = 0; s < 4; s++)
        for (int h = 0; h < 4; h++) {
            void *p = malloc(start[s]); CHECK(p); fill(p, start[s], 9);
            errno = 0; void *q = realloc(p, huge[h] + big_zero);
            CHECK(!q && errno == ENOMEM && check_fill(p, start[s], 9));
            free(p);
        }
    return 0;
}
static int s16(void) {
    size_t ns[] = {1, 100, 40000, 40 << 20};
    for (int i = 0; i < 4; i++) {
        void *p = malloc(ns[i]); CHECK(p);
        errno = 99; void *q = realloc(p, 0); CHECK(q == NULL && errno == 99);
    }
    /* freed for real: the same slot is handed out again, and no leak over many rounds */
    for (int i = 0; i < 100000; i++) { void *p = malloc(200); CHECK(realloc(p, 0) == NULL); }
    return 0;
}
static int s17(void) {
    void *p = malloc(64); fill(p, 64, 3);
    errno = 0; CHECK(reallocarray(p, SIZE_MAX, 2) == NULL && errno == ENOMEM && check_fill(p, 64, 3));
    errno = 0; CHECK(reallocarray(p, SIZE_MAX - 1, SIZE_MAX - 1) == NULL && errno == ENOMEM && check_fill(p, 64, 3));
    free(p); return 0;
}
static int s18(void) { errno = 5; void *p = reallocarray(NULL, 0, 16); CHECK(p && errno == 5); free(p); return 0; }
static int s19(void) {
    for (int k = 0; k <= 30; k++) {
        size_t a = (size_t)1 << k;
        size_t ns[] = {1, a, a + 1, 3 * a};
        for (int j = 0; j < 4; j++) {
            if (ns[j] > (256u << 20)) continue;
            void *p = aligned_alloc(a, ns[j]); CHECK(p && ALIGNED(p, a) && ALIGNED(p, 16));
            memset(p, 1, ns[j]); free(p);
        }
    }
    return 0;
}
static int s20(void) {
    size_t bad[] = {65, 0, 3, SIZE_MAX / 2 + 2, 24, SIZE_MAX};
    for (int i = 0; i < 6; i++) { errno = 0; CHECK(aligned_alloc(bad[i] + big_zero, 64) == NULL && errno == EINVAL); }
    /* bad input 28: a huge size with a big alignment must not wrap while rounding */
    errno = 0; CHECK(aligned_alloc(1 << 20, SIZE_MAX - (1 << 19) + big_zero) == NULL && errno == ENOMEM);
    errno = 0; CHECK(memalign(1 << 20, SIZE_MAX - (1 << 19) + big_zero) == NULL && errno == ENOMEM);
    return 0;
}
static int s21(void) { void *p = aligned_alloc(64, 100); CHECK(p && ALIGNED(p, 64)); free(p); return 0; }
static int s22(void) {
    for (int k = 3; k <= 30; k++) {
        size_t a = (size_t)1 << k; void *p = NULL;
        CHECK(posix_memalign(&p, a, 100) == 0 && p && ALIGNED(p, a)); free(p);
        CHECK(posix_memalign(&p, a, a * 2 + 1) == 0 && p && ALIGNED(p, a)); free(p);
    }
    return 0;
}
static int s23_24(void) {
    size_t bad[] = {0, 3, 4, 24, 0x300, 15, SIZE_MAX};
    for (int i = 0; i < 7; i++) {
        void *p = (void *)0x1234; errno = 66;
        CHECK(posix_memalign(&p, bad[i] + big_zero, 10) == EINVAL && p == (void *)0x1234 && errno == 66);
    }
    return 0;
}
static int s25(void) {
    void *p = (void *)0x1234;
    CHECK(posix_memalign(&p, 8, SIZE_MAX - big_zero) == ENOMEM && p == (void *)0x1234);
    CHECK(posix_memalign(&p, PAGE, -PAGE + big_zero) == ENOMEM && p == (void *)0x1234);
    return 0;
}
static int s26(void) { void *p = NULL; CHECK(posix_memalign(&p, 8, 0) == 0 && p); free(p); return 0; }
static int s27(void) {
    size_t as[] = {3, 24, 48, 100, 0x300, 5000, 65537};
    for (int i = 0; i < 7; i++) {
        size_t r = 1; while (r < as[i]) r <<= 1;
        void *p = memalign(as[i], 100); CHECK(p && ALIGNED(p, r)); free(p);
    }
    void *p = memalign(0, 10); CHECK(p); free(p);
    return 0;
}
static int s28(void) {
    errno = 0; CHECK(memalign(SIZE_MAX - big_zero, PAGE) == NULL && errno == EINVAL);
    errno = 0; CHECK(memalign(SIZE_MAX / 2 + 2 + big_zero, PAGE) == NULL && errno == EINVAL);
    errno = 0; CHECK(memalign(PAGE, -PAGE + big_zero) == NULL && errno == ENOMEM);
    return 0;
}
static int s29(void) {
    size_t ns[] = {0, 1, 4096, 4097, 100000, 40 << 20};
    for (int i = 0; i < 6; i++) { void *p = valloc(ns[i]); CHECK(p && ALIGNED(p, PAGE)); free(p); }
    errno = 0; CHECK(valloc(-PAGE + big_zero) == NULL && errno == ENOMEM);
    return 0;
}
static int s30(void) {
    size_t ns[] = {0, 1, 4096, 4097, 100000, 40 << 20};
    for (int i = 0; i < 6; i++) {
        void *p = pvalloc(ns[i]); CHECK(p && ALIGNED(p, PAGE));
        size_t r = (ns[i] + PAGE - 1) & ~(PAGE - 1);
        CHECK(malloc_usable_size(p) >= r); memset(p, 3, r); free(p);
    }
    errno = 0; CHECK(pvalloc(-PAGE + big_zero) == NULL && errno == ENOMEM);
    errno = 0; CHECK(pvalloc(SIZE_MAX - big_zero) == NULL && errno == ENOMEM);
    return 0;
}
/* Allocates `n` bytes through entry point `e` (0..9). */
static void *alloc_via(int e, size_t n) {
    void *p = NULL;
    switch (e) {
    case 0: return malloc(n);
    case 1: return calloc(1, n);
    case 2: p = malloc(n / 2 + 1); return realloc(p, n ? n : 1); /* realloc(p, 0) frees */
    case 3: return reallocarray(NULL, 1, n);
    case 4: return aligned_alloc(64, n);
    case 5: return posix_memalign(&p, 128, n) == 0 ? p : NULL;
    case 6: return memalign(32, n);
    case 7: return valloc(n);
    case 8: return pvalloc(n);
    default: return realloc(NULL, n);
    }
}
static int s31_32_35(void) {
    for (int e = 0; e < 10; e++)
        for (int i = 0; i < nsizes; i += 2) {
            size_t n = sizes[i];
            void *p = alloc_via(e, n);
            if (!p) fprintf(stderr, "entry %d size %zu: %s\n", e, n, strerror(errno));
            CHECK(p);
            size_t u = malloc_usable_size(p); CHECK(u >= n);
            memset(p, 0x5a, u);
            void *q = realloc(p, n + 10); CHECK(q); CHECK(malloc_usable_size(q) >= n + 10);
            free(q);
            p = alloc_via(e, n); CHECK(p); free(p);
        }
    /* neighbours: fill whole usable sizes of many adjacent blocks, then verify each */
    for (size_t n = 1; n < 3000; n += 37) {
        enum { N = 64 };
        unsigned char *v[N]; size_t u[N];
        for (int i = 0; i < N; i++) { v[i] = malloc(n); u[i] = malloc_usable_size(v[i]); memset(v[i], i + 1, u[i]); }
        for (int i = 0; i < N; i++) for (size_t j = 0; j < u[i]; j++) CHECK(v[i][j] == (unsigned char)(i + 1));
        for (int i = 0; i < N; i++) free(v[i]);
    }
    return 0;
}
static int s33(void) { CHECK(malloc_usable_size(NULL) == 0); return 0; }
static int s34(void) {
    for (int i = 0; i < nsizes; i++) {
        void *p = malloc(sizes[i]); free_sized(p, sizes[i]);
        p = aligned_alloc(256, sizes[i]); free_aligned_sized(p, 256, sizes[i]);
    }
    { /* a block shrunk in place by realloc is freed with its new size */
        void *r = malloc(256); r = realloc(r, 200); free_sized(r, 200); }
    free_sized(NULL, 0); free_aligned_sized(NULL, 64, 0);
    return 0;
}
static int s36(void) {
    size_t as[] = {32, 64, 4096, 1 << 16, 1 << 21};
    for (int k = 0; k < 5; k++)
        for (int i = 0; i < nsizes; i += 5) {
            size_t n = sizes[i] + 1;
            void *p = aligned_alloc(as[k], n); CHECK(p); fill(p, n, (unsigned)k);
            void *q = realloc(p, n * 2); CHECK(q && check_fill(q, n, (unsigned)k));
            q = realloc(q, n / 2 + 1); CHECK(q && check_fill(q, n / 2 + 1, (unsigned)k));
            free(q);
        }
    return 0;
}
static int s38(void) {
    /* segfit's malloc_usable_size aborts on any pointer it did not hand out, so each of these
     * calls proves the block came from segfit. */
    char *s = strdup("hello"); CHECK(malloc_usable_size(s) >= 6); free(s);
    s = strndup("hello world", 5); CHECK(malloc_usable_size(s) >= 6); free(s);
    FILE *f = fopen("/proc/self/maps", "r"); CHECK(f); CHECK(malloc_usable_size(f) >= sizeof(void *));
    char *line = NULL; size_t cap = 0; int seen = 0;
    while (getline(&line, &cap, f) > 0) if (strstr(line, "libsegfit")) seen = 1;
    CHECK(seen); CHECK(malloc_usable_size(line) >= cap); free(line); fclose(f);
    char *a = NULL; CHECK(asprintf(&a, "%d-%s", 42, "x") > 0); CHECK(malloc_usable_size(a) >= 5); free(a);
    char *rp = realpath("/proc/self", NULL); CHECK(rp && malloc_usable_size(rp) > 0); free(rp);
    void *h = dlopen("libm.so.6", RTLD_NOW); CHECK(h); dlclose(h);
    pthread_key_t keys[40];
    for (int i = 0; i < 40; i++) { CHECK(pthread_key_create(&keys[i], NULL) == 0); pthread_setspecific(keys[i], &keys[i]); }
    for (int i = 0; i < 40; i++) CHECK(pthread_getspecific(keys[i]) == &keys[i]);
    return 0;
}

static long rss_kb(void) {
    long size = 0, res = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld %ld", &size, &res) != 2) exit(2);
    fclose(f);
    return res * (long)(PAGE / 1024);
}

/* 39: blocks freed by another thread are reused without leaks. */
enum { XN = 20000 };
static void *xblocks[XN];
static void *x_free_all(void *arg) { (void)arg; for (int i = 0; i < XN; i++) free(xblocks[i]); return NULL; }
static int s39(void) {
    long base = 0;
    for (int round = 0; round < 60; round++) {
        for (int i = 0; i < XN; i++) { xblocks[i] = malloc(16 + (i % 300) * 8); CHECK(xblocks[i]); }
        pthread_t t; pthread_create(&t, NULL, x_free_all, NULL); pthread_join(t, NULL);
        if (round == 5) base = rss_kb();
    }
    long growth = rss_kb() - base;
    CHECK(growth < 16 * 1024);
    return 0;
}
/* 40/41: a thread whose first call is free, or any size. */
static void *first_arg;
static void *t_first_free(void *arg) { (void)arg; free(first_arg); return NULL; }
static void *t_first_alloc(void *arg) {
    int k = (int)(intptr_t)arg; void *p = NULL;
    switch (k) {
    case 0: p = malloc(1); break;
    case 1: p = malloc(32768); break;
    case 2: p = malloc(32769); break;
    case 3: p = malloc(1 << 20); break;
    case 4: p = malloc(48 << 20); break;
    case 5: p = aligned_alloc(4096, 100); break;
    case 6: p = calloc(10, 10); break;
    case 7: if (posix_memalign(&p, 1 << 16, 10)) p = NULL; break;
    case 8: p = realloc(NULL, 200); break;
    default: p = memalign(1 << 22, 5); break;
    }
    if (!p) return (void *)1;
    memset(p, 1, 1); free(p);
    return NULL;
}
static int s40_41(void) {
    for (int i = 0; i < 50; i++) {
        first_arg = malloc((size_t)(i * 997) % 70000 + 1);
        pthread_t t; pthread_create(&t, NULL, t_first_free, NULL); pthread_join(t, NULL);
    }
    for (int k = 0; k < 10; k++) {
        void *r = NULL; pthread_t t; pthread_create(&t, NULL, t_first_alloc, (void *)(intptr_t)k);
        pthread_join(t, &r); CHECK(r == NULL);
    }
    return 0;
}
/* 42: allocation and free in pthread key destructors (keys created before and after segfit's),
 * and in atexit handlers, after segfit's per-thread state may be gone. */
static pthread_key_t early_key, late_key;
static void tls_dtor(void *v) {
    free(v);
    for (int i = 0; i < 100; i++) { void *p = malloc(16 + i * 40); CHECK(p); memset(p, 1, 16); free(p); }
    void *big = malloc(1 << 20); CHECK(big); free(big);
    static __thread int rounds;
    if (++rounds < 3) pthread_setspecific(late_key, malloc(32)); /* forces another destructor round */
}
static void *t_tls(void *arg) {
    (void)arg;
    pthread_setspecific(early_key, malloc(100));
    pthread_setspecific(late_key, malloc(200));
    void *p = malloc(64); free(p);
    return NULL;
}
static void at_exit_alloc(void) {
    void *p = malloc(1000); if (!p) _exit(3); memset(p, 2, 1000); free(p);
    p = malloc(3 << 20); if (!p) _exit(3); free(p);
}
static int s42(void) {
    for (int i = 0; i < 200; i++) {
        pthread_t t; pthread_create(&t, NULL, t_tls, NULL); pthread_join(t, NULL);
    }
    atexit(at_exit_alloc);
    return 0;
}
/* 43: many threads that each allocate: bounded growth. */
static void *t_small(void *arg) { (void)arg; void *p = malloc(1000); memset(p, 1, 1000); free(p); return NULL; }
static int s43(void) {
    long base = 0;
    for (int i = 0; i < 20000; i++) {
        pthread_t t; CHECK(pthread_create(&t, NULL, t_small, NULL) == 0); pthread_join(t, NULL);
        if (i == 1000) base = rss_kb();
    }
    CHECK(rss_kb() - base < 8 * 1024);
    return 0;
}
/* 44 (+ bad input 32): fork while 8 threads allocate; the child mallocs and frees pre-fork
 * pointers. */
static volatile int stop_churn;
static void *churn(void *arg) {
    unsigned x = (unsigned)(uintptr_t)arg * 2654435761u;
    void *slots[64] = {0};
    for (unsigned it = 0; !stop_churn; it++) {
        if (it % 16 == 0) sched_yield(); /* 8 churners on 2 cores must let the forker run */
        x = x * 1103515245u + 12345u;
        int i = (x >> 8) % 64;
        free(slots[i]);
        size_t n = (x >> 16) % 16 == 0 ? (x % 100000) : (x % 2000);
        slots[i] = malloc(n);
    }
    for (int i = 0; i < 64; i++) free(slots[i]);
    return NULL;
}
static int fork_many(int nforks) {
    pthread_t th[8];
    for (int i = 0; i < 8; i++) pthread_create(&th[i], NULL, churn, (void *)(uintptr_t)(i + 1));
    void *pre[100];
    for (int i = 0; i < 100; i++) pre[i] = malloc((size_t)i * 500 + 1);
    for (int f = 0; f < nforks; f++) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            alarm(10);
            for (int i = 0; i < 100; i++) free(pre[i]);
            for (int i = 0; i < 300; i++) { void *p = malloc((size_t)i * 300); if (!p) _exit(4); free(p); }
            void *big = malloc(40 << 20); if (!big) _exit(4); free(big);
            _exit(0);
        }
        int st = 0; CHECK(waitpid(pid, &st, 0) == pid);
        if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) { fprintf(stderr, "child %d status %d\n", f, st); return 1; }
    }
    stop_churn = 1;
    for (int i = 0; i < 8; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 100; i++) free(pre[i]);
    return 0;
}
static int s44(void) { return fork_many(getenv("SEGFIT_TEST_FORKS") ? atoi(getenv("SEGFIT_TEST_FORKS")) : 300); }
/* 45 (+ bad input 33): fork from a signal handler that interrupted malloc, single-threaded. */
static volatile int forks_done;
static void on_alarm(int sig) {
    (void)sig;
    int e = errno;
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    if (pid > 0) { waitpid(pid, NULL, 0); forks_done++; }
    errno = e;
}
static int s45(void) {
    struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = on_alarm; sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 200}, {0, 200}};
    setitimer(ITIMER_REAL, &it, NULL);
    void *v[256] = {0};
    for (long i = 0; forks_done < 200 && i < 50000000; i++) {
        int k = (int)(i % 256);
        free(v[k]);
        v[k] = malloc((i * 7919) % 3 == 0 ? (size_t)(i % 100000) : (size_t)(i % 500));
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    for (int k = 0; k < 256; k++) free(v[k]);
    CHECK(forks_done >= 200);
    return 0;
}
/* 46 (+ bad input 31): atfork handlers registered after segfit's call malloc. */
static void h_alloc(void) { void *p = malloc(100); void *q = malloc(70000); free(p); free(q); }
static int s46(void) {
    free(malloc(1)); /* segfit registers its handlers here */
    pthread_atfork(h_alloc, h_alloc, h_alloc);
    return fork_many(100);
}
/* 47: RLIMIT_AS exhaustion: every entry point returns NULL+ENOMEM, from 8 threads too, and
 * allocation works again after freeing. */
enum { HELD = 4096 };
static void *held[8][HELD];
static int held_n[8], held_errno[8];
static void *t_exhaust(void *arg) {
    int k = (int)(intptr_t)arg;
    for (;;) {
        CHECK(held_n[k] < HELD);
        errno = 0;
        void *p = malloc(1 << 20);
        if (!p) { held_errno[k] = errno; break; }
        held[k][held_n[k]++] = p;
    }
    return NULL;
}
static long vm_kb(void) {
    long size = 0, res = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld %ld", &size, &res) != 2) exit(2);
    fclose(f);
    return size * (long)(PAGE / 1024);
}
static int s47(void) {
    free(malloc(1 << 20));
    pthread_t th[8];
    struct rlimit rl;
    /* threads exist before the limit (their stacks are mapped), then start allocating */
    static pthread_barrier_t bar;
    (void)bar;
    rl.rlim_cur = rl.rlim_max = (rlim_t)(vm_kb() + 8 * 8192 + 512 * 1024) * 1024;
    CHECK(setrlimit(RLIMIT_AS, &rl) == 0);
    for (int i = 0; i < 8; i++) CHECK(pthread_create(&th[i], NULL, t_exhaust, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < 8; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 8; i++) CHECK(held_errno[i] == ENOMEM);
    /* Threads racing for the last arena may each fail while its neighbour's over-sized
     * reservation is in flight: exhaust what is left from here. */
    t_exhaust((void *)0);
    CHECK(held_errno[0] == ENOMEM);
    size_t n = 8 << 20;
    void *p = NULL;
    errno = 0; CHECK(malloc(n) == NULL && errno == ENOMEM);
    errno = 0; CHECK(malloc(64 << 20) == NULL && errno == ENOMEM);
    errno = 0; CHECK(calloc(1, n) == NULL && errno == ENOMEM);
    errno = 0; CHECK(realloc(NULL, n) == NULL && errno == ENOMEM);
    void *small = malloc(100); if (small) { errno = 0; CHECK(realloc(small, n) == NULL && errno == ENOMEM); free(small); }
    errno = 0; CHECK(reallocarray(NULL, 2, n) == NULL && errno == ENOMEM);
    errno = 0; CHECK(aligned_alloc(4096, n) == NULL && errno == ENOMEM);
    errno = 0; CHECK(memalign(1 << 20, n) == NULL && errno == ENOMEM);
    errno = 0; CHECK(valloc(n) == NULL && errno == ENOMEM);
    errno = 0; CHECK(pvalloc(n) == NULL && errno == ENOMEM);
    CHECK(posix_memalign(&p, 64, n) == ENOMEM);
    for (int k = 0; k < 8; k++) for (int i = 0; i < held_n[k]; i++) free(held[k][i]);
    p = malloc(n); CHECK(p); memset(p, 1, n); free(p);
    p = malloc(1 << 20); CHECK(p); free(p);
    return 0;
}

/* covers: CONTRACT.md checklist statement numbers, and "bN" for bad input N */
struct test { const char *name; int (*fn)(void); const char *covers; };
static const struct test tests[] = {
    {"s1", s1, "1"}, {"s2", s2, "2"}, {"s3", s3, "3"}, {"s4", s4, "4"}, {"s5", s5, "5 b22"},
    {"s6", s6, "6"}, {"s7", s7_first, "7"}, {"s8", s8, "8"}, {"s9", s9, "9"}, {"s10", s10, "10"},
    {"s11", s11, "11"}, {"s12", s12, "12 b23"}, {"s13", s13, "13"}, {"s14", s14, "14"},
    {"s15", s15, "15 b24"}, {"s16", s16, "16"}, {"s17", s17, "17 b24"}, {"s18", s18, "18"},
    {"s19", s19, "19"}, {"s20", s20, "20 b26 b28"}, {"s21", s21, "21"}, {"s22", s22, "22"},
    {"s23_24", s23_24, "23 24 b25"}, {"s25", s25, "25"}, {"s26", s26, "26"}, {"s27", s27, "27"},
    {"s28", s28, "28 b27"}, {"s29", s29, "29 b27"}, {"s30", s30, "30 b27"},
    {"s31_32_35", s31_32_35, "31 32 35"}, {"s33", s33, "33"}, {"s34", s34, "34"}, {"s36", s36, "36"},
    {"s38", s38, "38"}, {"s39", s39, "39"}, {"s40_41", s40_41, "40 41 b35"}, {"s42", s42, "42 b34"},
    {"s43", s43, "43"}, {"s44", s44, "44 b32"}, {"s45", s45, "45 b33"}, {"s46", s46, "46 b31"},
    {"s47", s47, "47"},
};
#define NTESTS (int)(sizeof tests / sizeof tests[0])

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "s7") == 0) { s7_first(); puts("PASS s7"); return 0; } /* free(NULL) first */
    PAGE = (size_t)sysconf(_SC_PAGESIZE);
    make_sizes();
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (int i = 0; i < NTESTS; i++) printf("%s %s\n", tests[i].name, tests[i].covers);
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "s42") == 0) {
        /* one key before segfit's first allocation of this process's main code... */
        pthread_key_create(&early_key, tls_dtor);
        free(malloc(1));
        pthread_key_create(&late_key, tls_dtor);
    }
    for (int i = 0; argc == 2 && i < NTESTS; i++)
        if (strcmp(argv[1], tests[i].name) == 0) {
            int r = tests[i].fn();
            if (r == 0) printf("PASS %s\n", tests[i].name);
            return r;
        }
    fprintf(stderr, "usage: contract --list | <name>\n");
    return 2;
}
