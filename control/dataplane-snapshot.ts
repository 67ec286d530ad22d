// What a control plane hands a remote data plane (a sidecar): the bindings of a realm, the services
// they use, every policy (applicability is decided where the session runs), and the limits and
// audit settings, and the salt secret, so that every data plane derives the same SCRAM salts as the
// control plane's own workers (an unknown user's salt must not depend on which instance answers).
// Certificate and CA files live on the control plane's disk, so their contents travel inside the
// snapshot and the data plane writes them into its own cache directory.
import { readFileSync } from 'node:fs';
import type { AnyBindingConfig, AnyServiceConfig, SempipeConfig } from './config.js';
import { parseFqn, parseRealm, realmCovers } from './fqn.js';
import type { PolicyDocument } from './policy/policy-schema.js';

/** A binding of any protocol with its certificate files inlined (`required` for PostgreSQL and MySQL only). */
export type SnapshotBinding = DistributiveOmit<AnyBindingConfig, 'tls'> & {
  tls?: { certPem: string; keyPem: string; required?: boolean };
};

export type SnapshotService = DistributiveOmit<AnyServiceConfig, 'upstream'> & {
  upstream: DistributiveOmit<AnyServiceConfig['upstream'], 'ca'> & { caPem?: string };
};

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

export interface DataPlaneSnapshot {
  /** Change sequence of the control plane's state when the snapshot was made. */
  sequence: number;
  generatedAt: string;
  realm: string;
  limits: SempipeConfig['limits'];
  audit: Omit<SempipeConfig['audit'], 'destination'>;
  services: SnapshotService[];
  bindings: SnapshotBinding[];
  policies: PolicyDocument[];
  saltSecret?: string;
}

/** The part of `config` a data plane serving `realm` needs, with file contents inlined. */
export function snapshotFor(config: SempipeConfig, realmText: string, sequence: number): DataPlaneSnapshot {
  const realm = parseRealm(realmText);
  const bindings = config.bindings.filter((b) => realmCovers(realm, parseFqn(b.fqn)));
  const used = new Set(bindings.map((b) => b.service));
  return {
    sequence,
    generatedAt: new Date().toISOString(),
    realm: realmText,
    limits: config.limits,
    audit: { enabled: config.audit.enabled, maxStatementLength: config.audit.maxStatementLength },
    services: config.services
      .filter((s) => used.has(s.fqn))
      .map(({ upstream: { ca, ...upstream }, ...rest }) => ({ ...rest, upstream: { ...upstream, ...(ca ? { caPem: readFileSync(ca, 'utf8') } : {}) } })),
    bindings: bindings.map(({ tls, ...rest }) => ({
      ...rest,
      ...(tls ? { tls: { certPem: readFileSync(tls.cert, 'utf8'), keyPem: readFileSync(tls.key, 'utf8'), ...('required' in tls && { required: tls.required }) } } : {}),
    })),
    policies: config.policies,
    ...(config.saltSecret !== undefined && { saltSecret: config.saltSecret }),
  };
}
