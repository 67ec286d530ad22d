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

const USAGE = `usage: sempipe <command> [options]

commands:
  proxy --config FILE [--workers N]   run the proxy for the services and bindings in FILE
  proxy --control-plane URL --token T [--bindings REALM] [--admin HOST:PORT] [--cache-dir DIR]
                                      run a data plane (sidecar) that follows a control plane
  demo                                start an embedded PostgreSQL behind a sempipe binding
  check-config FILE                   validate a config file (same checks as at start and reload)
  hash-password                       read a password (stdin or prompt), print its SCRAM verifier
  ctl <command> [--admin URL]         operate a running sempipe through its control API (sempipe ctl help)
`;

async function main(argv: string[]): Promise<number> {
  if (cluster.isWorker) {
    const { runWorker } = await import('./worker.js');
    await runWorker();
    return -1;
  }
  const [command, ...rest] = argv;
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
