/* random_realloc: single-threaded malloc/realloc/free of random sizes
 * 1 B .. 64 KiB (log-uniform), with content checks across realloc.
 * usage: random_realloc [scale]   prints "checksum <hex>" */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* log-uniform size in [1, 65536] */
static size_t rand_size(void) {
    int bits = (int)(rnd() % 17);           /* 0..16 */
    size_t lo = (size_t)1 << bits;
    size_t sz = lo + (size_t)(rnd() % lo);
    return sz > 65536 ? 65536 : sz;
}

#define SLOTS 2048

int main(int argc, char **argv) {
    double scale = argc > 1 ? atof(argv[1]) : 1.0;
    long ops = (long)(6000000.0 * scale);
    unsigned char *ptr[SLOTS] = {0};
    size_t len[SLOTS] = {0};
    uint64_t sum = 0;

    for (long i = 0; i < ops; i++) {
        unsigned s = (unsigned)(rnd() % SLOTS);
        uint64_t r = rnd();
        if (!ptr[s]) {
            size_t n = rand_size();
            ptr[s] = malloc(n);
            if (!ptr[s]) { perror("malloc"); return 2; }
            len[s] = n;
            /* stamp first and last byte plus a few in between */
            ptr[s][0] = (unsigned char)s;
            ptr[s][n - 1] = (unsigned char)(n);
            ptr[s][n / 2] = (unsigned char)(r);
        } else if (r & 1) {
            size_t n = rand_size();
            size_t old = len[s];
            unsigned char first = ptr[s][0];
            unsigned char *p = realloc(ptr[s], n);
            if (!p) { perror("realloc"); return 2; }
            if (p[0] != first) { fprintf(stderr, "realloc lost data\n"); return 3; }
            /* only bytes known to be written may be read back */
            if (old <= n) sum += p[old - 1] + old;
            else sum += n;
            p[n - 1] = (unsigned char)(n);
            p[n / 2] = (unsigned char)(r >> 8);
            ptr[s] = p;
            len[s] = n;
        } else {
            size_t n = len[s];
            sum = sum * 1099511628211ULL + ptr[s][0] + ptr[s][n - 1] + ptr[s][n / 2];
            free(ptr[s]);
            ptr[s] = NULL;
        }
    }
    for (unsigned s = 0; s < SLOTS; s++) {
        if (ptr[s]) { sum += ptr[s][0]; free(ptr[s]); }
    }
    printf("checksum %016llx\n", (unsigned long long)sum);
    return 0;
}
