/* binary_trees: small-object churn. Builds and walks many short-lived
 * binary trees (benchmarks-game style) next to one long-lived tree.
 * usage: binary_trees [scale]   prints "checksum <hex>" */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>

typedef struct node {
    struct node *left, *right;
} node;

static node *make(int depth) {
    node *n = malloc(sizeof *n);
    if (!n) { perror("malloc"); exit(2); }
    if (depth > 0) {
        n->left = make(depth - 1);
        n->right = make(depth - 1);
    } else {
        n->left = n->right = NULL;
    }
    return n;
}

static long check(const node *n) {
    if (!n->left) return 1;
    return 1 + check(n->left) + check(n->right);
}

static void release(node *n) {
    if (n->left) { release(n->left); release(n->right); }
    free(n);
}

int main(int argc, char **argv) {
    double scale = argc > 1 ? atof(argv[1]) : 1.0;
    const int min_depth = 4, max_depth = 18;
    uint64_t sum = 0;

    node *stretch = make(max_depth + 1);
    sum += (uint64_t)check(stretch);
    release(stretch);

    node *long_lived = make(max_depth);
    for (int d = min_depth; d <= max_depth; d += 2) {
        long iters = (long)((double)(1L << (max_depth - d + min_depth)) * scale);
        if (iters < 1) iters = 1;
        long total = 0;
        for (long i = 0; i < iters; i++) {
            node *t = make(d);
            total += check(t);
            release(t);
        }
        sum = sum * 31 + (uint64_t)total;
    }
    sum = sum * 31 + (uint64_t)check(long_lived);
    release(long_lived);
    printf("checksum %016llx\n", (unsigned long long)sum);
    return 0;
}
