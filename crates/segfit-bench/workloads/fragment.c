/* fragment: fragmentation stress. Allocates many small blocks, frees a
 * scattered 90% of them, then allocates blocks of a different (larger) size
 * class that cannot reuse the holes. The runner reports peak RSS.
 * usage: fragment [scale]   prints "checksum <hex>" */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

int main(int argc, char **argv) {
    double scale = argc > 1 ? atof(argv[1]) : 1.0;
    long n = (long)(1500000 * scale);
    if (n < 1000) n = 1000;
    int rounds = 3;
    uint64_t rng = 99, sum = 0;
    uint64_t **small = malloc((size_t)n * sizeof *small);
    uint64_t **big = malloc((size_t)n * sizeof *big);
    if (!small || !big) { perror("malloc"); return 2; }

    for (int r = 0; r < rounds; r++) {
        /* phase 1: many small blocks, 16..64 bytes */
        for (long i = 0; i < n; i++) {
            size_t sz = 16 + (size_t)(next(&rng) % 49);
            small[i] = malloc(sz);
            if (!small[i]) { perror("malloc"); return 2; }
            small[i][0] = (uint64_t)i ^ (uint64_t)r;
        }
        /* phase 2: free a scattered 90% (keep roughly every tenth, randomly) */
        for (long i = 0; i < n; i++) {
            if (next(&rng) % 10 != 0) {
                sum += small[i][0];
                free(small[i]);
                small[i] = NULL;
            }
        }
        /* phase 3: blocks of a different size class (300..400 bytes) */
        long m = n / 8;
        for (long i = 0; i < m; i++) {
            size_t sz = 300 + (size_t)(next(&rng) % 101);
            big[i] = malloc(sz);
            if (!big[i]) { perror("malloc"); return 2; }
            memset(big[i], (int)(i & 0x7f), sz);
        }
        for (long i = 0; i < m; i++) {
            sum = sum * 31 + ((unsigned char *)big[i])[299];
            free(big[i]);
        }
        /* survivors are released only at the end of the round */
        for (long i = 0; i < n; i++) {
            if (small[i]) { sum += small[i][0] * 3; free(small[i]); }
        }
    }
    free(small);
    free(big);
    printf("checksum %016llx\n", (unsigned long long)sum);
    return 0;
}
