// `crest page-server`: criu's page server. It listens on --address:--port
// (criu's defaults: every address, port 1234), takes one sender (a dump or
// pre-dump run with --page-server), writes the pagemaps and pages it is sent
// into the images directory (images/page-server.ts), and ends when the
// sender has closed. -d/--daemon runs it detached, this command returning
// once it listens; --pidfile names its PID; --status-fd is told when it listens.
// With --lazy-pages it serves the lazy pages of the images there instead, to
// a lazy-pages daemon run with --page-server (kinds/memory/lazy-server.ts).
// --tls: the client's connection in TLS, the lazy-pages daemon's too
// (images/tls.ts, docs/page-server.md).
import { closeSync, mkdirSync, readSync, writeFileSync } from "node:fs";
import { statusReady } from "../pipelines/actions.js";
import type { Logger } from "../log.js";
import { workPath, type Options } from "../options.js";
import { acceptPageClient, checkTlsFiles, listenPageServer, pageClientLink, servePages } from "../images/page-server.js";
import type { PageLink } from "../images/tls.js";
import { daemonize } from "./rpc/service.js";
import { serveImagePages } from "../kinds/memory/lazy-server.js";

const DEFAULT_PORT = 1234;

export function pageServerMain(opts: Options, argv: readonly string[], refused: readonly string[], log: Logger): number {
  if (refused.length) {
    for (const why of refused) log.error(why);
    return 1;
  }
  if (opts.restore.detached) return daemonize(argv, log);
  if (opts.restore.lazyPages) return lazyPageServer(opts, log);
  let listener = -1, link: PageLink | undefined;
  try {
    mkdirSync(opts.images.dir, { recursive: true });
    checkTlsFiles(opts);
    const address = opts.service.address ?? "0.0.0.0";
    const l = listenPageServer(address, opts.service.port ?? DEFAULT_PORT);
    listener = l.fd;
    log.info(`Page server listening on ${address}:${l.port}, images in ${opts.images.dir}`);
    if (opts.restore.pidfile) writeFileSync(workPath(opts, opts.restore.pidfile), `${process.pid}`);
    statusReady(opts, log);
    const sk = acceptPageClient(listener);
    closeSync(listener);
    listener = -1;
    // With --tls: the handshake and the client's certificate checks, before any message.
    const l2 = (link = pageClientLink(sk, opts));
    if (opts.service.tls?.on) log.info("TLS handshake completed");
    try {
      servePages(l2.fd, opts.images.dir, (m) => log.info(m));
      // As criu: wait for the sender to close its end (no TIME_WAIT on this side).
      if (readSync(l2.fd, Buffer.alloc(1), 0, 1, null) !== 0) throw new Error("the sender sent more after it closed the session");
    } catch (e) {
      throw l2.explain(e);
    }
    log.info("Session over");
    return 0;
  } catch (e) {
    log.error((e as Error).message);
    return 1;
  } finally {
    if (listener >= 0) closeSync(listener);
    link?.close();
  }
}

/** page-server --lazy-pages: serves the lazy pages of the images to a lazy-pages daemon --page-server (lazy-server.ts). */
function lazyPageServer(opts: Options, log: Logger): number {
  try {
    checkTlsFiles(opts);
    serveImagePages(opts, log, (port) => {
      log.info(`Page server (lazy pages) listening on port ${port}, images in ${opts.images.dir}`);
      if (opts.restore.pidfile) writeFileSync(workPath(opts, opts.restore.pidfile), `${process.pid}`);
      statusReady(opts, log);
    });
    log.info("Session over");
    return 0;
  } catch (e) {
    log.error((e as Error).message);
    return 1;
  }
}
