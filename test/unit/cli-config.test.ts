// criu's configuration files: the format of a line, the files and their order.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseConfigLine, parseConfigText, readConfigs, ConfigError, type ConfigEnv } from "../../src/faces/cli/config.js";
import { parseArgs } from "../../src/faces/cli/args.js";

test("a line: empty, comment, flag, option with a value, quoted values", () => {
  assert.deepEqual(parseConfigLine(""), []);
  assert.deepEqual(parseConfigLine("   \n"), []);
  assert.deepEqual(parseConfigLine("  # a comment"), []);
  assert.deepEqual(parseConfigLine("tcp-established"), ["--tcp-established"]);
  assert.deepEqual(parseConfigLine("  log-file /tmp/x.log   # where it goes\n"), ["--log-file", "/tmp/x.log"]);
  assert.deepEqual(parseConfigLine("verbosity\t4"), ["--verbosity", "4"]);
  assert.deepEqual(parseConfigLine('lsm-profile "selinux:a b"'), ["--lsm-profile", "selinux:a b"]);
  assert.deepEqual(parseConfigLine('lsm-profile "say \\"hi\\""'), ["--lsm-profile", 'say "hi"']);
  assert.deepEqual(parseConfigLine('lsm-profile ""'), ["--lsm-profile", ""]);
  assert.deepEqual(parseConfigLine("display-stats # and nothing else"), ["--display-stats"]);
});

test("lines criu refuses", () => {
  assert.throws(() => parseConfigLine("log-file a b"), /Unsupported configuration file format/);
  assert.throws(() => parseConfigLine('lsm-profile "open'), /no closing quote.*Unsupported configuration file format/);
  assert.throws(() => parseConfigLine('lsm-profile "a" b'), ConfigError);
  assert.throws(() => parseConfigText("ok\nlog-file a b\n", "/etc/x.conf"), /\/etc\/x.conf:2:/);
});

function fakeEnv(files: Record<string, string>, env: Record<string, string> = {}): ConfigEnv & { reads: string[] } {
  const reads: string[] = [];
  return { env: { HOME: "/home/u", ...env }, reads, read: (p) => (reads.push(p), files[p] ?? null) };
}

test("the files, in criu's order; --no-default-config and --config skip the defaults", () => {
  const files = {
    "/etc/criu/default.conf": "verbosity 1\nlog-file global.log\n",
    "/home/u/.criu/default.conf": "log-file user.log\ndisplay-stats\n",
    "/env.conf": "timeout 5\n",
    "/cmd.conf": "timeout 7\n",
  };
  const all = fakeEnv(files, { CRIU_CONFIG_FILE: "/env.conf" });
  assert.deepEqual(readConfigs([], all).map((c) => c.file), ["/etc/criu/default.conf", "/home/u/.criu/default.conf", "/env.conf"]);
  const o = parseArgs(["dump", "-t", "1"], all).options;
  assert.equal(o.log.level, 1, "an optional value in a file stays with its option");
  assert.equal(o.log.file, "user.log", "a later file overrides an earlier one");
  assert.equal(o.log.displayStats, true);
  assert.equal(o.dump.timeout, 5);
  assert.equal(parseArgs(["dump", "-t", "1", "-o", "cli.log"], all).options.log.file, "cli.log", "the command line overrides the files");

  const none = fakeEnv(files);
  assert.deepEqual(readConfigs(["--no-default-config", "--no-default-config"], none), []);
  assert.deepEqual(none.reads, [], "no default file is even read");
  const cmd = fakeEnv(files, { CRIU_CONFIG_FILE: "/env.conf" });
  assert.deepEqual(readConfigs(["--config", "/cmd.conf"], cmd).map((c) => c.file), ["/env.conf", "/cmd.conf"]);
  assert.equal(parseArgs(["dump", "-t", "1", "--config=/cmd.conf"], cmd).options.dump.timeout, 7);
});

test("a missing default file is skipped, a missing named one is an error; bad options name their file", () => {
  assert.deepEqual(readConfigs([], fakeEnv({})), []);
  assert.throws(() => readConfigs(["--config", "/nope.conf"], fakeEnv({})), /\/nope.conf: it does not exist/);
  assert.deepEqual(parseArgs(["dump"], fakeEnv({ "/etc/criu/default.conf": "weak-sysctls\n" })).refused, ["--weak-sysctls (from /etc/criu/default.conf)"]);
  assert.throws(() => parseArgs(["dump"], fakeEnv({ "/etc/criu/default.conf": "bogus-option\n" })), /default.conf: unknown option --bogus-option/);
});
