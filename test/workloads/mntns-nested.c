/*
 * A task of the tree in a mount namespace of its own (nested: not the
 * root's). Started by `crest run --ns pid,mnt`, the root sets up its own
 * namespace as the mntns workload does (everything private, a bind of the
 * host's root pivoted to, proc, devtmpfs, a devpts of its own) and runs
 * itself again from there. Then, in its directory D, it makes the empty
 * directories n and nb, a tmpfs at D/s made shared, and forks "inner",
 * which unshares CLONE_NEWNS (its copy of D/s a peer of the root's: one
 * peer group across the two namespaces), mounts a tmpfs at D/n (size=1m) with f.txt
 * "nested tmpfs file" and sub/g.txt "under sub", binds D/n/sub on D/nb,
 * holds D/n/f.txt open read-only at offset 7 and has D/n/sub as its cwd;
 * it keeps an fd of D/o.txt that the root opened before the fork, through
 * the root's namespace's mount (its mnt_id is not the one inner's own open
 * of D/o.txt gets, as criu's mntns_open checks).
 * Both record their /proc/self/mountinfo (ids, devices and peer numbers
 * left out, sorted).
 * After SIGTERM the root asks inner (over a pipe) to check: its
 * mountinfo the same, its fd reading "tmpfs file" from offset 7, its cwd
 * D/n/sub holding g.txt, D/nb/g.txt "under sub", and its mount namespace
 * not the root's (the root sends its inode); then the root mounts a tmpfs
 * on D/s/x, which inner must see (propagation between the namespaces,
 * live after restore). The root checks its own
 * mountinfo the same and that it sees neither f.txt in D/n nor g.txt in
 * D/nb (the mounts are inner's only).
 *
 * With argv[2] "pivot", inner then mounts a proc at D/n/proc, pivots into its tmpfs D/n and detaches
 * the old root (zdtm's mntns_pivot_root: its program stays mapped from
 * there): its checks are then its mountinfo, its fd, its cwd (/sub) and
 * g.txt there, and its namespace (no nb, s nor o.txt: they were in the old root).
 *
 * With argv[2] "flat", the root keeps the namespace it was started in (no
 * setup, no exec, no D/s; inner makes its copy private): crest refuses a nested mount namespace in a tree that
 * has none of its own.
 *
 * With argv[2] "inotify" (zdtm's inotify01), the root also holds an
 * inotify instance watching inner's D/n/sub (reached through
 * /proc/INNER/cwd: a tmpfs only inner's namespace shows) for IN_CREATE and
 * the file w.txt it made there for IN_CLOSE_WRITE, and an fd of w.txt
 * (through inner's mount). After: the root writes and closes w.txt and
 * makes new.txt through /proc/INNER/cwd; the two events must come with the
 * watches' wds, new.txt named.
 *
 * With argv[2] "ghost" (zdtm's mntns_link_ghost), before the fork the root
 * mounts a tmpfs at D/g with the directories 1 and 2, binds D/g/1 on D/g1,
 * makes D/g1/F "ghost data", opens it (gfd, through the bind) and links it
 * as D/g/2/F; inner binds D/g/2 on D/g2, unmounts D/g1 and D/g (its
 * namespace shows the file's directory 1 nowhere) and opens D/g2/F (gfd2);
 * once inner is ready the root removes both names. inner holds the file
 * through a mount of each namespace. With "remap" (zdtm's
 * mntns_link_remap, crest dump --link-remap) the root links it as D/g/F
 * too, which stays. After: gfd and gfd2 the same inode with 0 links (1 with
 * "remap"), through different mounts, a write through one read through the
 * other; the root sees D/g/1 and D/g/2 empty and D/g holding only 1, 2 (and
 * F): the restore's names gone.
 *
 * Started in a user namespace of its own (crest run --ns pid,mnt,user),
 * where the host's mounts are locked together (no bind of / alone, no
 * devtmpfs), the root's namespace is instead a bind of D/u holding a copy
 * of the program and of the libraries it loads, a proc and D bound at its
 * own path (an external mount: dump --external mnt[D]:KEY, restore --root
 * D/u --external mnt[KEY]:D); its log is D/out-userns.log (crest run's
 * out.log has an owner the namespace does not map). D/g is then a tmpfs of
 * that namespace, which does not map crest's root.
 *
 * Sabotage: 1 inner unmounts D/nb before checking; 2 inner moves its fd to
 * offset 0; 3 the root mounts a tmpfs on D/n before checking; 4 the root
 * makes D/s private before mounting on D/s/x; 5 inner reopens D/o.txt in
 * its own namespace over the root's fd; 6 ("inotify") the root removes its
 * watch of D/n/sub, ("ghost", "remap") inner opens a new D/g2/X over gfd2.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void put(const char *path, const char *data) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || write(fd, data, strlen(data)) != (ssize_t)strlen(data)) wl_die(path);
  close(fd);
}

/* mountinfo without mount ids and devices (a restored tmpfs is a new device), peer numbers renumbered; sorted. */
static char *normal_mountinfo(char *out, size_t cap) {
  static char raw[1 << 16];
  if (wl_read_into("/proc/self/mountinfo", raw, sizeof(raw)) < 0) return strcpy(out, "unreadable\n");
  static char rows[128][700];
  int n = 0;
  for (char *s = strtok(raw, "\n"); s && n < 128; s = strtok(NULL, "\n")) {
    char root[200], mp[200], rest[280];
    if (sscanf(s, "%*d %*d %*s %199s %199s %279[^\n]", root, mp, rest) != 3) continue;
    /* peer group numbers are not kept: only whether there is one */
    for (char *p = rest; (p = strpbrk(p, "0123456789")); p++)
      if (p > rest + 6 && (!strncmp(p - 7, "shared:", 7) || !strncmp(p - 7, "master:", 7))) *p = '#';
    snprintf(rows[n++], sizeof(rows[0]), "%s %s %s", mp, root, rest);
  }
  for (int i = 1; i < n; i++)
    for (int j = i; j > 0 && strcmp(rows[j - 1], rows[j]) > 0; j--) {
      char t[700];
      strcpy(t, rows[j]); strcpy(rows[j], rows[j - 1]); strcpy(rows[j - 1], t);
    }
  size_t len = 0;
  out[0] = 0;
  for (int i = 0; i < n && len < cap; i++) len += snprintf(out + len, cap - len, "%s\n", rows[i]);
  return out;
}

static void expect_file(const char *path, const char *want) {
  char buf[128];
  ssize_t n = wl_read_into(path, buf, sizeof(buf));
  if (n != (ssize_t)strlen(want) || memcmp(buf, want, n)) fail("%s reads %zd bytes '%.*s', not '%s'", path, n, n > 0 ? (int)n : 0, n > 0 ? buf : "", want);
}

static char before[1 << 14], after[1 << 14];
static int outer_fd = -1;

static int mnt_id_of(int fd) {
  char path[64], buf[1024];
  snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
  if (wl_read_into(path, buf, sizeof(buf)) < 0) return -1;
  char *m = strstr(buf, "mnt_id:");
  return m ? atoi(m + 7) : -1;
}

/* fail()s unless outer_fd is through another mount than inner's own open of D/o.txt. */
static void check_outer_fd(const char *when) {
  int mine = open(wl_path("o.txt"), O_RDONLY);
  int a = mnt_id_of(outer_fd), b = mnt_id_of(mine);
  if (mine < 0 || a < 0 || b < 0) fail("%s: mnt_id of o.txt's fds: %d, %d", when, a, b);
  else if (a == b) fail("%s: the fd of o.txt opened in the root's namespace is through inner's own mount %d", when, b);
  close(mine);
}
static int ask[2], answer[2];

/* The child in a mount namespace of its own; returns its verdict's failures over `answer`. */
static int flat, pivot, watch, ghost, remap;
static int gfd = -1;

/* ghost, remap: inner's view of D/g: its own bind of D/g/2, the root's D/g1 and D/g gone. */
static int ghost_inner(void) {
  wl_mount(wl_path("g/2"), wl_path("g2"), NULL, MS_BIND, NULL);
  if (umount2(wl_path("g1"), 0) || umount2(wl_path("g"), 0)) wl_die("inner: umount g1, g");
  int fd = open(wl_path("g2/F"), O_RDWR);
  if (fd < 0) wl_die("inner: open g2/F");
  return fd;
}

/* ghost, remap: gfd and gfd2 one inode with its links, through two mounts, sharing what is written. */
static void ghost_check(int gfd2) {
  struct stat a, b;
  if (fstat(gfd, &a) || fstat(gfd2, &b)) {
    fail("inner: fstat of F's fds: %s", strerror(errno));
    return;
  }
  if (a.st_dev != b.st_dev || a.st_ino != b.st_ino) fail("inner: g1/F's fd is inode %lu, g2/F's %lu: not one file", (unsigned long)a.st_ino, (unsigned long)b.st_ino);
  if (a.st_nlink != (nlink_t)(remap ? 1 : 0)) fail("inner: F has %lu links, not %d", (unsigned long)a.st_nlink, remap ? 1 : 0);
  int ma = mnt_id_of(gfd), mb = mnt_id_of(gfd2);
  if (ma < 0 || ma == mb) fail("inner: F's fds are through mounts %d and %d, not two", ma, mb);
  char buf[32] = "";
  if (pread(gfd2, buf, sizeof(buf), 0) != 10 || memcmp(buf, "ghost data", 10)) fail("inner: g2/F reads '%.10s', not 'ghost data'", buf);
  if (pwrite(gfd, "GHOST", 5, 0) != 5) fail("inner: write through g1/F's fd: %s", strerror(errno));
  memset(buf, 0, sizeof(buf));
  if (pread(gfd2, buf, sizeof(buf), 0) != 10 || memcmp(buf, "GHOST data", 10)) fail("inner: a write through g1/F's fd reads '%.10s' through g2/F's, not 'GHOST data'", buf);
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The names of directory `rel` of D, sorted, each followed by a space. */
static void names_of(const char *rel, char *out, size_t cap) {
  char *names[64];
  int n = 0;
  DIR *d = opendir(wl_path(rel));
  out[0] = 0;
  if (!d) return;
  for (struct dirent *e; (e = readdir(d)) && n < 64;)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) names[n++] = strdup(e->d_name);
  closedir(d);
  qsort(names, n, sizeof(names[0]), by_name);
  size_t len = 0;
  for (int i = 0; i < n; i++) {
    if (len < cap) len += snprintf(out + len, cap - len, "%s ", names[i]);
    free(names[i]);
  }
}

/* mkdir -p of the directories above `path`. */
static void make_parents(const char *path) {
  char d[2 * PATH_MAX];
  snprintf(d, sizeof(d), "%s", path);
  for (char *p = d + 1; (p = strchr(p, '/')); p++) {
    *p = 0;
    if (mkdir(d, 0755) && errno != EEXIST) wl_die(d);
    *p = '/';
  }
}

/* cp src dst (mode 0755), making dst's directories. */
static void copy_file(const char *src, const char *dst) {
  make_parents(dst);
  int in = open(src, O_RDONLY), out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0755);
  if (in < 0 || out < 0) wl_die(src);
  char buf[1 << 16];
  for (ssize_t n; (n = read(in, buf, sizeof(buf))) > 0;)
    if (write(out, buf, n) != n) wl_die(dst);
  close(in);
  close(out);
}

/*
 * In a user namespace of its own the host's mounts are locked together:
 * no bind of / alone, no devtmpfs. The root becomes a bind of D/u holding
 * a copy of the program and the libraries it loads, a proc, and D bound at
 * its own path (an external mount: restored with --external). Returns the
 * program's path there.
 */
static const char *userns_root(void) {
  static char prog[16] = "/w";
  char u[PATH_MAX], p[2 * PATH_MAX + 64];
  snprintf(u, sizeof(u), "%.4000s/u", wl_dir);
  if (mkdir(u, 0755)) wl_die("mkdir u");
  wl_mount(u, u, NULL, MS_BIND, NULL);
  snprintf(p, sizeof(p), "%s/w", u);
  copy_file("/proc/self/exe", p);
  const char *libs[] = {"/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"};
  for (int i = 0; i < 2; i++) {
    char real[PATH_MAX];
    if (!realpath(libs[i], real)) wl_die(libs[i]);
    snprintf(p, sizeof(p), "%s%s", u, libs[i]);
    copy_file(real, p);
  }
  snprintf(p, sizeof(p), "%s/proc", u);
  if (mkdir(p, 0555)) wl_die("mkdir u/proc");
  snprintf(p, sizeof(p), "%s%s/", u, wl_dir);
  make_parents(p);
  snprintf(p, sizeof(p), "%s%s", u, wl_dir);
  wl_mount(wl_dir, p, NULL, MS_BIND, NULL);
  if (chdir(u)) wl_die("chdir u");
  return prog;
}

static void inner(void) {
  if (unshare(CLONE_NEWNS)) wl_die("unshare(CLONE_NEWNS)");
  /* In crest's namespace (flat), nothing it mounts may reach the host's. */
  if (flat) wl_mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
  wl_mount("wl-nested", wl_path("n"), "tmpfs", 0, "size=1m,mode=755");
  put(wl_path("n/f.txt"), "nested tmpfs file");
  if (mkdir(wl_path("n/sub"), 0755)) wl_die("mkdir n/sub");
  put(wl_path("n/sub/g.txt"), "under sub");
  wl_mount(wl_path("n/sub"), wl_path("nb"), NULL, MS_BIND, NULL);
  int fd = open(wl_path("n/f.txt"), O_RDONLY);
  if (fd < 0 || lseek(fd, 7, SEEK_SET) != 7) wl_die("open n/f.txt");
  int gfd2 = ghost || remap ? ghost_inner() : -1;
  if (chdir(wl_path("n/sub"))) wl_die("chdir n/sub");
  if (pivot) {
    /* An fd through the old root would be refused (its mount is in no namespace of the tree): only the program stays mapped from there. */
    close(outer_fd);
    /* A /proc of its own inside, for its checks (its mountinfo, its namespace). */
    if (mkdir(wl_path("n/proc"), 0555)) wl_die("mkdir n/proc");
    wl_mount("proc", wl_path("n/proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    if (chdir(wl_path("n")) || mkdir("old", 0755) || syscall(SYS_pivot_root, ".", "old") || umount2("/old", MNT_DETACH) || rmdir("/old") || chdir("/sub")) wl_die("pivot_root into n");
  }
  if (!flat && !pivot) check_outer_fd("before");
  normal_mountinfo(before, sizeof(before));
  char c = 'r';
  if (write(answer[1], &c, 1) != 1) wl_die("tell ready");

  unsigned long root_ns;
  if (read(ask[0], &root_ns, sizeof(root_ns)) != sizeof(root_ns)) wl_die("wait for the check");
  if (wl_sabotage() == 1 && umount2(wl_path("nb"), 0)) wl_die("sabotage: umount nb");
  if (wl_sabotage() == 2) lseek(fd, 0, SEEK_SET);
  if (wl_sabotage() == 5) {
    int mine = open(wl_path("o.txt"), O_RDONLY);
    if (mine < 0 || dup2(mine, outer_fd) < 0) wl_die("sabotage: reopen o.txt");
    close(mine);
  }
  if (!flat && !pivot) check_outer_fd("after");
  if (gfd2 >= 0) {
    if (wl_sabotage() == 6) {
      int other = open(wl_path("g2/X"), O_RDWR | O_CREAT, 0644);
      if (other < 0 || write(other, "ghost data", 10) != 10 || dup2(other, gfd2) < 0) wl_die("sabotage: g2/X over g2/F");
      close(other);
    }
    ghost_check(gfd2);
  }
  normal_mountinfo(after, sizeof(after));
  wl_compare_lines("inner's mountinfo", before, after);
  char buf[64];
  ssize_t n = read(fd, buf, sizeof(buf));
  if (n != 10 || memcmp(buf, "tmpfs file", 10)) fail("inner's fd of n/f.txt reads %zd bytes '%.*s' from offset 7, not 'tmpfs file'", n, n > 0 ? (int)n : 0, n > 0 ? buf : "");
  char cwd[PATH_MAX];
  const char *want_cwd = pivot ? "/sub" : wl_path("n/sub");
  if (!getcwd(cwd, sizeof(cwd)) || strcmp(cwd, want_cwd)) fail("inner's cwd is %s, not %s", cwd, want_cwd);
  expect_file("g.txt", "under sub");
  if (!pivot) expect_file(wl_path("nb/g.txt"), "under sub");
  struct stat st;
  if (stat("/proc/self/ns/mnt", &st)) fail("inner: stat /proc/self/ns/mnt: %s", strerror(errno));
  else if ((unsigned long)st.st_ino == root_ns) fail("inner is in the root's mount namespace (%lu), not its own", root_ns);
  if (!flat && !pivot) {
    /* The root mounts on s/x once told; its peer here shows it. */
    if (write(answer[1], &c, 1) != 1 || read(ask[0], &c, 1) != 1) wl_die("wait for the root's mount on s/x");
    struct stat s, x;
    if (stat(wl_path("s"), &s) || stat(wl_path("s/x"), &x)) fail("inner: stat s, s/x: %s", strerror(errno));
    else if (s.st_dev == x.st_dev) fail("inner does not see the root's mount on s/x (a peer of the root's s): the peer group is lost");
  }
  int failures = wl_failures();
  if (write(answer[1], &failures, sizeof(failures)) != sizeof(failures)) wl_die("tell the verdict");
  exit(0);
}

int main(int argc, char **argv) {
  wl_init(argc, argv, "mntns-nested");
  if (!getcwd(wl_dir, sizeof(wl_dir))) wl_die("getcwd");
  flat = argc > 2 && !strcmp(argv[2], "flat");
  pivot = argc > 2 && !strcmp(argv[2], "pivot");
  watch = argc > 2 && !strcmp(argv[2], "inotify");
  ghost = argc > 2 && !strcmp(argv[2], "ghost");
  remap = argc > 2 && !strcmp(argv[2], "remap");
  char map[64] = "";
  /* Not the whole id space mapped: a user namespace of its own. */
  int in_userns = wl_read_into("/proc/self/uid_map", map, sizeof(map) - 1) > 0 && !strstr(map, "4294967295");
  if (!flat && in_userns && !getenv("WL_MNTNS_INSIDE")) {
    wl_mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
    const char *prog = userns_root();
    char p[32];
    snprintf(p, sizeof(p), "proc");
    wl_mount("proc", p, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    if (syscall(SYS_pivot_root, ".", ".") || umount2(".", MNT_DETACH) || chdir(wl_dir)) wl_die("pivot_root into u");
    /* crest run's out.log has an owner this namespace does not map: a log of its own beside it. */
    int in = open("/", O_RDONLY | O_DIRECTORY), out = open(wl_path("out-userns.log"), O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (in < 0 || out < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0) wl_die("stdio");
    close(in);
    close(out);
    setenv("WL_MNTNS_INSIDE", "1", 1);
    argv[0] = (char *)prog;
    execv(prog, argv);
    wl_die("execv");
  }
  /* The root's own namespace, as a container runtime sets it up (as mntns.c does). */
  if (!flat && !getenv("WL_MNTNS_INSIDE")) wl_container_root(argv);
  if (mkdir(wl_path("n"), 0755) || mkdir(wl_path("nb"), 0755)) wl_die("mkdir n, nb");
  if (!flat) {
    if (mkdir(wl_path("s"), 0755)) wl_die("mkdir s");
    wl_mount("wl-shared", wl_path("s"), "tmpfs", 0, "size=64k");
    wl_mount(NULL, wl_path("s"), NULL, MS_SHARED, NULL);
    if (mkdir(wl_path("s/x"), 0755)) wl_die("mkdir s/x");
    put(wl_path("o.txt"), "outer");
    outer_fd = open(wl_path("o.txt"), O_RDONLY);
    if (outer_fd < 0) wl_die("open o.txt");
  }
  if (ghost || remap) {
    if (mkdir(wl_path("g"), 0755) || mkdir(wl_path("g1"), 0755) || mkdir(wl_path("g2"), 0755)) wl_die("mkdir g, g1, g2");
    wl_mount("wl-ghost", wl_path("g"), "tmpfs", 0, "size=64k");
    if (mkdir(wl_path("g/1"), 0755) || mkdir(wl_path("g/2"), 0755)) wl_die("mkdir g/1, g/2");
    wl_mount(wl_path("g/1"), wl_path("g1"), NULL, MS_BIND, NULL);
    gfd = open(wl_path("g1/F"), O_RDWR | O_CREAT | O_EXCL, 0640);
    if (gfd < 0 || write(gfd, "ghost data", 10) != 10) wl_die("make g1/F");
    if (link(wl_path("g/1/F"), wl_path("g/2/F"))) wl_die("link g/1/F as g/2/F");
    if (remap && link(wl_path("g/1/F"), wl_path("g/F"))) wl_die("link g/1/F as g/F");
  }
  if (pipe(ask) || pipe(answer)) wl_die("pipe");
  pid_t kid = fork();
  if (kid < 0) wl_die("fork");
  if (kid == 0) inner();
  if (outer_fd >= 0) close(outer_fd);
  char c;
  if (read(answer[0], &c, 1) != 1) wl_die("inner did not get ready");
  if (gfd >= 0) {
    close(gfd);
    if (unlink(wl_path("g/1/F")) || unlink(wl_path("g/2/F"))) wl_die("remove g/1/F, g/2/F");
  }
  int ifd = -1, wd_dir = -1, wd_file = -1, wfd = -1;
  if (watch) {
    /* inner's D/n/sub, which only its namespace shows, through its cwd. */
    char sub[64], w[80];
    snprintf(sub, sizeof(sub), "/proc/%d/cwd", (int)kid);
    snprintf(w, sizeof(w), "%s/w.txt", sub);
    ifd = inotify_init1(IN_NONBLOCK);
    wfd = open(w, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (ifd < 0 || wfd < 0) wl_die("inotify_init1, open inner's w.txt");
    wd_dir = inotify_add_watch(ifd, sub, IN_CREATE);
    wd_file = inotify_add_watch(ifd, w, IN_CLOSE_WRITE);
    if (wd_dir < 0 || wd_file < 0) wl_die("inotify_add_watch");
  }
  normal_mountinfo(before, sizeof(before));
  wl_ready();
  wl_wait();

  if (watch) {
    char nw[80];
    snprintf(nw, sizeof(nw), "/proc/%d/cwd/new.txt", (int)kid);
    if (wl_sabotage() == 6) inotify_rm_watch(ifd, wd_dir);
    /* Queued before: the stray IN_IGNORED of a sabotage; read away. */
    char ev[4096];
    while (read(ifd, ev, sizeof(ev)) > 0) {}
    int nfd = open(nw, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (write(wfd, "w", 1) != 1 || close(wfd) || nfd < 0 || close(nfd)) fail("write w.txt, make new.txt in inner's n/sub: %s", strerror(errno));
    int got_create = 0, got_close = 0;
    ssize_t n = read(ifd, ev, sizeof(ev));
    for (ssize_t off = 0; n > 0 && off < n;) {
      struct inotify_event *e = (struct inotify_event *)(ev + off);
      if (e->wd == wd_dir && (e->mask & IN_CREATE) && e->len && !strcmp(e->name, "new.txt")) got_create = 1;
      if (e->wd == wd_file && (e->mask & IN_CLOSE_WRITE)) got_close = 1;
      off += sizeof(*e) + e->len;
    }
    if (!got_create) fail("no IN_CREATE of new.txt from the watch %d of inner's n/sub", wd_dir);
    if (!got_close) fail("no IN_CLOSE_WRITE from the watch %d of inner's n/sub/w.txt", wd_file);
  }
  struct stat st;
  if (stat("/proc/self/ns/mnt", &st)) wl_die("stat /proc/self/ns/mnt");
  unsigned long ino = st.st_ino;
  if (write(ask[1], &ino, sizeof(ino)) != sizeof(ino)) fail("cannot ask inner to check: %s", strerror(errno));
  if (!flat && !pivot) {
    if (read(answer[0], &c, 1) != 1) fail("inner did not ask for the mount on s/x");
    if (wl_sabotage() == 4) wl_mount(NULL, wl_path("s"), NULL, MS_PRIVATE, NULL);
    wl_mount("wl-x", wl_path("s/x"), "tmpfs", 0, "size=16k");
    if (write(ask[1], &c, 1) != 1) fail("cannot tell inner of the mount on s/x");
  }
  int failures = -1;
  if (read(answer[0], &failures, sizeof(failures)) != sizeof(failures)) fail("inner gave no verdict");
  else if (failures) fail("inner: %d failures (see its lines above)", failures);
  int status;
  if (waitpid(kid, &status, 0) != kid || !WIFEXITED(status) || WEXITSTATUS(status)) fail("inner did not exit 0 (status %#x)", status);
  if (wl_sabotage() == 3) wl_mount("wl-sabotage", wl_path("n"), "tmpfs", 0, NULL);
  if (!flat && !pivot && umount2(wl_path("s/x"), 0)) fail("umount s/x: %s", strerror(errno));
  normal_mountinfo(after, sizeof(after));
  wl_compare_lines("the root's mountinfo", before, after);
  if (!access(wl_path("n/f.txt"), F_OK)) fail("the root sees n/f.txt, inner's");
  if (!access(wl_path("nb/g.txt"), F_OK)) fail("the root sees nb/g.txt, inner's");
  if (ghost || remap) {
    char names[256];
    const char *want[] = {"g/1", "", "g/2", "", "g", remap ? "1 2 F " : "1 2 "};
    for (int i = 0; i < 6; i += 2) {
      names_of(want[i], names, sizeof(names));
      if (strcmp(names, want[i + 1])) fail("the root's %s holds '%s', not '%s'", want[i], names, want[i + 1]);
    }
  }
  return wl_done();
}
