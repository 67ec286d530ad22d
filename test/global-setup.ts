// Builds dist/ once before the suites run (the package's own build script, as `npm ci` runs it), so
// tests that start the real `sempipe` binary run the code under test rather than a stale build.
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';

export default function setup(): void {
  const root = resolve(import.meta.dirname, '..');
  execFileSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' });
}
