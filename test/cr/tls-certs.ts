// Certificates for the --tls tests (the page server's, the lazy pages'),
// made once per test process with openssl and removed when it exits.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A CA, another CA, and a server's and a client's certificate for 127.0.0.1 signed by the first. */
export interface Certs {
  ca: string;
  other: string;
  /** --tls-cert and --tls-key of the server's certificate. */
  server: string[];
  /** --tls-cert and --tls-key of the client's certificate. */
  client: string[];
  /** A client certificate of the CA that its CRL revokes. */
  revoked: string[];
  crl: string;
}

let certs: Certs | undefined;
export function makeCerts(): Certs {
  if (certs) return certs;
  const dir = mkdtempSync(join(tmpdir(), "crest-tls-"));
  process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  const ssl = (args: string[]) => {
    const r = spawnSync("openssl", args, { cwd: dir, encoding: "utf8" });
    assert.equal(r.status, 0, `openssl ${args.join(" ")}: ${r.stderr}`);
  };
  const ca = (name: string) => ssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", `${name}-key.pem`, "-out", `${name}.pem`, "-days", "2", "-subj", `/CN=crest test ${name}`]);
  // Both ends check the other's name against --address (criu's rule): 127.0.0.1 for both.
  writeFileSync(join(dir, "leaf.ext"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n");
  const leaf = (name: string) => {
    ssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", `${name}-key.pem`, "-out", `${name}.csr`, "-subj", "/CN=127.0.0.1"]);
    ssl(["x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial", "-out", `${name}.pem`, "-days", "2", "-extfile", "leaf.ext"]);
    return ["--tls-cert", join(dir, `${name}.pem`), "--tls-key", join(dir, `${name}-key.pem`)];
  };
  ca("ca");
  ca("other");
  const made = { ca: join(dir, "ca.pem"), other: join(dir, "other.pem"), server: leaf("server"), client: leaf("client"), revoked: leaf("revoked"), crl: join(dir, "crl.pem") };
  // A CRL of the CA that revokes the "revoked" certificate (openssl ca keeps its books in files).
  writeFileSync(join(dir, "ca.cnf"), "[ca]\ndefault_ca = c\n[c]\ndatabase = index.txt\ncrlnumber = crlnumber\ndefault_md = sha256\ndefault_crl_days = 2\n");
  writeFileSync(join(dir, "index.txt"), "");
  writeFileSync(join(dir, "crlnumber"), "01\n");
  ssl(["ca", "-config", "ca.cnf", "-keyfile", "ca-key.pem", "-cert", "ca.pem", "-revoke", "revoked.pem"]);
  ssl(["ca", "-config", "ca.cnf", "-keyfile", "ca-key.pem", "-cert", "ca.pem", "-gencrl", "-out", "crl.pem"]);
  return (certs = made);
}

/** --tls options for one side: its certificate, and the CA it trusts. */
export const tlsServer = (ca = makeCerts().ca): string[] => ["--tls", "--tls-cacert", ca, ...makeCerts().server];
export const tlsClient = (ca = makeCerts().ca): string[] => ["--tls", "--tls-cacert", ca, ...makeCerts().client];
