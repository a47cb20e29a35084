/* larson: server-style workload after Larson & Krishnan. Two worker threads
 * each own a slot array of live blocks (16..1024 B). Each round a thread
 * replaces random slots (free + malloc); between rounds the threads swap
 * arrays, so blocks allocated by one thread are freed by the other.
 * usage: larson [scale]   prints "checksum <hex>" */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NTHREADS 2
#define SLOTS 4000
#define OPS_PER_ROUND 20000

typedef struct { uint64_t *p[SLOTS]; } slots_t;

static slots_t arrays[NTHREADS];
static pthread_barrier_t barrier;
static long rounds;
static uint64_t sums[NTHREADS];

static uint64_t next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t *new_block(uint64_t *rng) {
    size_t n = 16 + (size_t)(next(rng) % (1024 - 16 + 1));
    uint64_t *b = malloc(n);
    if (!b) { perror("malloc"); exit(2); }
    b[0] = next(rng);          /* stamp */
    b[1] = n;
    if (n > 16) ((unsigned char *)b)[n - 1] = (unsigned char)b[0];
    return b;
}

static uint64_t consume(uint64_t *b) {
    uint64_t v = b[0] ^ (b[1] << 32);
    if (b[1] > 16) v ^= ((unsigned char *)b)[b[1] - 1];
    free(b);
    return v;
}

static void *worker(void *arg) {
    long id = (long)arg;
    uint64_t rng = 1234567 + (uint64_t)id * 7919;
    uint64_t sum = 0;
    for (long r = 0; r < rounds; r++) {
        /* array this thread works on in round r: swapped every round */
        slots_t *a = &arrays[(id + r) % NTHREADS];
        for (int i = 0; i < OPS_PER_ROUND; i++) {
            unsigned s = (unsigned)(next(&rng) % SLOTS);
            sum += consume(a->p[s]);
            a->p[s] = new_block(&rng);
        }
        pthread_barrier_wait(&barrier);
    }
    sums[id] = sum;
    return NULL;
}

int main(int argc, char **argv) {
    double scale = argc > 1 ? atof(argv[1]) : 1.0;
    rounds = (long)(600 * scale);
    if (rounds < 2) rounds = 2;
    uint64_t rng = 42;
    for (int t = 0; t < NTHREADS; t++)
        for (int s = 0; s < SLOTS; s++) arrays[t].p[s] = new_block(&rng);
    pthread_barrier_init(&barrier, NULL, NTHREADS);
    pthread_t th[NTHREADS];
    for (long t = 0; t < NTHREADS; t++) pthread_create(&th[t], NULL, worker, (void *)t);
    uint64_t sum = 0;
    for (int t = 0; t < NTHREADS; t++) {
        pthread_join(th[t], NULL);
        sum = sum * 31 + sums[t];
    }
    for (int t = 0; t < NTHREADS; t++)
        for (int s = 0; s < SLOTS; s++) sum += consume(arrays[t].p[s]);
    pthread_barrier_destroy(&barrier);
    printf("checksum %016llx\n", (unsigned long long)sum);
    return 0;
}
