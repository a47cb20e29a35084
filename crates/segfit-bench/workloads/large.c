/* large: large blocks of 64 KiB .. 16 MiB (log-uniform) are allocated,
 * touched page by page and freed, with a small window of live blocks.
 * usage: large [scale]   prints "checksum <hex>" */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define LIVE 8
#define PAGE 4096

static uint64_t next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

int main(int argc, char **argv) {
    double scale = argc > 1 ? atof(argv[1]) : 1.0;
    long iters = (long)(2500 * scale);
    if (iters < LIVE) iters = LIVE;
    uint64_t rng = 5, sum = 0;
    unsigned char *live[LIVE] = {0};
    size_t len[LIVE] = {0};
    for (long i = 0; i < iters; i++) {
        int k = (int)(i % LIVE);
        if (live[k]) {
            sum = sum * 31 + live[k][0] + live[k][len[k] - 1] + live[k][len[k] / 2 / PAGE * PAGE];
            free(live[k]);
        }
        int bits = 16 + (int)(next(&rng) % 8);   /* 64 KiB .. 8 MiB base */
        size_t sz = ((size_t)1 << bits) + (size_t)(next(&rng) % ((size_t)1 << bits));
        unsigned char *p = malloc(sz);
        if (!p) { perror("malloc"); return 2; }
        for (size_t off = 0; off < sz; off += PAGE) p[off] = (unsigned char)(off / PAGE + i);
        p[sz - 1] = (unsigned char)sz;
        live[k] = p;
        len[k] = sz;
    }
    for (int k = 0; k < LIVE; k++) {
        if (live[k]) { sum += live[k][0]; free(live[k]); }
    }
    printf("checksum %016llx\n", (unsigned long long)sum);
    return 0;
}
