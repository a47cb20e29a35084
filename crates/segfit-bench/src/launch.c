/* launch: runs one workload process and reports what wait4() says of it.
 * usage: launch REPORT PRELOAD PROGRAM [ARGS...]
 *   REPORT   file that receives one line: "<wall s> <user+sys s> <peak RSS KiB> <wait status>"
 *   PRELOAD  the LD_PRELOAD value for PROGRAM ("" to run it with none)
 * PROGRAM inherits stdin, stdout and stderr.
 *
 * Why a launcher: a process started by the runner (a Rust program of several MiB) starts with
 * the runner's peak RSS as its own, since Linux carries the old memory map's high-water mark
 * over exec into ru_maxrss; every workload smaller than the runner then read as the runner's
 * size (5.4 MiB). This program is about 1 MiB resident, the same as any dynamically linked
 * program after exec, so the peak RSS it reports is the workload's own. It runs without
 * LD_PRELOAD itself, so the allocator under test serves only the workload.
 *
 * The runner puts the launcher in a process group of its own (a timeout kills the group), so a
 * Ctrl-C at the terminal does not reach it: the launcher and the workload instead die with
 * their parent (PR_SET_PDEATHSIG). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double secs(struct timeval tv) { return tv.tv_sec + tv.tv_usec / 1e6; }

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: launch REPORT PRELOAD PROGRAM [ARGS...]\n");
        return 2;
    }
    /* an inherited "ignore SIGCHLD" would make wait4 fail with ECHILD */
    signal(SIGCHLD, SIG_DFL);
    pid_t runner = getppid();
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != runner) return 2; /* the runner died before the line above */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0) {
        perror("launch: fork");
        return 2;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (argv[2][0] != '\0') setenv("LD_PRELOAD", argv[2], 1);
        else unsetenv("LD_PRELOAD");
        execvp(argv[3], argv + 3);
        perror("launch: exec");
        _exit(127);
    }
    int status = 0;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0) {
        if (errno != EINTR) {
            perror("launch: wait4");
            return 2;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    FILE *f = fopen(argv[1], "w");
    if (!f) {
        perror("launch: report");
        return 2;
    }
    fprintf(f, "%.6f %.6f %ld %d\n",
            (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9,
            secs(ru.ru_utime) + secs(ru.ru_stime), ru.ru_maxrss, status);
    return fclose(f) == 0 ? 0 : 2;
}
