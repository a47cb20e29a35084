/* observe: allocate known blocks, then print segfit's statistics JSON and heap map JSON on
 * stdout, one per line, through the segfit.h extras. */
#include <stdlib.h>
#include <string.h>
#include "../../include/segfit.h"

int main(void) {
    static void *small[1000];
    for (int i = 0; i < 1000; i++) small[i] = malloc(48);
    void *large = malloc(300000);
    void *huge = malloc(40 << 20);
    memset(large, 1, 300000);
    segfit_stats_json_fd(1);
    segfit_heap_json_fd(1);
    for (int i = 0; i < 1000; i++) free(small[i]);
    free(large);
    free(huge);
    return 0;
}
