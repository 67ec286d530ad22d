// Unix-domain socket listeners: binding a socket file (replacing one that a crashed process left
// behind, refusing one that a live server holds) and giving it the configured mode and group.
// Closing the server removes the file: libuv unlinks a bound pipe when its handle closes (under
// node:cluster the primary holds that handle and closes it when the last worker stops listening).
import { execFile } from 'node:child_process';
import cluster from 'node:cluster';
import { chmod, chown, lstat, readFile, stat, unlink } from 'node:fs/promises';
import { connect, type Server } from 'node:net';
import { dirname } from 'node:path';

/**
 * Listens on the socket file `path`; a stale file (nobody accepts on it) is replaced, a live one
 * refused. Under node:cluster the primary binds the socket for all workers, so a worker must not
 * replace a file another worker may be binding at that moment: the primary clears stale files
 * before it hands a config to its workers (removeStaleSockets), and a worker only reports them.
 */
export async function listenUnixSocket(server: Server, path: string): Promise<void> {
  try {
    await listenOnce(server, path);
    return;
  } catch (err) {
    if (errorCode(err) !== 'EADDRINUSE') throw await describeListenError(err, path);
  }
  const state = await socketFileState(path);
  if (state === 'live') throw new Error(`cannot listen on unix:${path}: another server is listening on this socket file; refusing to replace a live socket`);
  if (cluster.isWorker) {
    throw new Error(`cannot listen on unix:${path}: a stale socket file is in the way (one is replaced at start and when a reload adds the address); remove it`);
  }
  await removeStale(path);
  try {
    await listenOnce(server, path);
  } catch (err) {
    throw await describeListenError(err, path);
  }
}

/**
 * Removes the socket files among `paths` that refuse connections: left by a process that died
 * without closing them. Live ones (this process's own, or another server's) stay; the listen
 * that follows refuses another server's with a clear error.
 */
export async function removeStaleSockets(paths: readonly string[]): Promise<void> {
  for (const path of paths) {
    // A file that cannot be cleared is left for the listen, whose error names the reason.
    if ((await socketFileState(path).catch(() => undefined)) === 'stale') await removeStale(path).catch(() => undefined);
  }
}

/** Gives the socket file its permission bits and, when named, its group (name or numeric id). */
export async function setSocketAccess(path: string, mode: number, group: string | undefined): Promise<void> {
  await chmod(path, mode);
  if (group === undefined) return;
  const gid = await groupId(group);
  try {
    await chown(path, -1, gid);
  } catch (err) {
    const reason = errorCode(err) === 'EPERM' ? 'this process is not a member of that group' : (err as Error).message;
    throw new Error(`cannot give unix:${path} the group ${group}: ${reason}`);
  }
}

function listenOnce(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ path }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** 'absent', 'live', 'stale', or a refusal: a file that is not a socket, or one that cannot be probed. */
async function socketFileState(path: string): Promise<'absent' | 'live' | 'stale'> {
  const stats = await lstat(path).catch(() => undefined);
  if (stats === undefined) return 'absent';
  if (!stats.isSocket()) throw new Error(`cannot listen on unix:${path}: the file exists and is not a socket; remove it or choose another path`);
  const state = await probe(path);
  if (state === 'live' || state === 'stale') return state;
  throw new Error(`cannot listen on unix:${path}: the socket file exists and probing it failed (${state}); refusing to replace it`);
}

async function removeStale(path: string): Promise<void> {
  await unlink(path).catch((err: unknown) => {
    if (errorCode(err) !== 'ENOENT') throw new Error(`cannot replace the stale socket file unix:${path}: ${(err as Error).message}`);
  });
}

/** 'live' when something accepts on `path`, 'stale' when the file refuses connections, else the error code. */
function probe(path: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ path });
    socket.once('connect', () => {
      socket.destroy();
      resolve('live');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      socket.destroy();
      // EAGAIN: the listener's backlog is full, so it is very much alive.
      resolve(err.code === 'ECONNREFUSED' || err.code === 'ENOENT' ? 'stale' : err.code === 'EAGAIN' ? 'live' : (err.code ?? err.message));
    });
  });
}

async function describeListenError(err: unknown, path: string): Promise<Error> {
  const code = errorCode(err);
  // libuv reports a missing directory as EACCES.
  if (code === 'ENOENT' || code === 'EACCES') {
    const directory = dirname(path);
    const exists = await stat(directory).then(
      (s) => s.isDirectory(),
      () => false,
    );
    return new Error(`cannot listen on unix:${path}: ${exists ? `permission denied in ${directory}` : `the directory ${directory} does not exist`}`);
  }
  return new Error(`cannot listen on unix:${path}: ${err instanceof Error ? err.message : String(err)}`);
}

/** A numeric id as is; a name through /etc/group, then the system's group database (getent: LDAP, sssd). */
async function groupId(group: string): Promise<number> {
  if (/^\d+$/.test(group)) return Number(group);
  const fromFile = await readFile('/etc/group', 'utf8').then(
    (text) => findGroup(text, group),
    () => undefined,
  );
  if (fromFile !== undefined) return fromFile;
  const fromGetent = await new Promise<number | undefined>((resolve) => {
    execFile('getent', ['group', group], { timeout: 5000 }, (err, stdout) => resolve(err === null ? findGroup(stdout, group) : undefined));
  });
  if (fromGetent === undefined) throw new Error(`unknown group "${group}" (unix_socket_group)`);
  return fromGetent;
}

/** The gid of `name` in group(5) lines ("name:password:gid:members"). */
function findGroup(text: string, name: string): number | undefined {
  for (const line of text.split('\n')) {
    const [n, , gid] = line.split(':');
    if (n === name && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  return undefined;
}

function errorCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}
