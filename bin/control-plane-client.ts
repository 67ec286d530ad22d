// The data-plane side of `sempipe proxy --control-plane URL`: watches the control plane's snapshot
// stream (server-sent events), turns each snapshot into a local config, keeps the last good one on
// disk so a restart while the control plane is away still serves, and reports whether the control
// plane is reachable. Reconnects with backoff; a silent stream (no heartbeat) counts as lost.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { request } from 'undici';
import { defaultLimits, type AnyBindingConfig, type AnyServiceConfig, type ListenAddress, type SempipeConfig } from '../control/config.js';
import type { DataPlaneSnapshot } from '../control/dataplane-snapshot.js';

export interface ControlPlaneClientOptions {
  url: string;
  token: string;
  realm: string;
  cacheDir: string;
  /** Local settings the snapshot does not carry. */
  local: Pick<SempipeConfig, 'admin' | 'workers' | 'stateDir'> & { auditDestination: string };
  log: Logger;
  onConfig(config: SempipeConfig, source: 'control-plane' | 'cache'): void;
  onConnected(connected: boolean): void;
}

/** The control plane sends a heartbeat every 10 s; twice that without a byte means the stream is dead. */
const SILENCE_MS = 25_000;
const MAX_BACKOFF_MS = 10_000;

export class ControlPlaneClient {
  private stopped = false;
  private abort: AbortController | undefined;

  constructor(private readonly opts: ControlPlaneClientOptions) {
    mkdirSync(opts.cacheDir, { recursive: true, mode: 0o700 });
  }

  private get cacheFile(): string {
    return join(this.opts.cacheDir, 'snapshot.json');
  }

  /** The cached snapshot as a config, when one was saved by an earlier run. */
  loadCached(): SempipeConfig | undefined {
    try {
      return this.toConfig(JSON.parse(readFileSync(this.cacheFile, 'utf8')) as DataPlaneSnapshot);
    } catch {
      return undefined;
    }
  }

  start(): void {
    void this.loop();
  }

  stop(): void {
    this.stopped = true;
    this.abort?.abort();
  }

  private async loop(): Promise<void> {
    let backoff = 500;
    while (!this.stopped) {
      try {
        await this.watchOnce(() => {
          backoff = 500;
        });
      } catch (err) {
        if (this.stopped) return;
        this.opts.log.warn({ url: this.opts.url, err: err instanceof Error ? err.message : String(err) }, 'control plane unreachable; serving the last good state');
      }
      this.opts.onConnected(false);
      if (this.stopped) return;
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  }

  private async watchOnce(onOpen: () => void): Promise<void> {
    const abort = new AbortController();
    this.abort = abort;
    const url = new URL('/v1/dataplane/watch', this.opts.url);
    url.searchParams.set('realm', this.opts.realm);
    const res = await request(url, {
      headers: { authorization: `Bearer ${this.opts.token}`, accept: 'text/event-stream' },
      signal: abort.signal,
      bodyTimeout: SILENCE_MS,
      headersTimeout: SILENCE_MS,
    });
    if (res.statusCode !== 200) {
      const body = await res.body.text();
      throw new Error(`watch answered HTTP ${res.statusCode}: ${body.slice(0, 200)}`);
    }
    this.opts.onConnected(true);
    onOpen();
    let buffered = '';
    for await (const chunk of res.body) {
      buffered += (chunk as Buffer).toString('utf8');
      let cut: number;
      while ((cut = buffered.indexOf('\n\n')) >= 0) {
        const event = buffered.slice(0, cut);
        buffered = buffered.slice(cut + 2);
        this.onEvent(event);
      }
    }
    throw new Error('watch stream ended');
  }

  private onEvent(raw: string): void {
    let name = 'message';
    const data: string[] = [];
    for (const line of raw.split('\n')) {
      if (line.startsWith('event:')) name = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
    }
    if (name !== 'snapshot' || data.length === 0) return;
    const text = data.join('\n');
    const snapshot = JSON.parse(text) as DataPlaneSnapshot;
    const config = this.toConfig(snapshot);
    this.save(text);
    this.opts.onConfig(config, 'control-plane');
  }

  /** Atomic replace, readable by this user only: the snapshot carries upstream credentials. */
  private save(text: string): void {
    const tmp = `${this.cacheFile}.tmp`;
    writeFileSync(tmp, text, { mode: 0o600 });
    renameSync(tmp, this.cacheFile);
  }

  private pemFile(pem: string, ext: string): string {
    const dir = join(this.opts.cacheDir, 'tls');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // Named by content: a file already written for an earlier snapshot is the same file.
    const file = join(dir, `${createHash('sha256').update(pem).digest('hex').slice(0, 16)}.${ext}`);
    if (!existsSync(file)) writeFileSync(file, pem, { mode: 0o600 });
    return file;
  }

  private toConfig(s: DataPlaneSnapshot): SempipeConfig {
    const { local } = this.opts;
    return {
      admin: local.admin,
      workers: local.workers,
      stateDir: local.stateDir,
      // A snapshot cached by an older sempipe lacks the limits added since: those take their defaults.
      limits: { ...defaultLimits(), ...s.limits },
      audit: { ...s.audit, destination: local.auditDestination },
      // The snapshot keeps each resource's own protocol shape; only the file references change.
      services: s.services.map(({ upstream: { caPem, ...upstream }, ...rest }) => ({
        ...rest,
        upstream: { ...upstream, ...(caPem ? { ca: this.pemFile(caPem, 'ca.pem') } : {}) },
      }) as AnyServiceConfig),
      bindings: s.bindings.map(({ tls, listen, ...rest }) => ({
        ...rest,
        // A snapshot from a control plane older than Unix-socket listeners (or cached by one) carries one address.
        listen: Array.isArray(listen) ? listen : [listen as unknown as ListenAddress],
        ...(tls ? { tls: { cert: this.pemFile(tls.certPem, 'crt'), key: this.pemFile(tls.keyPem, 'key'), ...(tls.required !== undefined && { required: tls.required }) } } : {}),
      }) as AnyBindingConfig),
      policies: s.policies,
      ...(s.saltSecret !== undefined && { saltSecret: s.saltSecret }),
    };
  }
}
