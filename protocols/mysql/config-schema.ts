// The MySQL/MariaDB part of sempipe.yaml: a `protocol: mysql` service's `upstream` keys and a MySQL
// binding's `auth` methods and client entries. control/config-schema.ts composes it into the
// `protocol:` union. The helpers that validate protocol-neutral values (FQNs, listen addresses,
// the binding's TLS files) are handed in, so that this protocol never imports control/.
import { z } from 'zod';

export const MYSQL_UPSTREAM_TLS_MODES = ['disable', 'prefer', 'require', 'verify-full'] as const;
export const MYSQL_AUTH_METHODS = ['caching_sha2_password', 'mysql_native_password'] as const;
export type MysqlAuthMethod = (typeof MYSQL_AUTH_METHODS)[number];

export const MYSQL_DEFAULT_PORT = 3306;

/** The protocol-neutral value schemas control/config-schema.ts already has. */
export interface SharedSchemas<Fqn extends z.ZodType<string>, Listen extends z.ZodType, Tls extends z.ZodType> {
  serviceFqn: Fqn;
  bindingFqn: Fqn;
  /** A binding's listen addresses (TCP and Unix socket files), with the socket files' mode and group. */
  listen: Listen;
  unixSocketMode: z.ZodType<number, unknown>;
  unixSocketGroup: z.ZodType<string, unknown>;
  bindingTls: Tls;
  port: z.ZodType<number, unknown>;
}

/** MySQL names: 1..64 characters, no NUL (the handshake carries them NUL-terminated). */
const name = z.string().min(1, 'must not be empty').max(64, 'must be at most 64 characters').refine((v) => !v.includes('\0'), 'must not contain a NUL character');

export function createMysqlConfigSchemas<Fqn extends z.ZodType<string>, Listen extends z.ZodType, Tls extends z.ZodType>(
  shared: SharedSchemas<Fqn, Listen, Tls>,
) {
  const upstream = z
    .strictObject({
      host: z.string().min(1, 'must not be empty'),
      port: shared.port.default(MYSQL_DEFAULT_PORT),
      database: name,
      user: name,
      password: z.string().optional(),
      tls: z.enum(MYSQL_UPSTREAM_TLS_MODES).default('prefer'),
      ca: z.string().min(1, 'must not be empty').optional(),
    })
    .superRefine((u, ctx) => {
      if (u.tls === 'verify-full' && u.ca === undefined) {
        ctx.addIssue({ code: 'custom', path: ['tls'], message: 'tls "verify-full" needs ca: (the CA certificate file that signed the server\'s certificate)' });
      }
    });

  const service = z.strictObject({
    fqn: shared.serviceFqn,
    protocol: z.literal('mysql'),
    upstream,
  });

  const client = z.strictObject({
    user: name,
    password: z.string().min(1, 'must not be empty'),
  });

  const binding = z
    .strictObject({
      fqn: shared.bindingFqn,
      /** Filled in from the service when absent; written out it must match the service's. */
      protocol: z.literal('mysql'),
      service: shared.serviceFqn,
      listen: shared.listen,
      unix_socket_mode: shared.unixSocketMode.optional(),
      unix_socket_group: shared.unixSocketGroup.optional(),
      database: name.optional(),
      auth: z.enum(MYSQL_AUTH_METHODS).default('caching_sha2_password'),
      clients: z.array(client).min(1, 'a binding needs at least one client'),
      tls: shared.bindingTls.optional(),
    })
    .superRefine((b, ctx) => {
      const seen = new Set<string>();
      b.clients.forEach((c, i) => {
        if (seen.has(c.user)) ctx.addIssue({ code: 'custom', path: ['clients', i, 'user'], message: `duplicate client user "${c.user}"` });
        seen.add(c.user);
      });
    });

  return { service, binding };
}
