// Self-signed certificates generated with openssl for TLS tests on both legs.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { requireBinary } from './binaries.js';

export interface Certificate { certFile: string; keyFile: string }

export function makeCertificate(dir: string, commonName: string): Certificate {
  const openssl = requireBinary('openssl');
  const certFile = join(dir, `${commonName}.crt`);
  const keyFile = join(dir, `${commonName}.key`);
  const r = spawnSync(openssl, [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${commonName}`,
    '-addext', `subjectAltName=DNS:${commonName},IP:127.0.0.1`,
    '-keyout', keyFile, '-out', certFile,
  ], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl failed: ${r.stderr}`);
  return { certFile, keyFile };
}
