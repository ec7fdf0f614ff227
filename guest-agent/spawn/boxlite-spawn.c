/*
 * boxlite-spawn: the last step of starting a process in a box's container.
 *
 *   boxlite-spawn ROOT CWD UID GID GROUPS TTY CAPDROP ERRFD[:CGFD] EXECUTABLE ARGV0 [ARG...]
 *
 * The guest agent starts it with vfork and exec (a fork of the agent, a large
 * process, costs far more under emulation, and no Python runs in a child). It
 * enters ROOT (chroot), changes to CWD inside it, makes stdin the controlling
 * terminal when TTY is 1, takes the capabilities of CAPDROP (a hexadecimal mask, bit N
 * for capability N; 0: none) from its bounding set, so that the program never has them
 * (a root one has exactly what is left), drops to GROUPS (comma-separated gids, may be
 * empty), GID and UID in that order, and executes EXECUTABLE (a path inside ROOT) with
 * ARGV0 ARG... and the environment it was given. With CGFD (the box's cgroup.procs,
 * open for writing: cgroups.py) it first joins the box's cgroup, so that nothing the
 * program starts is outside the box's limits, and a cgroup namespace rooted there.
 * BOXLITE_RLIMITS in the environment (docker's --ulimit: RESOURCE=SOFT:HARD,...) are
 * the resource limits it sets, then takes out of the environment; BOXLITE_NO_NEW_PRIVS=1
 * (docker's --security-opt no-new-privileges) likewise sets PR_SET_NO_NEW_PRIVS.
 *
 * On failure it writes one message to ERRFD and exits: "STEP: REASON" and 126 when
 * a step failed, "exec:ERRNO" and 126 (127 for ENOENT) when the final exec did.
 * ERRFD is made close-on-exec before that exec, so the agent reads end-of-file
 * once the program runs.
 *
 *   boxlite-init          (argv[0]; BOXLITE_INIT=ERRFD:ROOT in the environment)
 *
 * The init of the box's own PID namespace (pidns.py makes the namespace and starts
 * this as its first process: PID 1 there). It mounts that namespace's proc on
 * ROOT/proc (over the guest's, so `ps` in the box sees the box's processes only),
 * enters ROOT, gives up every capability (it needs none to reap, and a box started
 * with --cap-drop must not find them in its PID 1), closes ERRFD (the agent reads
 * end-of-file: ready) and then only reaps
 * the orphans the box's processes leave. As a namespace's init it gets no signal
 * from inside the box that it does not handle: `kill -9 -1` there leaves it be.
 * (What it is told comes in its environment, which it then blanks: its command line,
 * what `ps` in the box shows, is just its name.)
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/types.h>
#include <unistd.h>

#define MAX_GROUPS 65536
#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif

extern char **environ;

static int errfd = -1;

static void report(const char *msg, int code)
{
    size_t len = strlen(msg);
    while (errfd >= 0 && len > 0) {
        ssize_t n = write(errfd, msg, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        msg += n;
        len -= (size_t)n;
    }
    _exit(code);
}

static void fail(const char *step)
{
    char msg[PATH_MAX + 128];
    snprintf(msg, sizeof msg, "%s: %s", step, strerror(errno));
    report(msg, 126);
}

static unsigned long number(const char *text, unsigned long max, const char *what)
{
    char *end = NULL;
    errno = 0;
    unsigned long value = strtoul(text, &end, 10);
    if (*text == '\0' || *end != '\0' || errno != 0 || value > max) {
        errno = EINVAL;
        fail(what);
    }
    return value;
}

static unsigned long long hex_mask(const char *text, const char *what)
{
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 16);
    if (*text == '\0' || *end != '\0' || errno != 0) {
        errno = EINVAL;
        fail(what);
    }
    return value;
}

/* Each capability of MASK out of the bounding set (one this kernel does not know: none
 * to take). Needs CAP_SETPCAP: before the drop to UID. */
static void drop_capabilities(unsigned long long mask)
{
    for (int cap = 0; cap < 64; cap++) {
        if ((mask & (1ULL << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0
            && errno != EINVAL)
            fail("drop the box's capabilities");
    }
}

/* The box's init needs no privilege once it is set up (it only reaps): it keeps
 * none, may gain none (no_new_privs), and no box process without CAP_SYS_PTRACE may
 * trace it (not dumpable). A box started with --cap-drop cannot get a capability back
 * through its PID 1 then. */
static void drop_every_capability(void)
{
    drop_capabilities(~0ULL);
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct none[2];
    memset(none, 0, sizeof none);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
        fail("clear the ambient capabilities");
    if (syscall(SYS_capset, &header, none) != 0)
        fail("drop the init's capabilities");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        fail("no new privileges");
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        fail("not dumpable");
}

/* docker's --ulimit: BOXLITE_RLIMITS=RESOURCE=SOFT:HARD,... (-1: unlimited), set
 * before the capabilities and the user go, then taken out of the program's environment. */
static void set_rlimits(void)
{
    const char *spec = getenv("BOXLITE_RLIMITS");
    if (spec == NULL)
        return;
    char *copy = strdup(spec);
    if (copy == NULL)
        fail("ulimits");
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        long resource;
        long long soft, hard;
        if (sscanf(tok, "%ld=%lld:%lld", &resource, &soft, &hard) != 3 || resource < 0) {
            errno = EINVAL;
            fail("ulimits");
        }
        struct rlimit limit = {soft < 0 ? RLIM_INFINITY : (rlim_t)soft,
                               hard < 0 ? RLIM_INFINITY : (rlim_t)hard};
        if (setrlimit((int)resource, &limit) != 0) {
            static const char *const names[] = {
                "cpu", "fsize", "data", "stack", "core", "rss", "nproc", "nofile", "memlock",
                "as", "locks", "sigpending", "msgqueue", "nice", "rtprio", "rttime"};
            char step[64];
            if (resource < (long)(sizeof names / sizeof names[0]))
                snprintf(step, sizeof step, "--ulimit %s=%lld:%lld", names[resource], soft, hard);
            else
                snprintf(step, sizeof step, "--ulimit %ld", resource);
            fail(step);
        }
    }
    free(copy);
    unsetenv("BOXLITE_RLIMITS");
}

static void on_child(int sig)
{
    (void)sig; /* (only to be woken: SIGCHLD's default is to be ignored) */
}

static void __attribute__((noreturn)) box_init(const char *root)
{
    char proc[PATH_MAX];
    if ((size_t)snprintf(proc, sizeof proc, "%s/proc", root) >= sizeof proc) {
        errno = ENAMETOOLONG;
        fail("mount proc");
    }
    if (mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
        fail("mount proc");
    if (chroot(root) != 0)
        fail("chroot");
    if (chdir("/") != 0)
        fail("chdir to /");
    prctl(PR_SET_NAME, "boxlite-init", 0, 0, 0);
    drop_every_capability();
    sigset_t child, others;
    sigemptyset(&child);
    sigaddset(&child, SIGCHLD);
    sigprocmask(SIG_BLOCK, &child, &others);
    sigdelset(&others, SIGCHLD);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_child;
    sigaction(SIGCHLD, &action, NULL);
    close(errfd); /* ready */
    errfd = -1;
    for (;;) {
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
        sigsuspend(&others); /* until a SIGCHLD (pending ones end it at once) */
    }
}

int main(int argc, char **argv)
{
    const char *told = getenv("BOXLITE_INIT");
    if (argc == 1 && told != NULL) {
        static char init[PATH_MAX + 32];
        if (strlen(told) >= sizeof init)
            return 126;
        strcpy(init, told);
        for (char **env = environ; *env != NULL; env++)
            memset(*env, 0, strlen(*env));
        char *root = strchr(init, ':');
        if (root == NULL)
            return 126;
        *root++ = '\0';
        errfd = (int)number(init, INT_MAX, "error fd");
        box_init(root);
    }
    if (argc < 11) {
        fputs("usage: boxlite-spawn ROOT CWD UID GID GROUPS TTY CAPDROP ERRFD[:CGFD] "
              "EXECUTABLE ARGV0 [ARG...]\n", stderr);
        return 126;
    }
    int cgfd = -1;
    char *cg = strchr(argv[8], ':');
    if (cg != NULL) {
        *cg++ = '\0';
        cgfd = (int)number(cg, INT_MAX, "cgroup fd");
    }
    errfd = (int)number(argv[8], INT_MAX, "error fd");
    unsigned long long capdrop = hex_mask(argv[7], "capabilities");
    const char *root = argv[1], *cwd = argv[2], *list = argv[5];
    uid_t uid = (uid_t)number(argv[3], INT_MAX, "uid");
    gid_t gid = (gid_t)number(argv[4], INT_MAX, "gid");
    int tty = argv[6][0] == '1';

    static gid_t groups[MAX_GROUPS];
    size_t count = 0;
    char *copy = strdup(list);
    if (copy == NULL)
        fail("groups");
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        if (count == MAX_GROUPS) {
            errno = E2BIG;
            fail("setgroups");
        }
        groups[count++] = (gid_t)number(tok, INT_MAX, "group");
    }

    /* The agent keeps itself out of the OOM killer's reach; its children must not. */
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        (void)!write(fd, "0", 1);
        close(fd);
    }

    if (cgfd >= 0) {
        if (write(cgfd, "0", 1) != 1)
            fail("join the box's cgroup");
        close(cgfd);
        /* A cgroup namespace rooted at that group, as a docker container has: the
         * program's /proc/self/cgroup says 0::/ (best effort: without it, 0::/box). */
        (void)syscall(SYS_unshare, CLONE_NEWCGROUP);
    }

    set_rlimits();
    char step[PATH_MAX + 64];
    if (chroot(root) != 0)
        fail("chroot");
    if (chdir(cwd) != 0) {
        snprintf(step, sizeof step, "chdir to %s", cwd);
        fail(step);
    }
    if (tty && ioctl(0, TIOCSCTTY, 0) != 0)
        fail("set the controlling terminal");
    drop_capabilities(capdrop);
    if (setgroups(count, groups) != 0)
        fail("setgroups");
    if (setgid(gid) != 0) {
        snprintf(step, sizeof step, "setgid %lu", (unsigned long)gid);
        fail(step);
    }
    if (setuid(uid) != 0) {
        snprintf(step, sizeof step, "setuid %lu", (unsigned long)uid);
        fail(step);
    }
    /* docker's --security-opt no-new-privileges: nothing it executes from here on
     * (set-uid, file capabilities) gains privileges. */
    const char *nnp = getenv("BOXLITE_NO_NEW_PRIVS");
    if (nnp != NULL) {
        if (strcmp(nnp, "1") == 0 && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
            fail("no-new-privileges");
        unsetenv("BOXLITE_NO_NEW_PRIVS");
    }
    if (fcntl(errfd, F_SETFD, FD_CLOEXEC) != 0)
        fail("error fd");
    execv(argv[9], &argv[10]);
    int err = errno;
    char msg[32];
    snprintf(msg, sizeof msg, "exec:%d", err);
    report(msg, err == ENOENT ? 127 : 126);
    return 126;
}
