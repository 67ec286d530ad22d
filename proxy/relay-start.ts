// Starts a relay between a client and an upstream socket, the part every protocol's relay does the
// same way: each side's chunks to the relay's handler (first the bytes read before the relay took
// the sockets over), the client's 'drain' resumes reading upstream, and the close or error of each
// side goes to the relay. Runs once per session and registers the relay's own functions, so it adds
// nothing to the per-message path; the byte counting and the write backpressure stay in each relay,
// inline, for that reason.
import type { ChunkSource } from './chunk-reader.js';

export interface RelayHandlers {
  readonly onClientData: (chunk: Buffer, length: number) => void;
  readonly onUpstreamData: (chunk: Buffer, length: number) => void;
  /** The upstream took what it was given: the relay decides whether the client may go on. */
  readonly onUpstreamDrain: () => void;
  readonly onClientGone: () => void;
  readonly onUpstreamGone: () => void;
}

/** `leftover`: client bytes that arrived with the last message of the handshake. */
export function startRelay(clientSource: ChunkSource, upstreamSource: ChunkSource, h: RelayHandlers, leftover?: Buffer): void {
  const client = clientSource.socket;
  const upstream = upstreamSource.socket;
  clientSource.start(h.onClientData);
  upstreamSource.start(h.onUpstreamData);
  client.on('drain', () => upstream.resume());
  upstream.on('drain', h.onUpstreamDrain);
  client.on('close', h.onClientGone);
  client.on('error', h.onClientGone);
  upstream.on('close', h.onUpstreamGone);
  upstream.on('error', h.onUpstreamGone);
  if (leftover !== undefined && leftover.length > 0) h.onClientData(leftover, leftover.length);
  // Taken out, so that the next session on a reused upstream connection does not see them again.
  for (const chunk of clientSource.pending.splice(0)) h.onClientData(chunk, chunk.length);
  for (const chunk of upstreamSource.pending.splice(0)) h.onUpstreamData(chunk, chunk.length);
  client.resume();
  upstream.resume();
}
