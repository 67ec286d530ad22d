// `sempipe <command> --help` (and -h) prints that command's usage on stdout and exits 0, for every
// command the overview lists and every `sempipe ctl` command (issue 22, part 5; `sempipe demo
// --help` used to fail with "Unknown option"). The top-level commands run the built binary, as a
// user would; the ctl commands (one process each would cost seconds) run `runCtl` in this process,
// with one ctl command through the binary as well.
import { spawn } from 'node:child_process';
import { describe, expect, test, vi } from 'vitest';
import { runCtl } from '../../bin/ctl.js';
import { COMMANDS } from '../../bin/ctl-commands.js';
import { SEMPIPE_BIN } from '../harness/sempipe-process.js';

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function sempipe(args: readonly string[]): Promise<Result> {
  return new Promise((resolve, reject) => {
    // No admin URL or token: a help text must not need a running sempipe.
    const env = { ...process.env, SEMPIPE_ADMIN_URL: 'http://127.0.0.1:9', SEMPIPE_ADMIN_TOKEN: '' };
    const child = spawn(process.execPath, [SEMPIPE_BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The commands `sempipe --help` lists ("  sempipe NAME …" lines). */
async function listedCommands(): Promise<string[]> {
  const r = await sempipe(['--help']);
  expect(r.code).toBe(0);
  const names = [...r.stdout.matchAll(/^ {2}sempipe ([a-z-]+)/gm)].map((m) => m[1]!);
  return [...new Set(names)];
}

describe('sempipe <command> --help', () => {
  test('every command of the overview prints its own usage and exits 0 (--help, or -h)', async () => {
    const commands = await listedCommands();
    expect(commands).toEqual(['proxy', 'demo', 'check-config', 'hash-password', 'ctl']);
    const results = await Promise.all(commands.map((c, i) => sempipe([c, i % 2 === 0 ? '--help' : '-h'])));
    commands.forEach((command, i) => {
      const r = results[i]!;
      expect({ command, code: r.code, stderr: r.stderr }).toEqual({ command, code: 0, stderr: '' });
      expect(r.stdout, command).toMatch(/^usage:/);
      expect(r.stdout, command).toContain(`sempipe ${command}`);
    });
  });

  test('demo --help names its options instead of "Unknown option"', async () => {
    const r = await sempipe(['demo', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('--port P');
    expect(r.stdout).toContain('--admin-port P');
  });

  test('a ctl command through the binary', async () => {
    const r = await sempipe(['ctl', 'bindings', 'create', '--help']);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    expect(r.stdout).toMatch(/^usage: sempipe ctl bindings create FQN --service FQN/);
  });
});

describe('sempipe ctl <command> --help', () => {
  /** runCtl's exit code and what it wrote, without a process of its own. */
  async function ctl(args: string[]): Promise<Result> {
    const out: string[] = [];
    const err: string[] = [];
    const stdout = vi.spyOn(process.stdout, 'write').mockImplementation((s) => out.push(String(s)) > 0);
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation((s) => err.push(String(s)) > 0);
    try {
      // An unreachable admin URL: a help text must not need a running sempipe.
      const code = await runCtl([...args, '--admin', 'http://127.0.0.1:9']);
      return { code, stdout: out.join(''), stderr: err.join('') };
    } finally {
      stdout.mockRestore();
      stderr.mockRestore();
    }
  }

  test('every ctl command prints its usage and exits 0', async () => {
    for (const c of COMMANDS) {
      const r = await ctl([...c.name.split(' '), '--help']);
      expect({ command: c.name, code: r.code, stderr: r.stderr }).toEqual({ command: c.name, code: 0, stderr: '' });
      expect(r.stdout).toContain(`usage: sempipe ctl ${`${c.name} ${c.synopsis}`.trimEnd()}`);
      expect(r.stdout).toContain(c.summary);
    }
  });

  test('a ctl group lists its commands; an unknown command is still a usage error (exit 2)', async () => {
    const group = await ctl(['bindings', '-h']);
    expect(group.code).toBe(0);
    for (const c of COMMANDS.filter((c) => c.name.startsWith('bindings '))) expect(group.stdout).toContain(c.name);
    expect(group.stdout).not.toContain('sessions kill');
    const unknown = await ctl(['nope', '--help']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "nope"');
  });
});
