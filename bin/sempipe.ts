#!/usr/bin/env node
// The `sempipe` command: proxy, demo, check-config, hash-password, ctl. Worker processes of `proxy`
// start from this same file (node:cluster) and are told apart by cluster.isWorker.
import cluster from 'node:cluster';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../control/config.js';
import { DEFAULT_ADMIN_LISTEN, parseHostPort } from '../control/config-schema.js';
import { parseRealm } from '../control/fqn.js';
import { createScramVerifier } from '../protocols/postgres/auth/scram-verifier.js';
import { readSecret } from './read-secret.js';

interface CommandHelp {
  /** Forms of the command line after `sempipe `, each with what it does. */
  readonly forms: ReadonlyArray<readonly [synopsis: string, summary: string]>;
  /** The options, one per line, for `sempipe COMMAND --help`. */
  readonly options?: string;
}

/** Every command's usage: the overview lists the forms, `sempipe COMMAND --help` prints one entry. */
const COMMAND_HELP: Readonly<Record<string, CommandHelp>> = {
  proxy: {
    forms: [
      ['proxy --config FILE [--workers N]', 'run the proxy for the services and bindings in FILE'],
      [
        'proxy --control-plane URL --token T [--bindings REALM] [--admin HOST:PORT] [--cache-dir DIR]',
        'run a data plane (sidecar) that follows a control plane',
      ],
    ],
    options: `  -c, --config FILE        the config file (SIGHUP re-reads it)
  --workers N              data-plane worker processes (default: the config's workers, else one per core)
  --control-plane URL      follow this control plane's watch stream instead of a file
  --token T                the control plane's token (else SEMPIPE_CONTROL_PLANE_TOKEN)
  --bindings REALM         the bindings to serve (default ::/, all)
  --admin HOST:PORT        this data plane's admin listener (default ${DEFAULT_ADMIN_LISTEN})
  --cache-dir DIR          where the last good state is kept while the control plane is away`,
  },
  demo: {
    forms: [['demo [--port P] [--admin-port P]', 'start an embedded PostgreSQL behind a sempipe binding']],
    options: `  --port P                 the binding's port (default 6432)
  --admin-port P           the admin listener's port, /metrics (default 9187)`,
  },
  'check-config': {
    forms: [['check-config FILE', 'validate a config file (same checks as at start and reload); exit 2 on error']],
  },
  'hash-password': {
    forms: [['hash-password', 'read a password (stdin or prompt), print its SCRAM verifier']],
  },
  ctl: {
    forms: [['ctl <command> [--admin URL]', 'operate a running sempipe through its control API (sempipe ctl --help)']],
  },
};

const formLines = (help: CommandHelp): string =>
  help.forms.map(([synopsis, summary]) => `  sempipe ${synopsis}\n      ${summary}`).join('\n');

const USAGE = `usage: sempipe <command> [options]   (sempipe <command> --help for one command)

commands:
${Object.values(COMMAND_HELP).map(formLines).join('\n')}
`;

function commandUsage(command: string): string {
  const help = COMMAND_HELP[command]!;
  return `usage:\n${formLines(help)}\n${help.options === undefined ? '' : `\noptions:\n${help.options}\n`}`;
}

const wantsHelp = (args: readonly string[]): boolean => args.some((a) => a === '--help' || a === '-h');

async function main(argv: string[]): Promise<number> {
  if (cluster.isWorker) {
    const { runWorker } = await import('./worker.js');
    await runWorker();
    return -1;
  }
  const [command, ...rest] = argv;
  // `ctl` has a usage per subcommand of its own.
  if (command !== undefined && command !== 'ctl' && Object.hasOwn(COMMAND_HELP, command) && wantsHelp(rest)) {
    process.stdout.write(commandUsage(command));
    return 0;
  }
  switch (command) {
    case 'proxy': {
      const { values } = parseArgs({
        args: rest,
        options: {
          config: { type: 'string', short: 'c' },
          workers: { type: 'string' },
          'control-plane': { type: 'string' },
          token: { type: 'string' },
          bindings: { type: 'string' },
          admin: { type: 'string' },
          'cache-dir': { type: 'string' },
        },
      });
      const workers = values.workers === undefined ? undefined : Number(values.workers);
      if (workers !== undefined && (!Number.isInteger(workers) || workers < 1)) return usage('--workers takes a whole number >= 1');
      const { runSupervisor } = await import('./supervisor.js');
      const controlPlane = values['control-plane'];
      if (controlPlane === undefined) {
        if (!values.config) return usage('proxy needs --config FILE (or --control-plane URL)');
        await runSupervisor({ configFile: values.config, workers });
        return -1;
      }
      if (values.config) return usage('--config and --control-plane exclude each other');
      const token = values.token ?? process.env.SEMPIPE_CONTROL_PLANE_TOKEN;
      if (!token) return usage('--control-plane needs --token T (or SEMPIPE_CONTROL_PLANE_TOKEN)');
      const admin = parseHostPort(values.admin ?? DEFAULT_ADMIN_LISTEN);
      if (admin === undefined) return usage('--admin takes HOST:PORT');
      const realm = values.bindings ?? '::/';
      try {
        parseRealm(realm);
      } catch (err) {
        return usage(`--bindings: ${err instanceof Error ? err.message : String(err)}`);
      }
      await runSupervisor({ controlPlane, token, realm, admin, cacheDir: values['cache-dir'], workers });
      return -1;
    }
    case 'demo': {
      const { values } = parseArgs({ args: rest, options: { port: { type: 'string' }, 'admin-port': { type: 'string' } } });
      const { runDemo } = await import('./demo.js');
      await runDemo({ port: values.port ? Number(values.port) : undefined, adminPort: values['admin-port'] ? Number(values['admin-port']) : undefined });
      return -1;
    }
    case 'check-config': {
      const { positionals } = parseArgs({ args: rest, allowPositionals: true });
      if (positionals.length !== 1) return usage('check-config takes one FILE');
      try {
        const config = loadConfig(positionals[0]);
        process.stdout.write(`${positionals[0]}: ok (${config.services.length} services, ${config.bindings.length} bindings)\n`);
        return 0;
      } catch (err) {
        process.stderr.write(`${err instanceof ConfigError ? err.message : String(err)}\n`);
        return 2;
      }
    }
    case 'hash-password': {
      const password = await readSecret('Password: ');
      if (password === '') {
        process.stderr.write('sempipe: empty password\n');
        return 2;
      }
      process.stdout.write(`${createScramVerifier(password)}\n`);
      return 0;
    }
    case 'ctl':
      return (await import('./ctl.js')).runCtl(rest);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return 0;
    default:
      return usage(`unknown command "${command}"`);
  }
}

function usage(problem: string): number {
  process.stderr.write(`sempipe: ${problem}\n\n${USAGE}`);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`sempipe: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
