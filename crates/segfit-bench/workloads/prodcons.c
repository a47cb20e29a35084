/* prodcons: producer/consumer. Producer threads malloc messages in batches
 * and push them through a bounded queue; consumer threads read and free
 * them, so every free happens on a different thread than its malloc.
 * usage: prodcons [scale]   prints "checksum <hex>" */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PRODUCERS 2
#define CONSUMERS 2
#define QCAP 64
#define BATCH 64

typedef struct { size_t len; uint64_t seq; unsigned char data[]; } msg_t;
typedef struct { int n; msg_t *m[BATCH]; } batch_t;

static batch_t *queue[QCAP];
static int qhead, qtail, qcount;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t not_full = PTHREAD_COND_INITIALIZER;
static pthread_cond_t not_empty = PTHREAD_COND_INITIALIZER;
static long batches_per_producer;
static uint64_t csum[CONSUMERS];

static uint64_t next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void push(batch_t *b) {
    pthread_mutex_lock(&lock);
    while (qcount == QCAP) pthread_cond_wait(&not_full, &lock);
    queue[qtail] = b;
    qtail = (qtail + 1) % QCAP;
    qcount++;
    pthread_cond_signal(&not_empty);
    pthread_mutex_unlock(&lock);
}

static batch_t *pop(void) {
    pthread_mutex_lock(&lock);
    while (qcount == 0) pthread_cond_wait(&not_empty, &lock);
    batch_t *b = queue[qhead];
    qhead = (qhead + 1) % QCAP;
    qcount--;
    pthread_cond_signal(&not_full);
    pthread_mutex_unlock(&lock);
    return b;
}

static void *producer(void *arg) {
    uint64_t rng = 777 + (uint64_t)(long)arg * 104729;
    for (long i = 0; i < batches_per_producer; i++) {
        batch_t *b = malloc(sizeof *b);
        if (!b) { perror("malloc"); exit(2); }
        b->n = BATCH;
        for (int j = 0; j < BATCH; j++) {
            size_t len = 8 + (size_t)(next(&rng) % 505);
            msg_t *m = malloc(sizeof *m + len);
            if (!m) { perror("malloc"); exit(2); }
            m->len = len;
            m->seq = next(&rng);
            memset(m->data, (int)(m->seq & 0xff), len < 32 ? len : 32);
            m->data[len - 1] = (unsigned char)len;
            b->m[j] = m;
        }
        push(b);
    }
    return NULL;
}

static void *consumer(void *arg) {
    long id = (long)arg;
    uint64_t sum = 0;
    for (;;) {
        batch_t *b = pop();
        if (b->n == 0) { free(b); break; }   /* poison pill */
        for (int j = 0; j < b->n; j++) {
            msg_t *m = b->m[j];
            /* commutative per-message hash: order of consumption must not matter */
            sum += m->seq ^ ((uint64_t)m->data[0] << 8) ^ ((uint64_t)m->data[m->len - 1] << 16);
            free(m);
        }
        free(b);
    }
    csum[id] = sum;
    return NULL;
}

int main(int argc, char **argv) {
    double scale = argc > 1 ? atof(argv[1]) : 1.0;
    batches_per_producer = (long)(60000 * scale);
    if (batches_per_producer < 1) batches_per_producer = 1;
    pthread_t p[PRODUCERS], c[CONSUMERS];
    for (long i = 0; i < CONSUMERS; i++) pthread_create(&c[i], NULL, consumer, (void *)i);
    for (long i = 0; i < PRODUCERS; i++) pthread_create(&p[i], NULL, producer, (void *)i);
    for (int i = 0; i < PRODUCERS; i++) pthread_join(p[i], NULL);
    for (int i = 0; i < CONSUMERS; i++) {
        batch_t *pill = calloc(1, sizeof *pill);
        if (!pill) { perror("calloc"); return 2; }
        push(pill);
    }
    uint64_t sum = 0;
    for (int i = 0; i < CONSUMERS; i++) { pthread_join(c[i], NULL); sum += csum[i]; }
    printf("checksum %016llx\n", (unsigned long long)sum);
    return 0;
}
