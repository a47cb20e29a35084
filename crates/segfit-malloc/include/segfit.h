/* segfit.h — the extras of libsegfit, segfit's drop-in malloc.
 *
 * libsegfit exports the standard allocation functions (malloc, free, calloc, realloc,
 * reallocarray, posix_memalign, aligned_alloc, memalign, valloc, pvalloc, malloc_usable_size,
 * malloc_trim, free_sized, free_aligned_sized, cfree) with glibc's behaviour; <stdlib.h> and
 * <malloc.h> declare those. This header declares what segfit adds.
 *
 * Environment (read once, at the first allocation):
 *   SEGFIT_SHOW_STATS=1   print statistics to stderr at exit
 *   SEGFIT_TRACE=os       print one line per OS call segfit makes (mmap, munmap, madvise, ...)
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

/* C23, declared here for C libraries that do not declare them yet. free_aligned_sized aborts
 * (one line on stderr) if ptr is not aligned to alignment. */
void free_sized(void *ptr, size_t size);
void free_aligned_sized(void *ptr, size_t alignment, size_t size);

#ifdef __cplusplus
}
#endif

#endif /* SEGFIT_H */
