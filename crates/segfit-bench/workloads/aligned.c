/* aligned: posix_memalign and aligned_alloc with alignments 16 B .. 64 KiB
 * and random sizes; every pointer's alignment is verified.
 * usage: aligned [scale]   prints "checksum <hex>" */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define SLOTS 1024

static uint64_t next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

int main(int argc, char **argv) {
    double scale = argc > 1 ? atof(argv[1]) : 1.0;
    long ops = (long)(3000000 * scale);
    uint64_t rng = 17, sum = 0;
    unsigned char *slot[SLOTS] = {0};
    size_t len[SLOTS] = {0};
    for (long i = 0; i < ops; i++) {
        unsigned s = (unsigned)(next(&rng) % SLOTS);
        if (slot[s]) {
            sum = sum * 31 + slot[s][0] + slot[s][len[s] - 1];
            free(slot[s]);
            slot[s] = NULL;
        }
        uint64_t r = next(&rng);
        /* alignment 2^4 .. 2^16, small alignments more likely */
        int shift = 4 + (int)((r & 0xff) % 13);
        if ((r >> 8) % 4 != 0 && shift > 8) shift -= 4;
        size_t align = (size_t)1 << shift;
        size_t size = 1 + (size_t)((r >> 16) % (2 * align < 4096 ? 4096 : 2 * align));
        void *p = NULL;
        int use_posix = (int)((r >> 40) & 1);
        if (use_posix) {
            if (posix_memalign(&p, align, size) != 0) p = NULL;
        } else {
            /* C11 aligned_alloc wants size to be a multiple of the alignment */
            size = (size + align - 1) & ~(align - 1);
            p = aligned_alloc(align, size);
        }
        if (!p) { fprintf(stderr, "allocation failed: align %zu size %zu\n", align, size); return 2; }
        if (((uintptr_t)p & (align - 1)) != 0) {
            fprintf(stderr, "misaligned pointer %p from %s(alignment %zu, size %zu)\n", p,
                    use_posix ? "posix_memalign" : "aligned_alloc", align, size);
            return 3;
        }
        slot[s] = p;
        len[s] = size;
        slot[s][0] = (unsigned char)shift;
        slot[s][size - 1] = (unsigned char)size;
    }
    for (unsigned s = 0; s < SLOTS; s++) {
        if (slot[s]) { sum += slot[s][0]; free(slot[s]); }
    }
    printf("checksum %016llx\n", (unsigned long long)sum);
    return 0;
}
