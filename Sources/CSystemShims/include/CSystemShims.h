// Linux calls Swift's Glibc module does not export (they sit behind _GNU_SOURCE or take
// variadic arguments), wrapped as plain functions.
#ifndef EXCHANGER_CSYSTEMSHIMS_H
#define EXCHANGER_CSYSTEMSHIMS_H

/// prctl(PR_SET_CHILD_SUBREAPER, 1): orphaned descendants are re-parented to this process.
/// Returns 0, or -1 with errno set.
int exchanger_set_child_subreaper(void);

/// pipe2(fds, O_CLOEXEC): both ends close-on-exec atomically, so a pipe never leaks into a
/// child spawned concurrently. Returns 0, or -1 with errno set.
int exchanger_pipe_cloexec(int fds[2]);

#endif
