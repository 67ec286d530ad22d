// The OpenAPI 3.1 document of the control API, built from the route table (paths, methods,
// summaries, answers) and the request-body zod schemas (z.toJSONSchema), so that it cannot drift
// from what the router serves. Response shapes are written out here as JSON Schema.
import { z } from 'zod';
import type { Route } from './route.js';

/**
 * A request body's JSON Schema. A union on `protocol` (a service) becomes `oneOf` its members; the
 * body is still an object, which is said so that clients reading only `type` see it.
 */
function bodySchema(body: z.ZodType): Record<string, unknown> {
  const schema = z.toJSONSchema(body, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  const members = (schema.oneOf ?? schema.anyOf) as Array<{ type?: unknown }> | undefined;
  if (schema.type === undefined && members?.every((m) => m.type === 'object')) return { type: 'object', ...schema };
  return schema;
}

const ref = (name: string): { $ref: string } => ({ $ref: `#/components/schemas/${name}` });
const str = { type: 'string' } as const;
const int = { type: 'integer' } as const;
const bool = { type: 'boolean' } as const;
const strings = { type: 'array', items: str } as const;
const source = { type: 'string', enum: ['file', 'api'] } as const;

const RESPONSE_SCHEMAS: Readonly<Record<string, object>> = {
  Error: {
    type: 'object',
    required: ['error', 'message'],
    properties: { error: str, message: str, path: { ...str, description: 'The offending field, e.g. upstream.port' } },
  },
  Service: {
    type: 'object',
    required: ['fqn', 'protocol', 'upstream', 'source'],
    properties: {
      fqn: str,
      protocol: str,
      upstream: { type: 'object', properties: { host: str, port: int, database: str, user: str, tls: str, tls_negotiation: str, ca: str } },
      source,
    },
  },
  ServiceList: { type: 'object', required: ['services'], properties: { services: { type: 'array', items: ref('Service') } } },
  Binding: {
    type: 'object',
    required: ['fqn', 'service', 'listen', 'database', 'auth', 'users', 'source', 'active'],
    properties: {
      fqn: str,
      service: str,
      listen: {
        description: 'As in sempipe.yaml: one address as a string, several as a list; "host:port" or "unix:PATH"',
        oneOf: [str, strings],
      },
      database: str,
      auth: str,
      users: strings,
      tls: { type: 'object', properties: { required: bool } },
      source,
      active: { ...bool, description: 'False when the config file made this API binding impossible; see problem' },
      problem: str,
    },
  },
  BindingList: { type: 'object', required: ['bindings'], properties: { bindings: { type: 'array', items: ref('Binding') } } },
  Credentials: {
    type: 'object',
    description: 'Shown once: sempipe keeps only the SCRAM verifier',
    required: ['fqn', 'user', 'password', 'uri'],
    properties: { fqn: str, user: str, password: str, uri: { ...str, description: 'postgres://user:password@host:port/database' } },
  },
  Policy: { type: 'object', description: 'A policy as in sempipe.yaml, plus source', required: ['fqn', 'realm', 'source'], properties: { fqn: str, realm: str, source } },
  PolicyList: { type: 'object', required: ['policies'], properties: { policies: { type: 'array', items: ref('Policy') } } },
  Explanation: {
    type: 'object',
    description: 'The policies and rules that apply, the statements as classified, and the verdict',
    required: ['subject', 'policies', 'rules', 'statements', 'verdict'],
    properties: {
      subject: { type: 'object', properties: { binding: str, service: str, job: str } },
      policies: { type: 'array', items: { type: 'object', properties: { fqn: str, realm: str } } },
      rules: { type: 'object' },
      statements: { type: 'array', items: { type: 'object', properties: { class: str, writes: bool, tables: strings, functions: strings, command: str } } },
      parseError: str,
      verdict: { type: 'object', required: ['action'], properties: { action: { type: 'string', enum: ['allow', 'deny'] }, code: str, message: str, rule: str, policy: str, hooks: strings } },
    },
  },
  Session: {
    type: 'object',
    required: ['id', 'binding', 'user', 'client_address', 'started_at', 'statements', 'bytes_in', 'bytes_out'],
    properties: {
      id: str,
      binding: str,
      user: str,
      client_address: str,
      started_at: { ...str, format: 'date-time' },
      statements: int,
      bytes_in: int,
      bytes_out: int,
    },
  },
  SessionList: { type: 'object', required: ['sessions'], properties: { sessions: { type: 'array', items: ref('Session') } } },
};

const AUTH_RESPONSES = {
  401: { description: 'No bearer token', content: { 'application/json': { schema: ref('Error') } } },
  403: { description: 'Wrong bearer token', content: { 'application/json': { schema: ref('Error') } } },
};

export function createOpenApiDocument(routes: readonly Route[], version: string): object {
  const paths: Record<string, object> = {};
  for (const route of routes) {
    const param = /\{(\w+)\}/.exec(route.path)?.[1];
    const item: Record<string, object> = {};
    for (const [method, op] of Object.entries(route.methods)) {
      const responses: Record<string, object> = { ...AUTH_RESPONSES };
      for (const [status, r] of Object.entries(op.responses)) {
        responses[status] = r.schema === undefined ? { description: r.description } : { description: r.description, content: { 'application/json': { schema: ref(r.schema) } } };
      }
      item[method.toLowerCase()] = {
        summary: op.summary,
        ...(param !== undefined && {
          parameters: [{ name: param, in: 'path', required: true, description: param === 'fqn' ? 'The FQN, URL-encoded' : 'The session id', schema: str }],
        }),
        ...(op.body !== undefined && {
          requestBody: { required: true, content: { 'application/json': { schema: bodySchema(op.body) } } },
        }),
        responses,
      };
    }
    paths[route.path] = item;
  }
  return {
    openapi: '3.1.0',
    info: { title: 'sempipe control API', version },
    security: [{ bearer: [] }],
    paths,
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } }, schemas: RESPONSE_SCHEMAS },
  };
}
