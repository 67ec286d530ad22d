// The control API's error catalogue and its one translation to HTTP: every refusal is a status and
// a JSON body `{"error": code, "message": …, "path"?: field}`. Catalog errors map by their code.
import type { ServerResponse } from 'node:http';
import { CatalogError, type CatalogErrorCode } from '../catalog.js';

export type ApiErrorCode =
  | CatalogErrorCode
  | 'unauthorized'
  | 'forbidden'
  | 'method_not_allowed'
  | 'payload_too_large'
  | 'internal';

const STATUS: Readonly<Record<ApiErrorCode, number>> = {
  invalid: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  payload_too_large: 413,
  internal: 500,
};

export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(
    readonly code: ApiErrorCode,
    message: string,
    readonly path?: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  get status(): number {
    return STATUS[this.code];
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function sendNoContent(res: ServerResponse): void {
  res.writeHead(204);
  res.end();
}

/** Answers `err` as JSON; anything not from our catalogue is a 500 whose message says nothing inside. */
export function sendError(res: ServerResponse, err: unknown): void {
  const e =
    err instanceof ApiError
      ? err
      : err instanceof CatalogError
        ? new ApiError(err.code, err.message, err.path)
        : new ApiError('internal', 'internal error');
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, e.status, { error: e.code, message: e.message, ...(e.path !== undefined && { path: e.path }) }, e.headers);
}
