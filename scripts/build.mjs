// Builds everything `npm ci` needs: the syscall binding and the stub process
// (the only native code, compiled with the machine's gcc), then TypeScript,
// then crest's startup snapshot.
// On Debian it first installs gcc, make and libc6-dev if they are missing.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ensurePackages, PACKAGES } from "./debian-packages.mjs";

ensurePackages("crest's build", PACKAGES.build);

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "build");
mkdirSync(out, { recursive: true });

function nodeHeaders() {
  const candidates = [
    resolve(dirname(process.execPath), "..", "include", "node"),
    process.env.npm_config_nodedir && join(process.env.npm_config_nodedir, "include", "node"),
    "/usr/include/node",
    "/usr/local/include/node",
  ].filter(Boolean);
  const found = candidates.find((d) => existsSync(join(d, "node_api.h")));
  if (!found) throw new Error(`node_api.h not found in ${candidates.join(", ")}: install Node's headers`);
  return found;
}

function stale(target, sources) {
  if (!existsSync(target)) return true;
  const t = statSync(target).mtimeMs;
  return sources.some((s) => statSync(s).mtimeMs > t);
}

function gcc(target, sources, args) {
  const srcs = sources.map((s) => join(root, s));
  if (!stale(target, srcs)) return;
  console.log(`gcc -> ${target.slice(root.length + 1)}`);
  execFileSync("gcc", [...args, "-o", target, ...srcs], { stdio: "inherit" });
}

const warn = ["-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter"];
gcc(join(out, "crest_sys.node"), ["native/binding.c"], [
  "-O2", "-shared", "-fPIC", ...warn, "-I", nodeHeaders(), "-DNODE_GYP_MODULE_NAME=crest_sys",
]);
gcc(join(out, "crest-stub"), ["native/stub.c"], [
  "-O2", "-static", "-no-pie", "-nostdlib", "-ffreestanding", "-fno-stack-protector", ...warn,
]);

const workloads = join(root, "test", "workloads");
if (existsSync(join(workloads, "Makefile"))) {
  execFileSync("make", ["-s", "-C", workloads, `OUT=${join(out, "workloads")}`], { stdio: "inherit" });
}

execFileSync(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", root], {
  stdio: "inherit",
});

// crest's startup snapshot: every module bundled into one script (esbuild,
// with a source map back to the TypeScript for the error lines' origins),
// from which Node builds a heap with all of crest loaded (build/crest.blob),
// so that a crest command loads no module. It works only with the Node that
// built it: bin/crest runs it when the Node on PATH is that one (the file
// beside it records its path) and was not replaced since, else the modules.
const bundle = join(out, "crest-snapshot.cjs");
const blob = join(out, "crest.blob");
execFileSync(join(root, "node_modules", ".bin", "esbuild"), [
  join(root, "dist", "src", "faces", "cli", "snapshot.js"), "--bundle", "--platform=node", "--format=cjs",
  "--log-level=warning", "--log-override:empty-import-meta=silent", "--sourcemap=external", `--outfile=${bundle}`,
], { stdio: "inherit" });
rmSync(`${blob}.node`, { force: true });
// The Node on PATH, as bin/crest finds it. Builtins such as child_process are
// only used at run time, which Node's warning about them does not know.
execFileSync("sh", ["-c", 'exec node --no-warnings --snapshot-blob "$1" --build-snapshot "$2"', "sh", blob, bundle], { stdio: "inherit" });
writeFileSync(`${blob}.node`, `${execFileSync("sh", ["-c", "command -v node"], { encoding: "utf8" }).trim()}\n`);
