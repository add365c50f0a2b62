// The command line is parsed the way criu's getopt_long parses it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseArgs, UsageError } from "../../src/cli/args.js";

test("criu's dump and restore command lines", () => {
  const d = parseArgs(["dump", "-t", "17854", "--images-dir", "imgs/", "--log-file", "dump.log", "-v4", "-R"]);
  assert.equal(d.command, "dump");
  assert.equal(d.options.tree, 17854);
  assert.equal(d.options.imagesDir, "imgs/");
  assert.equal(d.options.logFile, "dump.log");
  assert.equal(d.options.logLevel, 4);
  assert.equal(d.options.leaveRunning, true);
  const r = parseArgs(["restore", "-D", "imgs", "-o", "rst.log", "-d", "--pidfile", "p"]);
  assert.equal(r.options.restoreDetached, true);
  assert.equal(r.options.pidfile, "p");
});

test("--opt=value, --opt value, options after the command, bundles", () => {
  const a = parseArgs(["--tree=5", "dump", "--images-dir", "x", "-Rv3"]);
  assert.equal(a.options.tree, 5);
  assert.equal(a.options.imagesDir, "x");
  assert.equal(a.options.leaveRunning, true);
  assert.equal(a.options.logLevel, 3);
});

test("verbosity the odd ways callers pass it", () => {
  assert.equal(parseArgs(["dump", "-v"]).options.logLevel, 3);
  assert.equal(parseArgs(["dump", "-vvvv"]).options.logLevel, 2 + 4);
  assert.equal(parseArgs(["dump", "--verbosity=4"]).options.logLevel, 4);
  // zdtm passes "-verbosity=0": -v with the attached argument "erbosity=0", atoi() of which is 0.
  assert.equal(parseArgs(["check", "-verbosity=0"]).options.logLevel, 0);
  assert.equal(parseArgs(["dump", "-v0"]).options.logLevel, 0);
});

test("unique prefixes, no- forms, and refusals", () => {
  assert.equal(parseArgs(["restore", "--images", "d"]).options.imagesDir, "d");
  assert.equal(parseArgs(["restore", "-d", "--no-restore-detached"]).options.restoreDetached, false);
  assert.throws(() => parseArgs(["dump", "--bogus"]), /unknown option --bogus/);
  assert.throws(() => parseArgs(["dump", "--tcp-established"]), /--tcp-established is not supported by crest yet/);
  assert.throws(() => parseArgs(["dump", "-t"]), /needs a value/);
  assert.throws(() => parseArgs(["dump", "-t", "abc"]), UsageError);
  assert.throws(() => parseArgs(["dump", "--leave-running=1"]), /takes no value/);
  assert.throws(() => parseArgs(["dump", "--tcp"]), /ambiguous/);
});

test("-R and -s: the last one wins, as in criu", () => {
  const a = parseArgs(["dump", "-R", "-s"]);
  assert.equal(a.options.leaveStopped, true);
  assert.equal(a.options.leaveRunning, false);
});
