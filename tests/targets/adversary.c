/* Native helpers of tests/targets/adversary.py, compiled by the test with
 * `cc -shared -fPIC` (with -DSLOW_CTOR for the slow library). */
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef SLOW_CTOR
/* Holds the dynamic loader's lock for RPROF_TEST_CTOR_MS (default 6000). */
__attribute__((constructor)) static void slow_constructor(void) {
    static const char line[] = "in-constructor\n";
    (void)!write(1, line, sizeof line - 1);
    const char *ms = getenv("RPROF_TEST_CTOR_MS");
    usleep((useconds_t)(ms ? atoi(ms) : 6000) * 1000);
}
#endif

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* Spins spin_ms in native code, then waits (uninterruptibly) in vfork
 * while the child sleeps child_ms; returns the child's wait status. */
int spin_then_vfork(int spin_ms, int child_ms) {
    double until = now() + spin_ms / 1e3;
    while (now() < until) {
    }
    pid_t p = vfork();
    if (p == 0) {
        usleep((useconds_t)child_ms * 1000);
        _exit(0);
    }
    int st = -1;
    waitpid(p, &st, 0);
    return st;
}
