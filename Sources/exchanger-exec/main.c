// exchanger-exec: the trampoline between exchanger-supervisor and every program it runs.
//
//   exchanger-exec PARENT_PID [--chdir DIR] -- EXECUTABLE [ARG...]
//
// posix_spawn cannot set a parent-death signal, so the supervisor spawns this tiny program, which
// asks the kernel to SIGKILL it when its parent dies (PR_SET_PDEATHSIG survives execve), checks
// that its parent is still the supervisor that spawned it (if the supervisor died in between, the
// signal would never come), changes directory if asked, and replaces itself with the program.
// Everything here is async-signal-safe and runs before any other code of the program.
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

static void fail(const char *what, const char *detail) {
    dprintf(2, "{\"level\":\"error\",\"msg\":\"exchanger-exec: %s %s: %s\"}\n", what, detail, strerror(errno));
    _exit(127);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        dprintf(2, "usage: exchanger-exec PARENT_PID [--chdir DIR] -- EXECUTABLE [ARG...]\n");
        return 126;
    }
    char *end = NULL;
    long parent = strtol(argv[1], &end, 10);
    if (end == argv[1] || *end != '\0' || parent <= 0) {
        dprintf(2, "exchanger-exec: bad parent pid '%s'\n", argv[1]);
        return 126;
    }
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail("prctl", "PR_SET_PDEATHSIG");
    // The supervisor may have died between posix_spawn and prctl: then we were re-parented and
    // the death signal will never be sent, so leave now.
    if ((long)getppid() != parent) _exit(125);

    int index = 2;
    if (strcmp(argv[index], "--chdir") == 0) {
        if (index + 1 >= argc) return 126;
        if (chdir(argv[index + 1]) != 0) fail("chdir", argv[index + 1]);
        index += 2;
    }
    if (index >= argc || strcmp(argv[index], "--") != 0 || index + 1 >= argc) {
        dprintf(2, "exchanger-exec: expected -- EXECUTABLE\n");
        return 126;
    }
    index += 1;
    execv(argv[index], &argv[index]);
    fail("cannot execute", argv[index]);
    return 127;
}
