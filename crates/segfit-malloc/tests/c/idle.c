/* idle: allocate and touch 24 MiB in 4 KiB blocks, free them all, go idle for 2 s.
 * Prints the RSS (KiB) after the frees and after the idle time: "after_free <kb> idle <kb>". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long rss_kb(void) {
    long size = 0, res = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld %ld", &size, &res) != 2) return -1;
    fclose(f);
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

int main(void) {
    enum { N = 6 * 1024 };
    static char *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = malloc(4096);
        if (!p[i]) return 2;
        memset(p[i], 1, 4096);
    }
    for (int i = 0; i < N; i++) free(p[i]);
    long after = rss_kb();
    sleep(2);
    printf("after_free %ld idle %ld\n", after, rss_kb());
    return 0;
}
