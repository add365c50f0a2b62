// The kernel boundary of crest: a raw syscall entry point and the few things
// JavaScript cannot do by itself (addresses of buffers, page-aligned memory,
// cpuid, starting a process with a chosen PID without libuv knowing it).
// Everything that decides what to call lives in TypeScript (src/sys/).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/sched.h>
#include <node_api.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <cpuid.h>

#define MAX_ARGS 6
#define THROW(env, msg)                      \
	do {                                 \
		napi_throw_error(env, NULL, msg); \
		return NULL;                 \
	} while (0)

// Converts one JS argument to a machine word. Strings are copied into a
// NUL-terminated temporary that the caller frees (*tmp).
static int to_word(napi_env env, napi_value v, uint64_t *out, char **tmp)
{
	napi_valuetype t;
	bool is;
	*tmp = NULL;
	if (napi_typeof(env, v, &t) != napi_ok)
		return -1;
	switch (t) {
	case napi_undefined:
	case napi_null:
		*out = 0;
		return 0;
	case napi_boolean: {
		bool b;
		napi_get_value_bool(env, v, &b);
		*out = b;
		return 0;
	}
	case napi_number: {
		double d;
		napi_get_value_double(env, v, &d);
		*out = d < 0 ? (uint64_t)(int64_t)d : (uint64_t)d;
		return 0;
	}
	case napi_bigint: {
		bool lossless;
		int64_t s;
		napi_get_value_bigint_int64(env, v, &s, &lossless);
		if (s < 0) {
			*out = (uint64_t)s;
		} else {
			napi_get_value_bigint_uint64(env, v, out, &lossless);
		}
		return 0;
	}
	case napi_string: {
		size_t len;
		napi_get_value_string_utf8(env, v, NULL, 0, &len);
		*tmp = malloc(len + 1);
		if (!*tmp)
			return -1;
		napi_get_value_string_utf8(env, v, *tmp, len + 1, &len);
		*out = (uint64_t)(uintptr_t)*tmp;
		return 0;
	}
	case napi_object: {
		void *data = NULL;
		size_t len;
		napi_is_typedarray(env, v, &is);
		if (is) {
			napi_typedarray_type tt;
			napi_value ab;
			size_t off;
			napi_get_typedarray_info(env, v, &tt, &len, &data, &ab, &off);
			*out = (uint64_t)(uintptr_t)data;
			return 0;
		}
		napi_is_arraybuffer(env, v, &is);
		if (is) {
			napi_get_arraybuffer_info(env, v, &data, &len);
			*out = (uint64_t)(uintptr_t)data;
			return 0;
		}
		napi_is_dataview(env, v, &is);
		if (is) {
			napi_value ab;
			size_t off;
			napi_get_dataview_info(env, v, &len, &data, &ab, &off);
			*out = (uint64_t)(uintptr_t)data;
			return 0;
		}
		return -1;
	}
	default:
		return -1;
	}
}

static napi_value num(napi_env env, double d)
{
	napi_value r;
	napi_create_double(env, d, &r);
	return r;
}

// syscall(nr, a0..a5) -> result, or -errno. Numbers, bigints, buffers
// (their data address), strings (a temporary C string) and null are accepted.
static napi_value js_syscall(napi_env env, napi_callback_info info)
{
	size_t argc = MAX_ARGS + 1;
	napi_value argv[MAX_ARGS + 1];
	uint64_t w[MAX_ARGS + 1] = { 0 };
	char *tmp[MAX_ARGS + 1] = { 0 };
	napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
	if (argc < 1)
		THROW(env, "syscall: missing number");
	for (size_t i = 0; i < argc; i++) {
		if (to_word(env, argv[i], &w[i], &tmp[i])) {
			for (size_t j = 0; j < i; j++)
				free(tmp[j]);
			THROW(env, "syscall: argument must be a number, bigint, buffer, string or null");
		}
	}
	long r = syscall((long)w[0], w[1], w[2], w[3], w[4], w[5], w[6]);
	int e = errno;
	for (size_t i = 0; i < argc; i++)
		free(tmp[i]);
	return num(env, r == -1 ? -(double)e : (double)r);
}

// address(buffer) -> the address of its first byte, to build iovecs and
// structs that point at local memory.
static napi_value js_address(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1];
	uint64_t w;
	char *tmp = NULL;
	napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
	if (argc < 1 || to_word(env, argv[0], &w, &tmp) || tmp) {
		free(tmp);
		THROW(env, "address: argument must be a buffer");
	}
	return num(env, (double)w);
}

static void free_aligned(napi_env env, void *data, void *hint)
{
	(void)env;
	munmap(data, (size_t)(uintptr_t)hint);
}

// aligned(size, align) -> ArrayBuffer of zeros whose memory starts on an
// `align` boundary (pages for the kernel's zero-copy paths). Anonymous
// memory of its own: the kernel gives zero pages as they are first touched,
// so a large buffer costs nothing until used.
static napi_value js_aligned(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2];
	double size, align = 4096;
	napi_value ab;
	napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
	if (argc < 1 || napi_get_value_double(env, argv[0], &size) != napi_ok)
		THROW(env, "aligned: size must be a number");
	if (argc > 1)
		napi_get_value_double(env, argv[1], &align);
	long page = sysconf(_SC_PAGESIZE);
	if (align <= 0 || (long)align > page || page % (long)align)
		THROW(env, "aligned: the alignment must divide the page size");
	size_t len = size > 0 ? (size_t)size : 1;
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		THROW(env, "aligned: out of memory");
	if (napi_create_external_arraybuffer(env, p, len, free_aligned, (void *)(uintptr_t)len, &ab) != napi_ok) {
		munmap(p, len);
		THROW(env, "aligned: cannot wrap memory");
	}
	return ab;
}

// cpuid(leaf, subleaf) -> [eax, ebx, ecx, edx]
static napi_value js_cpuid(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2], arr;
	uint32_t leaf = 0, sub = 0, r[4] = { 0 };
	napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
	if (argc > 0)
		napi_get_value_uint32(env, argv[0], &leaf);
	if (argc > 1)
		napi_get_value_uint32(env, argv[1], &sub);
	__cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
	napi_create_array_with_length(env, 4, &arr);
	for (uint32_t i = 0; i < 4; i++) {
		napi_value v;
		napi_create_uint32(env, r[i], &v);
		napi_set_element(env, arr, i, v);
	}
	return arr;
}

static char **string_array(napi_env env, napi_value arr)
{
	uint32_t n = 0;
	bool is = false;
	napi_is_array(env, arr, &is);
	if (!is)
		return NULL;
	napi_get_array_length(env, arr, &n);
	char **out = calloc(n + 1, sizeof(char *));
	for (uint32_t i = 0; out && i < n; i++) {
		napi_value v;
		size_t len;
		napi_get_element(env, arr, i, &v);
		if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok)
			len = 0;
		out[i] = malloc(len + 1);
		out[i][0] = 0;
		napi_get_value_string_utf8(env, v, out[i], len + 1, &len);
	}
	return out;
}

static void free_strings(char **a)
{
	for (char **p = a; p && *p; p++)
		free(*p);
	free(a);
}

static napi_value prop(napi_env env, napi_value obj, const char *name)
{
	napi_value v = NULL;
	bool has = false;
	napi_has_named_property(env, obj, name, &has);
	if (has)
		napi_get_named_property(env, obj, name, &v);
	return v;
}

static int prop_int(napi_env env, napi_value obj, const char *name, int64_t def)
{
	napi_value v = prop(env, obj, name);
	int64_t r = def;
	napi_valuetype t = napi_undefined;
	if (v)
		napi_typeof(env, v, &t);
	if (t == napi_number)
		napi_get_value_int64(env, v, &r);
	return (int)r;
}

// The child side of spawn(): runs in a copy of this process between clone3
// and execve, so it only makes plain syscalls. In a new user namespace
// (syncfd >= 0) it first waits until the parent has written its uid and
// gid maps, and becomes the namespace's root: execve as another uid would
// drop every capability it has there.
static void spawn_child(int errfd, int syncfd, const char *path, char **argv, char **envp, int setsid_, int *fds,
			int nfds, const char *cwd)
{
	sigset_t none;
	int e;
	if (syncfd >= 0) {
		char go = 0;
		if (read(syncfd, &go, 1) != 1)
			_exit(127);
		if (syscall(SYS_setresgid, 0, 0, 0) < 0 || syscall(SYS_setgroups, 0, NULL) < 0 ||
		    syscall(SYS_setresuid, 0, 0, 0) < 0)
			goto fail;
	}
	sigemptyset(&none);
	// Keep the error pipe clear of the fd numbers being set up.
	errfd = fcntl(errfd, F_DUPFD_CLOEXEC, 1024);
	// Node ignores SIGPIPE and blocks nothing else we care about: give the
	// new program the defaults a shell would.
	for (int s = 1; s < 65; s++)
		if (s != SIGKILL && s != SIGSTOP)
			signal(s, SIG_DFL);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (setsid_ && setsid() < 0)
		goto fail;
	// Move the wanted fds out of the way first, then into place.
	for (int i = 0; i < nfds; i++) {
		if (fds[i] < 0)
			continue;
		int moved = fcntl(fds[i], F_DUPFD_CLOEXEC, 1024);
		if (moved < 0)
			goto fail;
		fds[i] = moved;
	}
	for (int i = 0; i < nfds; i++)
		if (fds[i] >= 0 && dup2(fds[i], i) < 0)
			goto fail;
	// Leak nothing from the caller beyond the fds asked for (close on exec,
	// so the error pipe still works until then).
	if (syscall(SYS_close_range, nfds, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
		goto fail;
	if (cwd && chdir(cwd) < 0)
		goto fail;
	execve(path, argv, envp);
fail:
	e = errno;
	if (write(errfd, &e, sizeof(e)) < 0) {
	}
	_exit(127);
}

// Writes /proc/PID/NAME (a uid_map or gid_map); 0 or -errno.
static int write_proc(pid_t pid, const char *name, const char *text)
{
	char p[64];
	snprintf(p, sizeof(p), "/proc/%d/%s", (int)pid, name);
	int fd = open(p, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, text, strlen(text));
	int e = n < 0 ? -errno : (size_t)n != strlen(text) ? -EIO : 0;
	close(fd);
	return e;
}

// spawn({path, argv, env, pid?, setsid?, fds?, cwd?, flags?, uidMap?, gidMap?}) -> pid or -errno.
// uidMap and gidMap (with CLONE_NEWUSER in flags) are written for the child
// before it goes on; it then runs as uid and gid 0 of its namespace.
// The new process is a child of this one that libuv does not know about, so
// nothing in Node reaps it or steals its ptrace stops. `pid` asks clone3 for
// that exact PID (set_tid); `flags` adds clone flags such as CLONE_NEWPID.
static napi_value js_spawn(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1];
	napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
	if (argc < 1)
		THROW(env, "spawn: missing options");
	napi_value o = argv[0];
	napi_value pv = prop(env, o, "path");
	size_t len;
	char path[4096];
	if (!pv || napi_get_value_string_utf8(env, pv, path, sizeof(path), &len) != napi_ok)
		THROW(env, "spawn: path must be a string");
	char **av = string_array(env, prop(env, o, "argv"));
	char **ev = string_array(env, prop(env, o, "env"));
	char cwd[4096];
	napi_value cv = prop(env, o, "cwd");
	int have_cwd = cv && napi_get_value_string_utf8(env, cv, cwd, sizeof(cwd), &len) == napi_ok;
	int fds[64], nfds = 0;
	napi_value fv = prop(env, o, "fds");
	if (fv) {
		uint32_t n = 0;
		napi_get_array_length(env, fv, &n);
		for (uint32_t i = 0; i < n && i < 64; i++) {
			napi_value v;
			int32_t fd = -1;
			napi_get_element(env, fv, i, &v);
			napi_get_value_int32(env, v, &fd);
			fds[nfds++] = fd;
		}
	}
	if (!av || !ev) {
		free_strings(av);
		free_strings(ev);
		THROW(env, "spawn: argv and env must be arrays of strings");
	}
	char uid_map[4096] = "", gid_map[4096] = "";
	napi_value um = prop(env, o, "uidMap"), gm = prop(env, o, "gidMap");
	int userns = um && gm && napi_get_value_string_utf8(env, um, uid_map, sizeof(uid_map), &len) == napi_ok &&
		     napi_get_value_string_utf8(env, gm, gid_map, sizeof(gid_map), &len) == napi_ok;
	pid_t want = prop_int(env, o, "pid", 0);
	int setsid_ = prop_int(env, o, "setsid", 0);
	uint64_t flags = (uint64_t)(uint32_t)prop_int(env, o, "flags", 0);
	int errpipe[2];
	if (pipe2(errpipe, O_CLOEXEC) < 0) {
		free_strings(av);
		free_strings(ev);
		return num(env, -errno);
	}
	int syncp[2] = { -1, -1 };
	if (userns && pipe2(syncp, O_CLOEXEC) < 0) {
		int e = errno;
		close(errpipe[0]);
		close(errpipe[1]);
		free_strings(av);
		free_strings(ev);
		return num(env, -(double)e);
	}
	struct clone_args ca;
	memset(&ca, 0, sizeof(ca));
	// Not CLONE_VFORK with a user namespace: this process writes the maps while the child waits.
	ca.flags = (userns ? 0 : CLONE_VFORK) | flags;
	// clone3 takes no exit signal with CLONE_PARENT (EINVAL): the child gets the one the caller's parent gave the caller.
	ca.exit_signal = (flags & CLONE_PARENT) ? 0 : SIGCHLD;
	if (want > 0) {
		ca.set_tid = (uint64_t)(uintptr_t)&want;
		ca.set_tid_size = 1;
	}
	// Everything the child needs is read from JS above: the child is a copy
	// of this process without V8's threads and some of its memory, so it
	// must not touch the JS engine.
	long r = syscall(SYS_clone3, &ca, sizeof(ca));
	if (r == 0) {
		if (userns)
			close(syncp[1]);
		spawn_child(errpipe[1], userns ? syncp[0] : -1, path, av, ev, setsid_, fds, nfds, have_cwd ? cwd : NULL);
	}
	int e = errno;
	close(errpipe[1]);
	if (userns) {
		close(syncp[0]);
		if (r > 0) {
			int w = write_proc(r, "uid_map", uid_map);
			if (!w)
				w = write_proc(r, "gid_map", gid_map);
			if (!w && write(syncp[1], "g", 1) != 1)
				w = -errno;
			if (w) {
				// The child exits on the closed pipe (or is killed): reaped, the error returned.
				int st;
				close(syncp[1]);
				syscall(SYS_kill, r, SIGKILL);
				syscall(SYS_wait4, r, &st, __WALL, NULL);
				close(errpipe[0]);
				free_strings(av);
				free_strings(ev);
				return num(env, (double)w);
			}
		}
		close(syncp[1]);
	}
	if (r > 0) {
		int child_err = 0;
		if (read(errpipe[0], &child_err, sizeof(child_err)) == sizeof(child_err)) {
			int st;
			syscall(SYS_wait4, r, &st, __WALL, NULL);
			r = -1;
			e = child_err;
		}
	}
	close(errpipe[0]);
	free_strings(av);
	free_strings(ev);
	return num(env, r < 0 ? -(double)e : (double)r);
}

static napi_value init(napi_env env, napi_value exports)
{
	napi_property_descriptor d[] = {
		{ "syscall", NULL, js_syscall, NULL, NULL, NULL, napi_default, NULL },
		{ "address", NULL, js_address, NULL, NULL, NULL, napi_default, NULL },
		{ "aligned", NULL, js_aligned, NULL, NULL, NULL, napi_default, NULL },
		{ "cpuid", NULL, js_cpuid, NULL, NULL, NULL, napi_default, NULL },
		{ "spawn", NULL, js_spawn, NULL, NULL, NULL, napi_default, NULL },
	};
	napi_define_properties(env, exports, sizeof(d) / sizeof(d[0]), d);
	return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
