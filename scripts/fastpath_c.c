/* Calls libsegfit's exported malloc and free in rounds of 64, for scripts/fastpath.sh:
 * usage: fastpath_c ROUNDS [SIZE]   (run with LD_PRELOAD=libsegfit.so under callgrind) */
#include <stdio.h>
#include <stdlib.h>

#define OPS 64

int main(int argc, char **argv) {
    long rounds = argc > 1 ? atol(argv[1]) : 100000;
    volatile size_t size = argc > 2 ? (size_t)atol(argv[2]) : 32;
    void *v[OPS];
    unsigned long sum = 0;
    for (long r = 0; r < rounds; r++) {
        for (int i = 0; i < OPS; i++) v[i] = malloc(size);
        for (int i = 0; i < OPS; i++) sum += (unsigned long)v[i] & 0xff;
        for (int i = 0; i < OPS; i++) free(v[i]);
    }
    printf("%lu\n", sum);
    return 0;
}
