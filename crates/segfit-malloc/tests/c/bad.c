/* Bad inputs (CONTRACT.md, "Bad inputs and faults"): each case runs in its own process with
 * libsegfit preloaded. Before the faulty calls (and before freeing, so that stdio's own
 * first allocation cannot reuse the block) the program prints "ptr=0x..." (the address the
 * abort message must name) to stdout; the Rust driver (tests/bad_inputs.rs) checks SIGABRT and
 * the exact one-line message. Cases that must NOT abort exit 0. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

void free_aligned_sized(void *, size_t, size_t);
void free_sized(void *, size_t);

static void say(void *p) { printf("ptr=%p\n", p); fflush(stdout); }
static void *volatile keep;

/* Laundered through a volatile so the compiler cannot pair (and drop) a malloc with its free. */
static void *L(void *p) { keep = p; return keep; }
static void *other_free(void *p) { free(p); return NULL; }
static volatile int stage;
static void *free_wait_malloc(void *p) {
    free(p); stage = 1;
    while (stage != 2) usleep(100);
    keep = malloc(512);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    int c = atoi(argv[1]);
    char *p, *q;
    switch (c) {
    case 1: p = L(malloc(40)); say(p); free(p); free(p); break;
    case 2: p = L(malloc(40)); q = L(malloc(40)); say(p); free(p); free(q); free(p); break;
    case 3: p = L(malloc(1 << 20)); say(p); free(p); free(p); break;           /* large, page heap */
    case 103: p = L(malloc(64 << 20)); say(p); free(p); free(p); break;        /* huge, own mapping */
    case 4: { /* freed here, then on another thread; the copies meet when this thread refills */
        p = L(malloc(40)); say(p); free(p); pthread_t t; pthread_create(&t, NULL, other_free, p); pthread_join(t, NULL);
        for (int i = 0; i < 100000; i++) keep = malloc(40);
        break; }
    case 104: { /* freed on another thread (which keeps a line-sized block in its own bin), then
                 * here again: the other thread allocates it, then this one reaches it */
        p = L(malloc(512)); say(p);
        pthread_t t; pthread_create(&t, NULL, free_wait_malloc, p);
        while (!stage) usleep(100);
        free(p); stage = 2;
        pthread_join(t, NULL);
        for (int i = 0; i < 10000; i++) keep = malloc(512);
        break; }
    case 5: /* double free after the first word was overwritten (use after free) */
        p = L(malloc(40)); say(p); free(p); memset(p, 0x41, 8); free(p); break;
    case 105: { /* a live block holding the free key in word 1 must free normally */
        size_t *f = malloc(40); free(f); size_t key = f[1];
        size_t *l = malloc(40); l[0] = (size_t)f; l[1] = key; free(l);
        size_t *m = malloc(40); m[1] = key; free(m); /* again, now the block just freed */
        return 0; }
    case 6: p = malloc(64); say(p + 1); free(p + 1); break;
    case 7: p = malloc(64); say(p + 16); free(p + 16); break;
    case 8: p = malloc(1 << 20); say(p + 4096 * 2); free(p + 4096 * 2); break;
    case 9: say((void *)1); free((void *)1); break;                           /* as the first call */
    case 109: say((void *)0xDEADBEEF); free((void *)0xDEADBEEF); break;
    case 10: say((void *)0xDEADBEEF0000000); free((void *)0xDEADBEEF0000000); break;
    case 11: { char buf[64]; say(buf + 16); free(buf + 16); break; }
    case 111: { void *m = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); say(m); free(m); break; }
    case 211: { void *m = mmap(NULL, 1 << 16, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); say(m); free(m); break; }
    case 12: say((void *)1); keep = realloc((void *)1, 16); break;
    case 112: p = L(malloc(40)); say(p); free(p); keep = realloc(p, 16); break;
    case 13: p = L(malloc(40)); say(p); free(p); (void)malloc_usable_size(p); break;
    case 113: p = malloc(64); say(p + 16); (void)malloc_usable_size(p + 16); break;
    case 213: p = malloc(64); say(p + 3); (void)malloc_usable_size(p + 3); break;
    case 313: say((void *)0x10000); (void)malloc_usable_size((void *)0x10000); break;
    case 20: p = malloc(100); say(p); free_sized(p, 1000); break;             /* wrong size, small */
    case 120: p = malloc(100000); say(p); free_sized(p, 90000); break;       /* wrong size, large */
    case 221: p = aligned_alloc(64, 100); say(p); free_aligned_sized(p, 64, 5000); break;
    case 21: p = aligned_alloc(64, 100); say(p + 16); free_aligned_sized(p + 16, 64, 100); break;
    case 121: p = malloc(48); if (((uintptr_t)p & 4095) == 0) p = malloc(48); say(p); free_aligned_sized(p, 4096, 48); break;
    case 38: { /* a block from glibc's own allocator */
        void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
        void *(*libc_malloc)(size_t) = libc ? (void *(*)(size_t))dlsym(libc, "malloc") : NULL;
        if (!libc_malloc) return 3;
        p = libc_malloc(100); if (p == L(malloc(1))) return 4; say(p); free(p); break; }
    default: return 2;
    }
    return 0;
}
