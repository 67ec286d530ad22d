// The request bodies of the control API as zod schemas: services reuse the config file's schema
// (a service in JSON is the YAML one), bindings and the small action bodies are defined here.
// `parseBody` turns the first zod issue into a 400 naming the field path (e.g. "upstream.port").
// The same schemas feed the OpenAPI document.
import { accessSync, constants } from 'node:fs';
import { isAbsolute } from 'node:path';
import { z } from 'zod';
import { CLIENT_AUTH_METHODS, configSchema, parseHostPort } from '../config-schema.js';
import { FqnError, parseFqn, type FqnType } from '../fqn.js';
import type { BindingInput } from '../catalog.js';
import { normalizeService, type AnyServiceConfig } from '../config.js';
import { REPLICATION_KINDS } from '../policy/policy-schema.js';
import { ApiError } from './errors.js';

export { policySchema as policyBody } from '../policy/policy-schema.js';

function fqn(type: FqnType) {
  return z.string().transform((v, ctx) => {
    try {
      return parseFqn(v, type).text;
    } catch (err) {
      if (!(err instanceof FqnError)) throw err;
      ctx.addIssue({ code: 'custom', message: err.message });
      return z.NEVER;
    }
  });
}

const nonEmpty = z.string().min(1, 'must not be empty');

const absoluteReadableFile = nonEmpty.superRefine((v, ctx) => {
  if (!isAbsolute(v)) {
    ctx.addIssue({ code: 'custom', message: 'must be an absolute path (the API has no directory to resolve it against)' });
    return;
  }
  try {
    accessSync(v, constants.R_OK);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: `cannot read ${v}: ${(err as NodeJS.ErrnoException).code ?? 'error'}` });
  }
});

/** A service as in sempipe.yaml, with `upstream.password`; `upstream.ca` must be an absolute path. */
export const serviceBody = configSchema.shape.services.unwrap().element.superRefine((s, ctx) => {
  if (s.upstream.ca === undefined) return;
  const check = absoluteReadableFile.safeParse(s.upstream.ca);
  if (!check.success) ctx.addIssue({ code: 'custom', path: ['upstream', 'ca'], message: check.error.issues[0]!.message });
});

/** Client user names as PostgreSQL takes them in a startup packet and a URI carries them plainly. */
const USER = /^[A-Za-z0-9._-]{1,63}$/;

export const bindingBody = z
  .strictObject({
    fqn: fqn('binding'),
    service: fqn('service'),
    listen: z
      .string()
      .transform((v, ctx) => {
        const hp = parseHostPort(v);
        if (hp === undefined) ctx.addIssue({ code: 'custom', message: `expected "host:port" with port 1..65535 (IPv6 as "[::1]:6432"), got ${JSON.stringify(v)}` });
        return hp ?? z.NEVER;
      })
      .optional(),
    database: nonEmpty.optional(),
    /** "bearer" for an http service: sempipe issues a token instead of a user and password. */
    auth: z.enum([...CLIENT_AUTH_METHODS, 'bearer']).default('scram-sha-256'),
    user: z.string().regex(USER, 'expected 1 to 63 letters, digits, ".", "_" or "-"').optional(),
    client: z.string().regex(USER, 'expected 1 to 63 letters, digits, ".", "_" or "-"').optional(),
    max_body_size: z.number().int().positive().optional(),
    allow_password_without_tls: z.boolean().default(false),
    tls: z.strictObject({ cert: absoluteReadableFile, key: absoluteReadableFile, required: z.boolean().default(false) }).optional(),
  })
  .superRefine((b, ctx) => {
    const keys = b.auth === 'bearer' ? (['database', 'user'] as const) : (['client', 'max_body_size'] as const);
    for (const key of keys) {
      if (b[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: b.auth === 'bearer' ? `${key} is for PostgreSQL bindings` : `${key} is for auth "bearer" (HTTP) bindings` });
    }
    if (b.auth === 'md5') {
      ctx.addIssue({
        code: 'custom',
        path: ['auth'],
        message: 'md5 bindings cannot be created through the API: md5 needs a stored password or md5 hash, and the API stores only SCRAM verifiers; use scram-sha-256',
      });
    }
    if (b.auth === 'password' && b.tls === undefined && !b.allow_password_without_tls) {
      ctx.addIssue({ code: 'custom', path: ['auth'], message: 'cleartext "password" auth needs tls (or allow_password_without_tls: true)' });
    }
  });

/** PostgreSQL: the new `password`; HTTP: new `headers`, `basic` or `bearer` to inject upstream. */
export const rotateServiceBody = z
  .strictObject({
    password: nonEmpty.optional(),
    headers: z.record(z.string(), z.string()).optional(),
    basic: z.strictObject({ user: nonEmpty, password: z.string() }).optional(),
    bearer: nonEmpty.optional(),
  })
  .superRefine((r, ctx) => {
    const given = [r.password, r.headers, r.basic, r.bearer].filter((v) => v !== undefined).length;
    // Nothing given reads as the PostgreSQL password missing, the common case.
    if (given === 0) ctx.addIssue({ code: 'custom', path: ['password'], message: 'required field is missing (HTTP services: headers, basic or bearer)' });
    if (given > 1) ctx.addIssue({ code: 'custom', message: 'give exactly one of password (PostgreSQL), headers, basic or bearer (HTTP)' });
  });

/** `replication`: judge `sql` as sent on a replication connection of that kind. */
export const explainBody = z.strictObject({ binding: fqn('binding'), sql: nonEmpty, replication: z.enum(REPLICATION_KINDS).optional() });

function formatPath(path: readonly PropertyKey[]): string {
  return path.map((s, i) => (typeof s === 'number' ? `[${s}]` : i === 0 ? String(s) : `.${String(s)}`)).join('');
}

function valueAt(data: unknown, path: readonly PropertyKey[]): unknown {
  let v = data;
  for (const segment of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[segment];
  }
  return v;
}

/** Parses `body` with `schema`; the first problem becomes a 400 naming its field. */
export function parseBody<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  const result = schema.safeParse(body);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0]!;
    throw new ApiError('invalid', `unknown key "${key}"`, formatPath([...issue.path, key]));
  }
  const missing = issue.path.length > 0 && valueAt(body, issue.path) === undefined;
  if (issue.path.length === 0 && (typeof body !== 'object' || body === null || Array.isArray(body))) {
    throw new ApiError('invalid', 'the request body must be a JSON object');
  }
  throw new ApiError('invalid', missing ? 'required field is missing' : issue.message, formatPath(issue.path));
}

export function toServiceConfig(s: z.output<typeof serviceBody>): AnyServiceConfig {
  // The API takes absolute paths only, so there is nothing to resolve.
  return normalizeService(s, (path) => path);
}

export function toBindingInput(b: z.output<typeof bindingBody>): BindingInput {
  return {
    fqn: b.fqn,
    service: b.service,
    ...(b.listen !== undefined && { listen: b.listen }),
    ...(b.database !== undefined && { database: b.database }),
    auth: b.auth,
    ...(b.user !== undefined && { user: b.user }),
    ...(b.client !== undefined && { client: b.client }),
    ...(b.max_body_size !== undefined && { maxBodySize: b.max_body_size }),
    allowPasswordWithoutTls: b.allow_password_without_tls,
    ...(b.tls !== undefined && { tls: b.tls }),
  };
}
