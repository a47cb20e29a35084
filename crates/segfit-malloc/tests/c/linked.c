/* Linked against libsegfit (-lsegfit or libsegfit.a) without LD_PRELOAD: malloc must be
 * segfit's (malloc_usable_size aborts on a foreign pointer), and the stats printer works. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../../include/segfit.h"

int main(void) {
    char *s = strdup("segfit");
    if (malloc_usable_size(s) < 7) return 1;
    void *v[1000];
    for (int i = 0; i < 1000; i++) v[i] = malloc((size_t)i * 50);
    for (int i = 0; i < 1000; i++) free(v[i]);
    free(s);
    FILE *m = fopen("/proc/self/maps", "r");
    char line[512];
    while (m && fgets(line, sizeof line, m))
        if (strstr(line, "libsegfit")) fputs(line, stdout);
    if (m) fclose(m);
    segfit_collect();
    segfit_stats_print(stderr);
    return 0;
}
