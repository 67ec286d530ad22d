// What a client learns from the first half of a SCRAM-SHA-256 exchange, read with a raw socket the
// way someone probing for user names would: the StartupMessage, the SASLInitialResponse with a
// client-first message, and the server-first message's nonce, salt and iteration count. The socket
// is then held open (the server waits for client-final) until `close` is called.
import { connect, type Socket } from 'node:net';

export interface ServerFirst {
  /** The server's part of the nonce (after the client's). */
  serverNonce: string;
  /** Base64, as sent. */
  salt: string;
  iterations: number;
  close(): void;
}

const CLIENT_NONCE = 'probeprobeprobeprobe';

function startupMessage(user: string, database: string): Buffer {
  const body = Buffer.from(`user\0${user}\0database\0${database}\0\0`);
  const head = Buffer.alloc(8);
  head.writeInt32BE(8 + body.length, 0);
  head.writeInt32BE(196608, 4);
  return Buffer.concat([head, body]);
}

function saslInitialResponse(): Buffer {
  const mechanism = Buffer.from('SCRAM-SHA-256\0');
  const data = Buffer.from(`n,,n=,r=${CLIENT_NONCE}`);
  const head = Buffer.alloc(5);
  head[0] = 0x70; // 'p'
  head.writeInt32BE(4 + mechanism.length + 4 + data.length, 1);
  const len = Buffer.alloc(4);
  len.writeInt32BE(data.length);
  return Buffer.concat([head, mechanism, len, data]);
}

/** Reads whole backend messages; resolves with the body of the first 'R' message whose code is `code`. */
function awaitAuthentication(socket: Socket, code: number, buffered: { bytes: Buffer }): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      buffered.bytes = Buffer.concat([buffered.bytes, chunk]);
      while (buffered.bytes.length >= 5) {
        const length = buffered.bytes.readInt32BE(1);
        if (buffered.bytes.length < 1 + length) return;
        const type = String.fromCharCode(buffered.bytes[0]!);
        const body = buffered.bytes.subarray(5, 1 + length);
        buffered.bytes = buffered.bytes.subarray(1 + length);
        if (type === 'E') return finish(new Error(`server error: ${body.toString('latin1').replace(/\0/g, ' ')}`));
        if (type === 'R' && body.readInt32BE(0) === code) return finish(undefined, body.subarray(4));
        return finish(new Error(`unexpected message ${type}`));
      }
    };
    const onEnd = (): void => finish(new Error('connection closed'));
    const finish = (err: Error | undefined, body?: Buffer): void => {
      socket.off('data', onData);
      socket.off('close', onEnd);
      socket.off('error', finish);
      if (err) reject(err);
      else resolve(body!);
    };
    socket.on('data', onData);
    socket.on('close', onEnd);
    socket.on('error', finish);
  });
}

/** Starts a SCRAM-SHA-256 exchange for `user` and returns what the server-first message tells. */
export async function scramServerFirst(port: number, user: string, database: string): Promise<ServerFirst> {
  const socket = connect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  const buffered = { bytes: Buffer.alloc(0) };
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    socket.write(startupMessage(user, database));
    await awaitAuthentication(socket, 10, buffered);
    socket.write(saslInitialResponse());
    const serverFirst = (await awaitAuthentication(socket, 11, buffered)).toString('utf8');
    const m = /^r=([^,]+),s=([^,]+),i=(\d+)$/.exec(serverFirst);
    if (m === null || !m[1]!.startsWith(CLIENT_NONCE)) throw new Error(`malformed server-first message ${JSON.stringify(serverFirst)}`);
    return { serverNonce: m[1]!.slice(CLIENT_NONCE.length), salt: m[2]!, iterations: Number(m[3]), close: () => socket.destroy() };
  } catch (err) {
    socket.destroy();
    throw err;
  }
}
