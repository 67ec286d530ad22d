// The commands of `sempipe ctl`, as data: each names its positional arguments and options, and maps
// them onto one or more control-API requests (paths as documented in README "Control API") and the
// output for an operator (table or YAML) or a script (--json).
import { parseFqn, FqnError, type FqnType } from '../control/fqn.js';
import { ApiError, type AdminClient } from './ctl-client.js';
import { readDocuments } from './ctl-documents.js';
import type { Column, Output } from './ctl-output.js';
import { readSecret } from './read-secret.js';

/** A mistake in the command line: exit code 2 with the usage text. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export type OptionValues = Readonly<Record<string, string | boolean | undefined>>;

export interface CommandContext {
  readonly api: AdminClient;
  readonly out: Output;
  readonly args: readonly string[];
  readonly options: OptionValues;
}

export interface Command {
  /** "group action", e.g. "bindings create". */
  readonly name: string;
  /** Arguments and options after the name, for the usage text. */
  readonly synopsis: string;
  readonly summary: string;
  /** Names of the positional arguments (exactly these many). */
  readonly args: readonly string[];
  readonly options: readonly string[];
  /** Options that must be given. */
  readonly required?: readonly string[];
  run(ctx: CommandContext): Promise<void>;
}

type Row = Record<string, unknown>;

const SECRET_HINT = 'Shown only this once: sempipe keeps only a SCRAM verifier of this password, not the password itself.';
const TOKEN_HINT = 'Shown only this once: sempipe keeps only the SHA-256 of this token, not the token itself.';

function fqnArg(text: string, type: FqnType): string {
  try {
    return parseFqn(text, type).text;
  } catch (err) {
    if (err instanceof FqnError) throw new UsageError(err.message);
    throw err;
  }
}

function path(collection: string, id?: string, action?: string): string {
  return `/v1/${collection}${id === undefined ? '' : `/${encodeURIComponent(id)}`}${action === undefined ? '' : `/${action}`}`;
}

function str(options: OptionValues, name: string): string | undefined {
  const v = options[name];
  return typeof v === 'string' ? v : undefined;
}

/** The rows of a list answer `{ <collection>: [...] }`. */
function rowsOf(body: unknown, collection: string): Row[] {
  const list = (body as Record<string, unknown> | undefined)?.[collection];
  if (!Array.isArray(list)) throw new Error(`unexpected answer from the API: expected { "${collection}": [...] }`);
  return list as Row[];
}

function field(row: Row, ...keys: string[]): unknown {
  let v: unknown = row;
  for (const k of keys) v = typeof v === 'object' && v !== null ? (v as Row)[k] : undefined;
  return v;
}

function listCommand(collection: string, group: string, columns: readonly Column<Row>[]): Command {
  return {
    name: `${group} list`,
    synopsis: '',
    summary: `list ${collection}`,
    args: [],
    options: [],
    async run({ api, out }) {
      const { body } = await api.call('GET', path(collection));
      if (out.json) out.raw(body);
      else out.table(rowsOf(body, collection), columns, `no ${collection}`);
    },
  };
}

function getCommand(collection: string, group: string, type: FqnType): Command {
  return {
    name: `${group} get`,
    synopsis: 'FQN',
    summary: `show one ${type}`,
    args: ['FQN'],
    options: [],
    async run({ api, out, args }) {
      const { body } = await api.call('GET', path(collection, fqnArg(args[0]!, type)));
      if (out.json) out.raw(body);
      else out.resource(body);
    },
  };
}

function deleteCommand(collection: string, group: string, action: string, type: FqnType, done: string): Command {
  return {
    name: `${group} ${action}`,
    synopsis: 'FQN',
    summary: `${action} one ${type}`,
    args: ['FQN'],
    options: [],
    async run({ api, out, args }) {
      const fqn = fqnArg(args[0]!, type);
      const { body } = await api.call('DELETE', path(collection, fqn));
      if (out.json) out.raw(body ?? { fqn, deleted: true });
      else out.line(`${fqn} ${done}`);
    },
  };
}

/** Applies every resource of a file, one request each, reporting each as it is done. */
function fileCommand(name: string, collection: string, type: FqnType, method: 'POST' | 'PUT'): Command {
  return {
    name,
    synopsis: '-f FILE',
    summary: `${method === 'PUT' ? 'create or replace' : 'create'} the ${collection} in FILE (YAML or JSON; one, or a "${collection}:" list; "-" reads stdin)`,
    args: [],
    options: ['file'],
    required: ['file'],
    async run({ api, out, options }) {
      const docs = readDocuments(str(options, 'file')!, collection);
      const fqns = docs.map((d) => fqnArg(d.fqn, type));
      const results: unknown[] = [];
      for (const [i, doc] of docs.entries()) {
        const fqn = fqns[i]!;
        const target = method === 'PUT' ? path(collection, fqn) : path(collection);
        const { status, body } = await api.call(method, target, doc.body).catch((err: unknown) => {
          throw err instanceof ApiError ? new ApiError(err.message, err.status, err.path, fqn) : err;
        });
        results.push(body);
        if (!out.json) out.line(`${fqn} ${status === 201 ? 'created' : 'updated'}`);
      }
      if (out.json) out.raw(results);
    },
  };
}

function printCredentials(out: Output, body: unknown, verb: string): void {
  if (out.json) {
    out.raw(body);
  } else {
    const b = (body ?? {}) as Row;
    out.line(`${String(b.fqn)} ${verb}`);
    out.table(
      b.token !== undefined
        ? [
            ['client', b.client],
            ['token', b.token],
            ['url', b.url],
          ]
        : [
            ['user', b.user],
            ['password', b.password],
            ['uri', b.uri],
          ],
      [
        { header: 'FIELD', value: (r) => r[0] },
        { header: 'VALUE', value: (r) => r[1] },
      ],
      '',
    );
  }
  out.note((body as Row | undefined)?.token !== undefined ? TOKEN_HINT : SECRET_HINT);
}

/** The verdict first, then what the statement was classified as, then the policies that applied. */
function printExplanation(out: Output, body: Row): void {
  const v = (body.verdict ?? {}) as Row;
  const hooks = Array.isArray(v.hooks) && v.hooks.length > 0 ? ` after hooks ${v.hooks.join(', ')}` : '';
  out.line(
    v.action === 'deny'
      ? `verdict: deny (${String(v.code)}) ${String(v.message)} [rule ${String(v.rule)}${v.policy === undefined ? '' : `, ${String(v.policy)}`}]`
      : `verdict: ${String(v.action)}${hooks}`,
  );
  if (typeof body.parseError === 'string') out.line(`parse error: ${body.parseError} (classified unknown)`);
  out.line('');
  out.table(
    Array.isArray(body.statements) ? (body.statements as Row[]) : [],
    [
      { header: 'CLASS', value: (r) => (r.command === undefined ? r.class : `${String(r.class)} (${String(r.command)})`) },
      { header: 'WRITES', value: (r) => (r.writes === true ? 'yes' : 'no') },
      { header: 'TABLES', value: (r) => r.tables },
      { header: 'FUNCTIONS', value: (r) => r.functions },
    ],
    'no statements',
  );
  out.line('');
  out.table(
    Array.isArray(body.policies) ? (body.policies as Row[]) : [],
    [
      { header: 'POLICY (widest first)', value: (r) => r.fqn },
      { header: 'REALM', value: (r) => r.realm },
    ],
    'no policy applies',
  );
}

const serviceColumns: readonly Column<Row>[] = [
  { header: 'FQN', value: (r) => r.fqn },
  { header: 'PROTOCOL', value: (r) => r.protocol },
  { header: 'UPSTREAM', value: (r) => (field(r, 'upstream', 'host') === undefined ? undefined : `${String(field(r, 'upstream', 'host'))}:${String(field(r, 'upstream', 'port'))}`) },
  { header: 'DATABASE', value: (r) => field(r, 'upstream', 'database') },
  { header: 'USER', value: (r) => field(r, 'upstream', 'user') },
  { header: 'TLS', value: (r) => field(r, 'upstream', 'tls') },
  { header: 'SOURCE', value: (r) => r.source },
];

const bindingColumns: readonly Column<Row>[] = [
  { header: 'FQN', value: (r) => r.fqn },
  { header: 'SERVICE', value: (r) => r.service },
  { header: 'LISTEN', value: (r) => r.listen },
  { header: 'DATABASE', value: (r) => r.database },
  { header: 'AUTH', value: (r) => r.auth },
  { header: 'USERS', value: (r) => r.users },
  { header: 'SOURCE', value: (r) => r.source },
  { header: 'STATUS', value: (r) => (r.active === false ? `suspended: ${String(r.problem)}` : 'active') },
];

const policyColumns: readonly Column<Row>[] = [
  { header: 'FQN', value: (r) => r.fqn },
  { header: 'REALM', value: (r) => r.realm },
  { header: 'ALLOW', value: (r) => field(r, 'allow', 'classes') },
  { header: 'DENY', value: (r) => [field(r, 'deny', 'classes'), field(r, 'deny', 'functions'), field(r, 'deny', 'tables')].flat().filter((x) => x !== undefined) },
  { header: 'READ-ONLY', value: (r) => (r.read_only === true ? 'yes' : 'no') },
  { header: 'SOURCE', value: (r) => r.source },
];

const sessionColumns: readonly Column<Row>[] = [
  { header: 'ID', value: (r) => r.id },
  { header: 'BINDING', value: (r) => r.binding },
  { header: 'USER', value: (r) => r.user },
  { header: 'CLIENT', value: (r) => r.client_address },
  { header: 'STARTED', value: (r) => r.started_at },
  { header: 'STATEMENTS', value: (r) => r.statements },
  { header: 'BYTES-IN', value: (r) => r.bytes_in },
  { header: 'BYTES-OUT', value: (r) => r.bytes_out },
];

export const COMMANDS: readonly Command[] = [
  listCommand('services', 'services', serviceColumns),
  getCommand('services', 'services', 'service'),
  fileCommand('services create', 'services', 'service', 'POST'),
  deleteCommand('services', 'services', 'delete', 'service', 'deleted'),
  {
    name: 'services rotate',
    synopsis: 'FQN --password-stdin [--header NAME | --bearer]',
    summary:
      "replace the service's upstream password (read from stdin); open sessions keep running. HTTP services: the secret becomes the value of header NAME, or the upstream bearer token",
    args: ['FQN'],
    options: ['password-stdin', 'header', 'bearer'],
    async run({ api, out, args, options }) {
      const fqn = fqnArg(args[0]!, 'service');
      if (options['password-stdin'] !== true && process.stdin.isTTY !== true) {
        throw new UsageError('services rotate reads the new secret with --password-stdin');
      }
      const header = str(options, 'header');
      if (header !== undefined && options.bearer === true) throw new UsageError('give --header NAME or --bearer, not both');
      const password = await readSecret('New upstream secret: ');
      if (password === '') throw new UsageError('empty secret');
      const body = header !== undefined ? { headers: { [header]: password } } : options.bearer === true ? { bearer: password } : { password };
      const answer = await api.call('POST', path('services', fqn, 'rotate'), body);
      if (out.json) out.raw(answer.body ?? { fqn, rotated: true });
      else out.line('password' in body ? `${fqn}: upstream password rotated; new upstream connections use it` : `${fqn}: upstream credential rotated; the next request carries it`);
    },
  },
  {
    name: 'bindings create',
    synopsis: 'FQN --service FQN [--listen HOST:PORT] [--database D] [--auth METHOD]',
    summary: 'create a binding; prints its generated client credentials once',
    args: ['FQN'],
    options: ['service', 'listen', 'database', 'auth'],
    required: ['service'],
    async run({ api, out, args, options }) {
      const request: Record<string, string> = { fqn: fqnArg(args[0]!, 'binding'), service: fqnArg(str(options, 'service')!, 'service') };
      for (const key of ['listen', 'database', 'auth']) {
        const v = str(options, key);
        if (v !== undefined) request[key] = v;
      }
      const { body } = await api.call('POST', path('bindings'), request);
      printCredentials(out, body, 'created');
    },
  },
  listCommand('bindings', 'bindings', bindingColumns),
  getCommand('bindings', 'bindings', 'binding'),
  {
    name: 'bindings rotate',
    synopsis: 'FQN',
    summary: "replace a binding's client password; prints the new one once",
    args: ['FQN'],
    options: [],
    async run({ api, out, args }) {
      const { body } = await api.call('POST', path('bindings', fqnArg(args[0]!, 'binding'), 'rotate'));
      printCredentials(out, body, 'rotated');
    },
  },
  deleteCommand('bindings', 'bindings', 'revoke', 'binding', 'revoked: its listener and live sessions are closed'),
  fileCommand('policy apply', 'policies', 'policy', 'PUT'),
  listCommand('policies', 'policy', policyColumns),
  getCommand('policies', 'policy', 'policy'),
  deleteCommand('policies', 'policy', 'delete', 'policy', 'deleted'),
  {
    name: 'policy explain',
    synopsis: '--binding FQN --sql TEXT [--replication physical|logical]',
    summary: 'dry run: which rules apply to the binding and statement (on a replication connection), and the verdict',
    args: [],
    options: ['binding', 'sql', 'replication'],
    required: ['binding', 'sql'],
    async run({ api, out, options }) {
      const replication = str(options, 'replication');
      const request = { binding: fqnArg(str(options, 'binding')!, 'binding'), sql: str(options, 'sql')!, ...(replication !== undefined && { replication }) };
      const { body } = await api.call('POST', path('policies', undefined, 'explain'), request);
      if (out.json) out.raw(body);
      else printExplanation(out, (body ?? {}) as Row);
    },
  },
  {
    name: 'sessions list',
    synopsis: '[--binding FQN]',
    summary: 'list live sessions (of every worker), optionally of one binding',
    args: [],
    options: ['binding'],
    async run({ api, out, options }) {
      const binding = str(options, 'binding');
      const only = binding === undefined ? undefined : fqnArg(binding, 'binding');
      const { body } = await api.call('GET', path('sessions'));
      const sessions = rowsOf(body, 'sessions').filter((r) => only === undefined || r.binding === only);
      if (out.json) out.raw({ sessions });
      else out.table(sessions, sessionColumns, 'no sessions');
    },
  },
  {
    name: 'sessions kill',
    synopsis: 'ID',
    summary: 'close one session (FATAL 57P01 to its client)',
    args: ['ID'],
    options: [],
    async run({ api, out, args }) {
      const id = args[0]!;
      const { body } = await api.call('DELETE', path('sessions', id));
      if (out.json) out.raw(body ?? { id, killed: true });
      else out.line(`session ${id} killed`);
    },
  },
];
