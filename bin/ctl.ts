// `sempipe ctl`: the operators' CLI over the control API. Finds the API (--admin, SEMPIPE_ADMIN_URL,
// default http://127.0.0.1:9187) and the token (--token, SEMPIPE_ADMIN_TOKEN), runs one command
// from ctl-commands.ts and turns failures into exit codes: 1 for an API error or an unreachable
// API, 2 for a usage mistake.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ApiError, createAdminClient, UnreachableError } from './ctl-client.js';
import { COMMANDS, UsageError, type Command } from './ctl-commands.js';
import { DocumentError } from './ctl-documents.js';
import { createOutput } from './ctl-output.js';

export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:9187';

const GLOBAL_OPTIONS = ['admin', 'token', 'json', 'help'];

// Every option of every command, so one parse finds the positionals; each command then refuses
// options that are not its own.
const OPTIONS = {
  admin: { type: 'string' },
  token: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  file: { type: 'string', short: 'f' },
  service: { type: 'string' },
  listen: { type: 'string' },
  database: { type: 'string' },
  auth: { type: 'string' },
  binding: { type: 'string' },
  sql: { type: 'string' },
  replication: { type: 'string' },
  'password-stdin': { type: 'boolean' },
  header: { type: 'string' },
  bearer: { type: 'boolean' },
} as const satisfies ParseArgsConfig['options'];

const GLOBAL_HELP = `--admin URL   the admin listener (else SEMPIPE_ADMIN_URL, else ${DEFAULT_ADMIN_URL})
--token T     the control API's bearer token (else SEMPIPE_ADMIN_TOKEN)
--json        print the API's JSON instead of tables
`;

const commandLines = (commands: readonly Command[]): string =>
  commands.map((c) => `  ${`${c.name} ${c.synopsis}`.trimEnd()}\n      ${c.summary}`).join('\n');

const USAGE = `usage: sempipe ctl [--admin URL] [--token T] [--json] <command>   (sempipe ctl <command> --help for one)

commands:
${commandLines(COMMANDS)}

${GLOBAL_HELP}`;

/**
 * The usage `--help` asks for: one command's ("bindings create --help"), a group's ("bindings
 * --help"), or all; undefined for a name that is neither.
 */
function helpFor(positionals: readonly string[]): string | undefined {
  const [group, action] = positionals;
  if (group === undefined || group === 'help') return USAGE;
  if (action !== undefined) {
    const command = COMMANDS.find((c) => c.name === `${group} ${action}`);
    if (command === undefined) return undefined;
    return `usage: sempipe ctl ${`${command.name} ${command.synopsis}`.trimEnd()} [--admin URL] [--token T] [--json]\n\n${command.summary}\n\n${GLOBAL_HELP}`;
  }
  const commands = COMMANDS.filter((c) => c.name.startsWith(`${group} `));
  if (commands.length === 0) return undefined;
  return `usage: sempipe ctl [--admin URL] [--token T] [--json] ${group} <command>\n\ncommands:\n${commandLines(commands)}\n\n${GLOBAL_HELP}`;
}

export async function runCtl(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    return usage((err as Error).message);
  }
  const { values, positionals } = parsed;
  const [group, action = 'list', ...args] = positionals;
  if (group === undefined || group === 'help' || values.help === true) {
    const help = helpFor(positionals);
    if (help === undefined) return usage(`unknown command "${positionals.slice(0, 2).join(' ')}"`);
    process.stdout.write(help);
    return 0;
  }
  const command = COMMANDS.find((c) => c.name === `${group} ${action}`);
  if (command === undefined) return usage(`unknown command "${positionals.slice(0, 2).join(' ')}"`);
  const problem = commandLineProblem(command, args, values);
  if (problem !== undefined) return usage(problem, command);

  const url = values.admin ?? nonEmpty(process.env.SEMPIPE_ADMIN_URL) ?? DEFAULT_ADMIN_URL;
  if (!isHttpUrl(url)) return usage(`--admin takes an http:// or https:// URL, got ${JSON.stringify(url)}`);
  const token = nonEmpty(values.token) ?? nonEmpty(process.env.SEMPIPE_ADMIN_TOKEN);
  const out = createOutput(values.json === true);
  try {
    await command.run({ api: createAdminClient({ url, token }), out, args, options: values });
    return 0;
  } catch (err) {
    if (err instanceof UsageError) return usage(err.message, command);
    if (err instanceof DocumentError) return fail(err.message, 2);
    if (err instanceof ApiError) return fail(apiErrorText(err, token !== undefined), 1);
    if (err instanceof UnreachableError) return fail(err.message, 1);
    throw err;
  }
}

function commandLineProblem(command: Command, args: readonly string[], values: Record<string, unknown>): string | undefined {
  if (args.length !== command.args.length) {
    return command.args.length === 0 ? `${command.name} takes no arguments` : `${command.name} takes ${command.args.join(' ')}`;
  }
  for (const [name, value] of Object.entries(values)) {
    if (value !== undefined && !GLOBAL_OPTIONS.includes(name) && !command.options.includes(name)) {
      return `${command.name} has no option --${name}`;
    }
  }
  const missing = (command.required ?? []).find((name) => values[name] === undefined);
  return missing === undefined ? undefined : `${command.name} needs --${missing}`;
}

function apiErrorText(err: ApiError, hadToken: boolean): string {
  const where = [err.subject, err.path].filter((x) => x !== undefined).map((x) => `${x}: `).join('');
  const hint = err.status === 401 && !hadToken ? '; set --token or SEMPIPE_ADMIN_TOKEN' : '';
  return `${where}${err.message}${hint} (HTTP ${err.status})`;
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v === '' ? undefined : v;
}

function isHttpUrl(text: string): boolean {
  try {
    const u = new URL(text);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}

function fail(message: string, code: number): number {
  process.stderr.write(`sempipe ctl: ${message}\n`);
  return code;
}

function usage(problem: string, command?: Command): number {
  const help = command === undefined ? USAGE : `usage: sempipe ctl ${command.name} ${command.synopsis}`.trimEnd() + '\n';
  process.stderr.write(`sempipe ctl: ${problem}\n\n${help}`);
  return 2;
}
