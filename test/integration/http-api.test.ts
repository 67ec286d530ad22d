// HTTP services and bindings made through the control API and `sempipe ctl` of the real binary:
// a binding created by ctl answers with its token at once, which is shown once and stored only as
// SHA-256; rotation issues a new token (the old one is refused on the same keep-alive connection);
// rotating the service's credential changes what the next request carries upstream; revoke.
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, request } from 'undici';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startHttpUpstream, type HttpUpstream } from '../harness/http-upstream.js';
import { freePort } from '../harness/ports.js';
import { SEMPIPE_BIN, startSempipe, type SempipeProcess } from '../harness/sempipe-process.js';

const ADMIN_TOKEN = 'admin-token-0123456789abcdef';
const SERVICE = 'service::/api::inventory';
const BINDING = 'binding::/api/web::inventory';

let upstream: HttpUpstream;
let sempipe: SempipeProcess;
let dir: string;
let port: number;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function ctl(args: string[], input = ''): Promise<Run> {
  const env = { ...process.env, SEMPIPE_ADMIN_URL: sempipe.adminUrl, SEMPIPE_ADMIN_TOKEN: ADMIN_TOKEN };
  const child = spawn(process.execPath, [SEMPIPE_BIN, 'ctl', ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdin.end(input);
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
}

async function eventually<T>(attempt: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const v = await attempt();
      if (v !== undefined) return v;
    } catch {
      // not there yet
    }
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  upstream = await startHttpUpstream();
  port = await freePort();
  dir = mkdtempSync(join(tmpdir(), 'sempipe-http-api-'));
  sempipe = await startSempipe({ yaml: `admin: { listen: "127.0.0.1:\${ADMIN_PORT}", token: ${ADMIN_TOKEN} }\nstate_dir: ${join(dir, 'state')}\n`, workers: 2 });
});

afterAll(async () => {
  await sempipe?.stop();
  await upstream?.close();
  rmSync(dir, { recursive: true, force: true });
});

const echo = async (token: string, client?: Client): Promise<{ status: number; headers?: Record<string, string> }> => {
  const r = client
    ? await client.request({ path: '/echo', method: 'GET', headers: { authorization: `Bearer ${token}` } })
    : await request(`http://127.0.0.1:${port}/echo`, { headers: { authorization: `Bearer ${token}` } });
  const text = await r.body.text();
  return { status: r.statusCode, ...(r.statusCode === 200 && { headers: (JSON.parse(text) as { headers: Record<string, string> }).headers }) };
};

describe('HTTP bindings through the control API and ctl', () => {
  let token = '';

  test('ctl creates an http service and a bearer binding whose token works at once and is stored only hashed', async () => {
    const serviceFile = join(dir, 'service.yaml');
    writeFileSync(serviceFile, `fqn: ${SERVICE}\nprotocol: http\nupstream: { url: "${upstream.url}", headers: { X-Api-Key: first-key } }\n`);
    const created = await ctl(['services', 'create', '-f', serviceFile]);
    expect(created.code, created.stderr).toBe(0);
    const binding = await ctl(['bindings', 'create', BINDING, '--service', SERVICE, '--listen', `127.0.0.1:${port}`, '--auth', 'bearer']);
    expect(binding.code, binding.stderr).toBe(0);
    token = /token\s+(\S+)/.exec(binding.stdout)![1]!;
    expect(binding.stdout).toMatch(new RegExp(`url\\s+http://127\\.0\\.0\\.1:${port}\\n`));
    expect(binding.stderr + binding.stdout).toContain('Shown only this once');
    const first = await eventually(async () => {
      const r = await echo(token);
      return r.status === 200 ? r : undefined;
    });
    expect(first.headers!['x-api-key']).toBe('first-key');
    expect(first.headers!.authorization).toBeUndefined();

    const shown = await ctl(['bindings', 'get', BINDING, '--json']);
    expect(shown.stdout).toContain('"auth": "bearer"');
    expect(shown.stdout).not.toContain(token);
    for (const f of readdirSync(join(dir, 'state'))) expect(readFileSync(join(dir, 'state', f)).includes(token)).toBe(false);
  });

  test('rotating the binding issues a new token; the old one is refused on the same connection', async () => {
    const client = new Client(`http://127.0.0.1:${port}`, { keepAliveTimeout: 60_000 });
    expect((await echo(token, client)).status).toBe(200);
    const rotated = await ctl(['bindings', 'rotate', BINDING, '--json']);
    const next = (JSON.parse(rotated.stdout) as { token: string }).token;
    expect(next).not.toBe(token);
    await eventually(async () => ((await echo(token, client)).status === 401 ? true : undefined));
    expect((await echo(next, client)).status).toBe(200);
    await client.close();
    token = next;
  });

  test('rotating the service credential changes what the next request injects', async () => {
    const r = await ctl(['services', 'rotate', SERVICE, '--password-stdin', '--header', 'X-Api-Key'], 'second-key\n');
    expect(r.code, r.stderr).toBe(0);
    const seen = await eventually(async () => {
      const e = await echo(token);
      return e.headers?.['x-api-key'] === 'second-key' ? e : undefined;
    });
    expect(seen.status).toBe(200);
  });

  test('revoking the binding closes its listener', async () => {
    expect((await ctl(['bindings', 'revoke', BINDING])).code).toBe(0);
    await eventually(async () => {
      try {
        await echo(token);
        return undefined;
      } catch {
        return true;
      }
    });
  });
});
