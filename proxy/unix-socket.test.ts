// Tests of the Unix-socket listener helpers in one process (no cluster), with real sockets: a file
// left by a killed process is replaced, a live one and a file that is not a socket are refused and
// left alone, mode and group are applied, and the data plane serves such a socket with the socket
// file as the peer address.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DataPlane, type Peer } from './data-plane.js';
import { listenUnixSocket, removeStaleSockets, setSocketAccess } from './unix-socket.js';

let dir: string;
const servers: Server[] = [];

beforeAll(() => {
  dir = mkdtempSync('/tmp/sp-unix-unit-');
});

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function server(): Server {
  const s = createServer((c) => {
    // The probe of a live socket connects and leaves at once.
    c.on('error', () => {});
    c.end('hello');
  });
  servers.push(s);
  return s;
}

async function staleSocket(path: string): Promise<void> {
  const child = spawn(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`]);
  await new Promise((r) => child.once('exit', r));
  expect(statSync(path).isSocket()).toBe(true);
}

function greeting(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = connect({ path });
    let text = '';
    c.on('data', (d) => (text += d.toString()));
    c.on('end', () => resolve(text));
    c.on('error', reject);
  });
}

describe('listenUnixSocket', () => {
  it('replaces a socket file that a killed process left behind', async () => {
    const path = join(dir, 'stale.sock');
    await staleSocket(path);
    await listenUnixSocket(server(), path);
    expect(await greeting(path)).toBe('hello');
  });

  it('refuses a live socket, naming its path, and leaves it serving', async () => {
    const path = join(dir, 'live.sock');
    await listenUnixSocket(server(), path);
    const second = createServer();
    await expect(listenUnixSocket(second, path)).rejects.toThrow(`cannot listen on unix:${path}: another server is listening on this socket file; refusing to replace a live socket`);
    expect(await greeting(path)).toBe('hello');
  });

  it('refuses a file that is not a socket and leaves it as it was', async () => {
    const path = join(dir, 'data.txt');
    writeFileSync(path, 'keep me');
    await expect(listenUnixSocket(createServer(), path)).rejects.toThrow(`cannot listen on unix:${path}: the file exists and is not a socket`);
    expect(readFileSync(path, 'utf8')).toBe('keep me');
  });

  it('names a missing directory', async () => {
    const path = join(dir, 'missing', 's.sock');
    await expect(listenUnixSocket(createServer(), path)).rejects.toThrow(`cannot listen on unix:${path}: the directory ${join(dir, 'missing')} does not exist`);
  });

  it('closing the server removes the file', async () => {
    const path = join(dir, 'closed.sock');
    const s = createServer();
    await listenUnixSocket(s, path);
    await new Promise((r) => s.close(r));
    expect(existsSync(path)).toBe(false);
  });
});

describe('removeStaleSockets', () => {
  it('removes stale files only: a live socket, a regular file and an absent path stay as they are', async () => {
    const [stale, live, plain] = ['a.sock', 'b.sock', 'c.txt'].map((n) => join(dir, `rm-${n}`)) as [string, string, string];
    await staleSocket(stale);
    await listenUnixSocket(server(), live);
    writeFileSync(plain, 'x');
    await removeStaleSockets([stale, live, plain, join(dir, 'absent.sock')]);
    expect(existsSync(stale)).toBe(false);
    expect(await greeting(live)).toBe('hello');
    expect(readFileSync(plain, 'utf8')).toBe('x');
  });
});

describe('setSocketAccess', () => {
  it('applies the mode, and a group by name or by id', async () => {
    const path = join(dir, 'access.sock');
    await listenUnixSocket(server(), path);
    await setSocketAccess(path, 0o640, undefined);
    expect(statSync(path).mode & 0o777).toBe(0o640);
    const own = statSync(path).gid;
    await setSocketAccess(path, 0o660, String(own));
    expect(statSync(path)).toMatchObject({ gid: own });
    expect(statSync(path).mode & 0o777).toBe(0o660);
    const name = readFileSync('/etc/group', 'utf8')
      .split('\n')
      .map((l) => l.split(':'))
      .find((f) => Number(f[2]) === own)?.[0];
    if (name !== undefined) await setSocketAccess(path, 0o660, name);
    expect(statSync(path).gid).toBe(own);
  });

  it('refuses an unknown group by name', async () => {
    const path = join(dir, 'group.sock');
    await listenUnixSocket(server(), path);
    await expect(setSocketAccess(path, 0o660, 'no-such-group-sempipe')).rejects.toThrow('unknown group "no-such-group-sempipe" (unix_socket_group)');
  });
});

describe('DataPlane on a Unix socket', () => {
  it('serves it, reports the socket file as the peer address, and removes the file when the binding goes', async () => {
    const path = join(dir, '.s.PGSQL.7777');
    const peers: Peer[] = [];
    const plane = new DataPlane({
      workerIndex: 0,
      handlers: {
        echo: (socket, _rt, _host, peer) => {
          socket.on('error', () => {});
          peers.push(peer);
          socket.end('served');
        },
      },
    });
    await staleSocket(path);
    const spec = { fqn: 'binding::/t::b', protocol: 'echo', listen: [{ host: '127.0.0.1', port: 0 }, { path }], unixSocket: { mode: 0o600 }, runtime: undefined };
    expect((await plane.apply([spec])).failed).toEqual([]);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(await greeting(path)).toBe('served');
    expect(peers).toEqual([{ address: `unix:${path}`, unixSocket: true }]);

    expect((await plane.apply([{ ...spec, unixSocket: { mode: 0o660 } }])).failed).toEqual([]);
    expect(statSync(path).mode & 0o777).toBe(0o660);

    expect((await plane.apply([{ ...spec, listen: [{ host: '127.0.0.1', port: 0 }] }])).failed).toEqual([]);
    expect(existsSync(path)).toBe(false);
    await plane.drain(0);
  });

  it('reports a socket it cannot open with the binding and the address, and opens the others', async () => {
    const path = join(dir, 'nowhere', 's.sock');
    const plane = new DataPlane({ workerIndex: 0, handlers: { echo: (socket) => void socket.end() } });
    const good = join(dir, 'good.sock');
    const result = await plane.apply([{ fqn: 'binding::/t::c', protocol: 'echo', listen: [{ path }, { path: good }], runtime: undefined }]);
    expect(result.failed).toEqual([{ fqn: 'binding::/t::c', address: `unix:${path}`, error: `cannot listen on unix:${path}: the directory ${join(dir, 'nowhere')} does not exist` }]);
    expect(statSync(good).isSocket()).toBe(true);
    await plane.drain(0);
    expect(existsSync(good)).toBe(false);
  });
});
