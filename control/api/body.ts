// Reads a request body as JSON with a size limit: larger bodies are refused (413) without being
// buffered, malformed JSON is a 400.
import type { IncomingMessage } from 'node:http';
import { ApiError } from './errors.js';

export const MAX_BODY_BYTES = 1024 * 1024;

export async function readJsonBody(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<unknown> {
  const tooLarge = (): ApiError => new ApiError('payload_too_large', `the request body exceeds ${limit} bytes`, undefined, { connection: 'close' });
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw tooLarge();
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') throw new ApiError('invalid', 'a JSON request body is required');
  try {
    return JSON.parse(text) as unknown;
  } catch {
    // JSON.parse's message quotes the text, which may hold a password.
    throw new ApiError('invalid', 'the request body is not valid JSON');
  }
}
