/* thread_churn: thousands of short-lived threads, a few at a time, each
 * allocating and freeing a few hundred blocks before exiting. Stresses
 * per-thread cache setup and teardown.
 * usage: thread_churn [scale]   prints "checksum <hex>" */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define CONCURRENT 4
#define BLOCKS 200

static uint64_t next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

typedef struct { uint64_t seed; uint64_t result; } job_t;

static void *run(void *arg) {
    job_t *job = arg;
    uint64_t rng = job->seed, sum = 0;
    uint64_t *blocks[BLOCKS];
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < BLOCKS; i++) {
            size_t sz = 8 + (size_t)(next(&rng) % 2041);
            blocks[i] = malloc(sz);
            if (!blocks[i]) { perror("malloc"); exit(2); }
            blocks[i][0] = next(&rng);
        }
        for (int i = 0; i < BLOCKS; i++) {
            sum += blocks[i][0];
            free(blocks[i]);
        }
    }
    job->result = sum;
    return NULL;
}

int main(int argc, char **argv) {
    double scale = argc > 1 ? atof(argv[1]) : 1.0;
    long total = (long)(8000 * scale);
    if (total < CONCURRENT) total = CONCURRENT;
    uint64_t sum = 0;
    for (long base = 0; base < total; base += CONCURRENT) {
        pthread_t th[CONCURRENT];
        job_t jobs[CONCURRENT];
        for (int t = 0; t < CONCURRENT; t++) {
            jobs[t].seed = (uint64_t)(base + t) * 2654435761ULL;
            if (pthread_create(&th[t], NULL, run, &jobs[t]) != 0) { perror("pthread_create"); return 2; }
        }
        for (int t = 0; t < CONCURRENT; t++) {
            pthread_join(th[t], NULL);
            sum = sum * 31 + jobs[t].result;
        }
    }
    printf("checksum %016llx\n", (unsigned long long)sum);
    return 0;
}
