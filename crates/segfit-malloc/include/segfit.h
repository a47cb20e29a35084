/* segfit.h — the extras of libsegfit, segfit's drop-in malloc.
 *
 * libsegfit exports the standard allocation functions (malloc, free, calloc, realloc,
 * reallocarray, posix_memalign, aligned_alloc, memalign, valloc, pvalloc, malloc_usable_size,
 * malloc_trim, free_sized, free_aligned_sized, cfree) with glibc's behaviour; <stdlib.h> and
 * <malloc.h> declare those. This header declares what segfit adds.
 *
 * Environment (read once, at the first allocation):
 *   SEGFIT_SHOW_STATS=1   print statistics to stderr at exit
 *   SEGFIT_SHOW_STATS=json  the same as one JSON object
 *   SEGFIT_TRACE=os       print one line per OS call segfit makes (mmap, munmap, madvise, ...)
 *   SEGFIT_SCAVENGER=1    start a background thread that gives free pages back to the OS within
 *                         about a second of going idle (read when the library is loaded)
 */
#ifndef SEGFIT_H
#define SEGFIT_H

#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Flushes the calling thread's cache and returns every free page to the OS.
 * Returns the number of bytes released. */
size_t segfit_collect(void);

/* Writes statistics ("segfit: stats: ..." lines: bytes in use, mapped, OS calls by kind,
 * threads) to file descriptor fd. Allocates nothing. */
void segfit_stats_print_fd(int fd);

/* Flushes stream f (NULL: stderr) and writes the statistics to its file descriptor. */
void segfit_stats_print(FILE *f);

/* Writes the statistics (Go MemStats-like: heap_alloc, heap_inuse, heap_idle, heap_released,
 * heap_sys, mallocs, frees, total_alloc, os calls by reason, by_size, ...) as one JSON object
 * and a newline to fd. Allocates nothing. */
void segfit_stats_json_fd(int fd);

/* Writes a heap map: every span (free run, small-object span, large block) of every arena and
 * every huge block, as a JSON array, to fd. Allocates nothing. */
void segfit_heap_json_fd(int fd);

/* C23, declared here for C libraries that do not declare them yet. Both abort (one line on
 * stderr) if size (or alignment) does not match the block's allocation. */
void free_sized(void *ptr, size_t size);
void free_aligned_sized(void *ptr, size_t alignment, size_t size);

#ifdef __cplusplus
}
#endif

#endif /* SEGFIT_H */
