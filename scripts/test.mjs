// Runs the unit tests, then the checkpoint/restore tests on real processes
// (one file at a time: they create PIDs and must not race each other).
// First it installs the Debian packages the tests need, if missing (the X
// programs of the VNC scenario and the container runtimes among them).
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ensurePackages, PACKAGES } from "./debian-packages.mjs";

ensurePackages("crest's tests", PACKAGES.test);
// The VNC scenario's test skips without them; where apt-get can, they are installed like the rest.
ensurePackages("crest's VNC scenario test", PACKAGES.vnc);
// The container runtimes whose checkpoint/restore with crest as criu test/cr/containers-cr.test.ts runs.
ensurePackages("crest's container tests", PACKAGES.containers);

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const suites = [join(root, "dist/test/unit"), join(root, "dist/test/cr")].filter((d) => existsSync(d));
const only = process.argv.slice(2);
const r = spawnSync(process.execPath, ["--test", "--test-concurrency=1", ...(only.length ? only : suites)], { stdio: "inherit" });
process.exit(r.status ?? 1);
