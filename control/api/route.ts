// What one control-API route is: its path template (as in the OpenAPI document), and per method
// the handler with the facts the OpenAPI document is built from (summary, body schema, answers).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { z } from 'zod';
import type { SessionSummary } from '../../proxy/session-registry.js';
import type { Catalog } from '../catalog.js';

export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

/** A live session as the workers report it (the primary gathers them over IPC). */
export type { SessionSummary };

/** Sessions live in the workers; the primary implements this over worker IPC. */
export interface SessionDirectory {
  list(): Promise<SessionSummary[]>;
  /** Closes the session; false when no worker knows the id. */
  kill(id: string): Promise<boolean>;
}

export interface ApiContext {
  readonly catalog: Catalog;
  readonly sessions: SessionDirectory;
  /** The bearer token in force (it may change on reload); undefined = no token, loopback only. */
  readonly token: () => string | undefined;
}

export interface Operation {
  readonly summary: string;
  readonly body?: z.ZodType;
  /** Status code -> description and the name of a response schema in the OpenAPI components (none for 204). */
  readonly responses: Readonly<Record<number, { description: string; schema?: string }>>;
  readonly handle: (ctx: ApiContext, req: IncomingMessage, res: ServerResponse, param: string | undefined) => Promise<void>;
}

export interface Route {
  /** e.g. "/v1/services/{fqn}/rotate"; at most one parameter. */
  readonly path: string;
  readonly methods: Partial<Record<Method, Operation>>;
}
