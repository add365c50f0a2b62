/*
 * A tree in its own mount namespace, set up as a container runtime does it
 * (started by `crest run --ns mnt`): everything made private, a new root (a
 * bind of the host's root file system, non-recursive) with proc at /proc,
 * devtmpfs at /dev and a devpts of its own (newinstance) at /dev/pts,
 * pivoted to, then runs itself again from there (as a runtime execs the
 * container's program once inside); in its working directory D (the same path inside):
 *   D/t   tmpfs (size=1m,mode=751): a.txt "hello tmpfs" mode 0640, sub/b.bin
 *         4096 bytes of pattern owned 1234:5678, link -> a.txt (a symlink),
 *         empty dir e (mode 0700), under/hidden.txt "under a mount" covered
 *         by a tmpfs mounted on t/under, gone.txt "ghost data" held open
 *         read-write and removed (a ghost inside the namespace), sock a
 *         listening unix socket bound there, fifo a FIFO held open with
 *         "fifo data" in it
 *   D/bd  bind of D/t/sub (a directory of the tmpfs)
 *   D/bf  bind of D/t/a.txt over the file D/bf (a file bind)
 *   D/hb  bind of D/src (a directory of the root file system), read-only;
 *         ro-gone.txt "ro ghost" held open read-only, removed before the
 *         mount was made read-only (a ghost on a read-only mount)
 *   D/sh  tmpfs made shared; D/shp a bind of it (same peer group); D/sl a
 *         bind of it made a slave
 *   D/pv  tmpfs, private, nosuid,nodev,noexec
 *   D/mq  mqueue (of its own IPC namespace: crest run --ns mnt,ipc)
 *   D/bm  binfmt_misc (the kernel's instance: its entries are not the tree's)
 *   D/sys sysfs, D/cg cgroup2
 *   D/dd  bind of D/t/dsrc, a directory removed since; D/df bind of the
 *         file D/t/fsrc over the file D/df, removed since
 * a pty of its own devpts (/dev/pts/ptmx) with "ping\n" typed into its
 * master, and fds open through the mounts: D/t/a.txt (read, at 6), D/bd/b.bin
 * (read-write, at 100), D/hb/x (read).
 * After: every file's contents, mode, owner, the symlink; the fds at their
 * positions reading the same bytes, /dev/null writable; /proc/self/mountinfo
 * the same (ids and peer group numbers renumbered; devices left out, a new
 * tmpfs is a new device), and propagation live: a tmpfs mounted on D/sh/x
 * shows in D/shp/x and D/sl/x, one mounted on D/sl/y not in D/sh/y.
 *
 * With argv[2], added last: "ramfs" a ramfs at D/rf (refused), "mq-queue"
 * a queue /wl-q in the mqueue (kept: its IPC namespace is the tree's own);
 * and with "hidden", kept: a
 * file pv/inside.txt, then a tmpfs mounted over D/pv (the tmpfs hidden
 * whole), checked (after the mountinfo) by taking the cover off again.
 *
 * Sabotage: 1 changes a byte of D/t/a.txt; 2 unmounts D/bd.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <mqueue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static void put(const char *rel, const void *data, size_t len, mode_t mode) {
  int fd = open(wl_path(rel), O_WRONLY | O_CREAT | O_TRUNC, mode);
  if (fd < 0 || write(fd, data, len) != (ssize_t)len) wl_die(rel);
  fchmod(fd, mode);
  close(fd);
}

/* mountinfo with mount ids, devices and peer group numbers made comparable: one line per mount, sorted. */
static char *normal_mountinfo(char *out, size_t cap) {
  static char raw[1 << 16];
  if (wl_read_into("/proc/self/mountinfo", raw, sizeof(raw)) < 0) return strcpy(out, "unreadable\n");
  char *lines[256];
  int n = 0;
  for (char *s = strtok(raw, "\n"); s && n < 256; s = strtok(NULL, "\n")) lines[n++] = s;
  /* id -> mount point, for parents */
  static int ids[256];
  static char mps[256][256];
  for (int i = 0; i < n; i++) sscanf(lines[i], "%d %*d %*s %*s %255s", &ids[i], mps[i]);
  static char rows[256][1200];
  int groups[256], ng = 0;
  for (int i = 0; i < n; i++) {
    int id, parent;
    char root[256], mp[256], opts[128], rest[512];
    if (sscanf(lines[i], "%d %d %*s %255s %255s %127s %511[^\n]", &id, &parent, root, mp, opts, rest) != 6) continue;
    const char *pmp = "-";
    for (int j = 0; j < n; j++) if (ids[j] == parent) pmp = mps[j];
    snprintf(rows[i], sizeof(rows[i]), "%.200s %.200s %.200s %.100s | %.400s", mp, pmp, root, opts, rest);
  }
  /* sort rows (insertion sort, small) */
  for (int i = 1; i < n; i++)
    for (int j = i; j > 0 && strcmp(rows[j - 1], rows[j]) > 0; j--) {
      char t[1200];
      strcpy(t, rows[j]); strcpy(rows[j], rows[j - 1]); strcpy(rows[j - 1], t);
    }
  /* renumber shared:N / master:N in sorted order */
  size_t len = 0;
  out[0] = 0;
  for (int i = 0; i < n; i++) {
    char line[1300] = "";
    char *p = rows[i];
    while (*p) {
      char *tag = NULL;
      if (!strncmp(p, "shared:", 7)) tag = "shared:";
      else if (!strncmp(p, "master:", 7)) tag = "master:";
      if (tag && (p == rows[i] || p[-1] == ' ')) {
        int g = atoi(p + 7), k;
        for (k = 0; k < ng && groups[k] != g; k++);
        if (k == ng) groups[ng++] = g;
        char num[32];
        snprintf(num, sizeof(num), "%s%d", tag, k + 1);
        strcat(line, num);
        p += 7;
        while (*p >= '0' && *p <= '9') p++;
      } else {
        size_t l = strlen(line);
        line[l] = *p++;
        line[l + 1] = 0;
      }
    }
    len += snprintf(out + len, cap - len, "%s\n", line);
  }
  return out;
}

static char before[1 << 15], after[1 << 15];

int main(int argc, char **argv) {
  wl_init(argc, argv, "mntns");
  if (!getcwd(wl_dir, sizeof(wl_dir))) wl_die("getcwd");
  /* As a container runtime: the program runs again from its new root. */
  if (!getenv("WL_MNTNS_INSIDE")) wl_container_root(argv);

  /* the tmpfs and its files */
  mkdir(wl_path("t"), 0755);
  wl_mount("wl-tmpfs", wl_path("t"), "tmpfs", 0, "size=1m,mode=751");
  put("t/a.txt", "hello tmpfs", 11, 0640);
  mkdir(wl_path("t/sub"), 0755);
  char pat[4096];
  for (int i = 0; i < 4096; i++) pat[i] = (char)(i * 7 + 3);
  put("t/sub/b.bin", pat, sizeof(pat), 0600);
  if (chown(wl_path("t/sub/b.bin"), 1234, 5678)) wl_die("chown");
  if (symlink("a.txt", wl_path("t/link"))) wl_die("symlink");
  mkdir(wl_path("t/e"), 0700);
  mkdir(wl_path("t/under"), 0755);
  put("t/under/hidden.txt", "under a mount", 13, 0644);
  wl_mount("wl-cover", wl_path("t/under"), "tmpfs", 0, "size=16k");
  int ls = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  snprintf(sa.sun_path, sizeof(sa.sun_path), "%.90s", wl_path("t/sock"));
  if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) || listen(ls, 4)) wl_die("unix socket");
  if (mkfifo(wl_path("t/fifo"), 0600)) wl_die("mkfifo");
  int ff = open(wl_path("t/fifo"), O_RDWR | O_NONBLOCK);
  if (ff < 0 || write(ff, "fifo data", 9) != 9) wl_die("fifo");
  int fg = open(wl_path("t/gone.txt"), O_RDWR | O_CREAT, 0600);
  if (fg < 0 || write(fg, "ghost data", 10) != 10 || unlink(wl_path("t/gone.txt"))) wl_die("ghost");

  mkdir(wl_path("bd"), 0755);
  wl_mount(wl_path("t/sub"), wl_path("bd"), NULL, MS_BIND, NULL);
  put("bf", "", 0, 0644);
  wl_mount(wl_path("t/a.txt"), wl_path("bf"), NULL, MS_BIND, NULL);
  mkdir(wl_path("src"), 0755);
  put("src/x", "on the root fs", 14, 0644);
  mkdir(wl_path("hb"), 0755);
  wl_mount(wl_path("src"), wl_path("hb"), NULL, MS_BIND, NULL);
  /* Read-only: a mount with a file open for writing cannot be made read-only. */
  put("hb/ro-gone.txt", "ro ghost", 8, 0600);
  int fr = open(wl_path("hb/ro-gone.txt"), O_RDONLY);
  if (fr < 0 || unlink(wl_path("hb/ro-gone.txt"))) wl_die("ghost on hb");
  wl_mount(NULL, wl_path("hb"), NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL);

  mkdir(wl_path("sh"), 0755);
  wl_mount("wl-shared", wl_path("sh"), "tmpfs", 0, "size=64k");
  wl_mount(NULL, wl_path("sh"), NULL, MS_SHARED, NULL);
  mkdir(wl_path("sh/x"), 0755);
  mkdir(wl_path("sh/y"), 0755);
  mkdir(wl_path("shp"), 0755);
  wl_mount(wl_path("sh"), wl_path("shp"), NULL, MS_BIND, NULL);
  mkdir(wl_path("sl"), 0755);
  wl_mount(wl_path("sh"), wl_path("sl"), NULL, MS_BIND, NULL);
  wl_mount(NULL, wl_path("sl"), NULL, MS_SLAVE, NULL);

  mkdir(wl_path("pv"), 0755);
  wl_mount("wl-private", wl_path("pv"), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k");
  mkdir(wl_path("mq"), 0755);
  wl_mount("mqueue", wl_path("mq"), "mqueue", 0, NULL);
  mkdir(wl_path("bm"), 0755);
  wl_mount("binfmt_misc", wl_path("bm"), "binfmt_misc", 0, NULL);
  mkdir(wl_path("t/dsrc"), 0755);
  put("t/dsrc/in", "in a removed dir", 16, 0644);
  mkdir(wl_path("dd"), 0755);
  wl_mount(wl_path("t/dsrc"), wl_path("dd"), NULL, MS_BIND, NULL);
  put("t/fsrc", "removed file", 12, 0644);
  put("df", "", 0, 0644);
  wl_mount(wl_path("t/fsrc"), wl_path("df"), NULL, MS_BIND, NULL);
  if (unlink(wl_path("t/dsrc/in")) || rmdir(wl_path("t/dsrc")) || unlink(wl_path("t/fsrc"))) wl_die("remove bind sources");
  mkdir(wl_path("sys"), 0755);
  wl_mount("sysfs", wl_path("sys"), "sysfs", MS_RDONLY | MS_NOSUID, NULL);
  mkdir(wl_path("cg"), 0755);
  wl_mount("cgroup2", wl_path("cg"), "cgroup2", MS_NOSUID | MS_NODEV, NULL);

  int pm = open("/dev/pts/ptmx", O_RDWR | O_NOCTTY);
  int unlock = 0;
  if (pm < 0 || ioctl(pm, TIOCSPTLCK, &unlock)) wl_die("ptmx");
  char pts_before[64];
  if (ptsname_r(pm, pts_before, sizeof(pts_before))) wl_die("ptsname");
  int psl = open(pts_before, O_RDWR | O_NOCTTY);
  if (psl < 0 || write(pm, "ping\n", 5) != 5) wl_die("pty");
  int fa = open(wl_path("t/a.txt"), O_RDONLY);
  int fb = open(wl_path("bd/b.bin"), O_RDWR);
  int fx = open(wl_path("hb/x"), O_RDONLY);
  int fn = open("/dev/null", O_WRONLY);
  if (fa < 0 || fb < 0 || fx < 0 || fn < 0) wl_die("open");
  lseek(fa, 6, SEEK_SET);
  lseek(fb, 100, SEEK_SET);

  const char *extra = argc > 2 ? argv[2] : "";
  if (!strcmp(extra, "ramfs")) {
    mkdir(wl_path("rf"), 0755);
    wl_mount("wl-ramfs", wl_path("rf"), "ramfs", 0, NULL);
  } else if (!strcmp(extra, "mq-queue")) {
    mqd_t q = mq_open("/wl-q", O_RDWR | O_CREAT, 0600, NULL);
    if (q < 0) wl_die("mq_open");
    mq_close(q);
  } else if (!strcmp(extra, "hidden")) {
    put("pv/inside.txt", "under a cover", 13, 0644);
    wl_mount("wl-over", wl_path("pv"), "tmpfs", 0, "size=64k");
  }

  normal_mountinfo(before, sizeof(before));
  wl_ready();
  wl_wait();

  if (wl_sabotage() == 1) put("t/a.txt", "hellO tmpfs", 11, 0640);
  if (wl_sabotage() == 2) umount2(wl_path("bd"), MNT_DETACH);

  char buf[5000];
  ssize_t n = wl_read_into(wl_path("t/a.txt"), buf, sizeof(buf));
  if (n != 11 || memcmp(buf, "hello tmpfs", 11)) fail("t/a.txt reads %zd bytes '%.*s', not 'hello tmpfs'", n, (int)(n > 0 ? n : 0), buf);
  n = wl_read_into(wl_path("bf"), buf, sizeof(buf));
  if (n != 11 || memcmp(buf, "hello tmpfs", 11)) fail("bf (file bind) reads %zd bytes, not 'hello tmpfs'", n);
  n = wl_read_into(wl_path("bd/b.bin"), buf, sizeof(buf));
  if (n != 4096 || memcmp(buf, pat, 4096)) fail("bd/b.bin (directory bind) reads %zd bytes, not the pattern", n);
  n = wl_read_into(wl_path("hb/x"), buf, sizeof(buf));
  if (n != 14 || memcmp(buf, "on the root fs", 14)) fail("hb/x reads %zd bytes, not 'on the root fs'", n);
  struct stat st, a, b;
  if (stat(wl_path("t/a.txt"), &st) || (st.st_mode & 07777) != 0640) fail("t/a.txt mode %o, not 640", st.st_mode & 07777);
  if (stat(wl_path("t/sub/b.bin"), &st) || st.st_uid != 1234 || st.st_gid != 5678) fail("t/sub/b.bin owner %u:%u, not 1234:5678", st.st_uid, st.st_gid);
  if (stat(wl_path("t"), &st) || (st.st_mode & 07777) != 0751) fail("t (tmpfs root) mode %o, not 751", st.st_mode & 07777);
  if (stat(wl_path("t/e"), &st) || !S_ISDIR(st.st_mode) || (st.st_mode & 07777) != 0700) fail("t/e not a directory of mode 700");
  char link[64] = "";
  if (readlink(wl_path("t/link"), link, sizeof(link) - 1) != 5 || strcmp(link, "a.txt")) fail("t/link -> '%s', not a.txt", link);
  if (open(wl_path("hb/newfile"), O_WRONLY | O_CREAT, 0644) >= 0 || errno != EROFS) fail("hb is not read-only");

  if (pread(fa, buf, 5, 0) != 5 || lseek(fa, 0, SEEK_CUR) != 6) fail("fd of t/a.txt: position %ld, not 6", (long)lseek(fa, 0, SEEK_CUR));
  if (read(fa, buf, 5) != 5 || memcmp(buf, "tmpfs", 5)) fail("fd of t/a.txt does not read 'tmpfs' at 6");
  if (lseek(fb, 0, SEEK_CUR) != 100) fail("fd of bd/b.bin: position %ld, not 100", (long)lseek(fb, 0, SEEK_CUR));
  if (read(fb, buf, 4) != 4 || memcmp(buf, pat + 100, 4)) fail("fd of bd/b.bin does not read the pattern at 100");
  if (read(fx, buf, 6) != 6 || memcmp(buf, "on the", 6)) fail("fd of hb/x does not read 'on the'");
  if (write(fn, "x", 1) != 1) fail("/dev/null is not writable through its fd");
  if (pread(fg, buf, 10, 0) != 10 || memcmp(buf, "ghost data", 10)) fail("the removed t/gone.txt does not read 'ghost data' through its fd");
  if (fstat(fg, &st) || st.st_nlink != 0) fail("the removed t/gone.txt has %lu links, not 0", (unsigned long)st.st_nlink);
  if (pread(fr, buf, 8, 0) != 8 || memcmp(buf, "ro ghost", 8)) fail("the removed hb/ro-gone.txt (a ghost on a read-only mount) does not read 'ro ghost' through its fd");
  if (fstat(fr, &st) || st.st_nlink != 0) fail("the removed hb/ro-gone.txt has %lu links, not 0", (unsigned long)st.st_nlink);

  normal_mountinfo(after, sizeof(after));
  wl_compare_lines("mountinfo", before, after);

  /* the pty of its own devpts */
  char pts_after[64] = "";
  if (ptsname_r(pm, pts_after, sizeof(pts_after)) || strcmp(pts_after, pts_before)) fail("the pty is %s, not %s", pts_after, pts_before);
  if (fstat(psl, &st) || stat(pts_before, &a) || st.st_rdev != a.st_rdev) fail("the slave fd is not %s", pts_before);
  n = read(psl, buf, sizeof(buf));
  if (n != 5 || memcmp(buf, "ping\n", 5)) fail("the pty slave reads %zd bytes, not 'ping\\n'", n);

  /* the socket and the FIFO in the tmpfs */
  int cs = socket(AF_UNIX, SOCK_STREAM, 0);
  if (cs < 0 || connect(cs, (struct sockaddr *)&sa, sizeof(sa))) fail("connect to t/sock: %s", strerror(errno));
  else if (accept(ls, NULL, NULL) < 0) fail("accept on t/sock: %s", strerror(errno));
  if (read(ff, buf, 9) != 9 || memcmp(buf, "fifo data", 9)) fail("t/fifo does not hold 'fifo data'");
  if (stat(wl_path("sys/kernel"), &st) || !S_ISDIR(st.st_mode)) fail("sys is not a sysfs");
  if (stat(wl_path("cg/cgroup.controllers"), &st)) fail("cg is not a cgroup2");

  /* the file under t/under's mount */
  if (umount2(wl_path("t/under"), MNT_DETACH)) fail("umount t/under: %s", strerror(errno));
  n = wl_read_into(wl_path("t/under/hidden.txt"), buf, sizeof(buf));
  if (n != 13 || memcmp(buf, "under a mount", 13)) fail("t/under/hidden.txt (under a mount) reads %zd bytes, not 'under a mount'", n);

  if (!strcmp(extra, "hidden")) {
    if (umount2(wl_path("pv"), MNT_DETACH)) fail("umount the cover of pv: %s", strerror(errno));
    n = wl_read_into(wl_path("pv/inside.txt"), buf, sizeof(buf));
    if (n != 13 || memcmp(buf, "under a cover", 13)) fail("pv/inside.txt (a tmpfs covered whole) reads %zd bytes, not 'under a cover'", n);
  }

  /* propagation, live */
  if (mount("wl-x", wl_path("sh/x"), "tmpfs", 0, "size=16k")) fail("mount on sh/x: %s", strerror(errno));
  if (mount("wl-y", wl_path("sl/y"), "tmpfs", 0, "size=16k")) fail("mount on sl/y: %s", strerror(errno));
  if (stat(wl_path("sh/x"), &a) || stat(wl_path("shp/x"), &b) || a.st_dev != b.st_dev) fail("a mount on sh/x does not show in shp/x (peer group lost)");
  if (stat(wl_path("sl/x"), &b) || a.st_dev != b.st_dev) fail("a mount on sh/x does not show in sl/x (slave lost)");
  if (stat(wl_path("sl/y"), &a) || stat(wl_path("sh/y"), &b) || a.st_dev == b.st_dev) fail("a mount on sl/y shows in sh/y (slave became shared)");
  return wl_done();
}
