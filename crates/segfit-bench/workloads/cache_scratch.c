/* cache_scratch: passive false sharing test (after Berger et al.'s Hoard
 * benchmarks). The main thread allocates one small object per worker; each
 * worker frees it, then repeatedly allocates small objects and writes them
 * many times. An allocator that hands a worker memory on a cache line
 * another thread also writes to makes the workers slow each other down.
 * usage: cache_scratch [scale]   prints "checksum <hex>" */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define NTHREADS 2
#define OBJ_SIZE 8

typedef struct { char *obj; long iterations; long repetitions; uint64_t result; } arg_t;

static void *worker(void *p) {
    arg_t *a = p;
    free(a->obj);   /* the object was allocated by the main thread */
    uint64_t sum = 0;
    for (long i = 0; i < a->iterations; i++) {
        volatile char *obj = malloc(OBJ_SIZE);
        if (!obj) { perror("malloc"); exit(2); }
        for (int k = 0; k < OBJ_SIZE; k++) obj[k] = (char)k;   /* malloc memory is not zeroed */
        for (long j = 0; j < a->repetitions; j++) {
            for (int k = 0; k < OBJ_SIZE; k++) {
                obj[k] = (char)(obj[k] + (char)(k + j));
            }
        }
        sum += (unsigned char)obj[OBJ_SIZE - 1] + (unsigned char)obj[0];
        free((void *)obj);
    }
    a->result = sum;
    return NULL;
}

int main(int argc, char **argv) {
    double scale = argc > 1 ? atof(argv[1]) : 1.0;
    long iterations = (long)(50000 * scale);
    if (iterations < 1) iterations = 1;
    pthread_t th[NTHREADS];
    arg_t args[NTHREADS];
    for (int t = 0; t < NTHREADS; t++) {
        /* objects allocated back to back: likely on one cache line */
        args[t].obj = calloc(1, OBJ_SIZE);
        args[t].iterations = iterations;
        args[t].repetitions = 2000;
    }
    for (int t = 0; t < NTHREADS; t++) pthread_create(&th[t], NULL, worker, &args[t]);
    uint64_t sum = 0;
    for (int t = 0; t < NTHREADS; t++) { pthread_join(th[t], NULL); sum = sum * 31 + args[t].result; }
    printf("checksum %016llx\n", (unsigned long long)sum);
    return 0;
}
