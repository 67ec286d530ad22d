// Fully qualified names (`type::/namespace/path::name`) and realms (an FQN without its name, e.g.
// `service::/prod`, or `::/` for everything) used to address jobs, services, bindings and policies,
// and the coverage test that decides which realms' policies apply to a resource.
// Hand-written: the grammar is a few lines, and a strict parser must say exactly what is wrong.

export type FqnType = 'job' | 'service' | 'binding' | 'package' | 'stager' | 'route' | 'policy';

export const FQN_TYPES: readonly FqnType[] = ['job', 'service', 'binding', 'package', 'stager', 'route', 'policy'];

export interface Fqn {
  type: FqnType;
  /** Namespace segments: [] for `/`, ['prod', 'eu'] for `/prod/eu`. */
  namespace: string[];
  name: string;
  /** The canonical text (equal to the parsed input: the grammar has one spelling per name). */
  text: string;
}

export interface Realm {
  /** Undefined for a realm of every type (`::/`, `::/prod`). */
  type?: FqnType;
  namespace: string[];
  /** Set when the realm is one resource's full FQN: it covers exactly that resource. */
  name?: string;
  text: string;
}

export class FqnError extends Error {
  override readonly name = 'FqnError';
}

const SEPARATOR = '::';
const SEGMENT = /^[A-Za-z0-9._-]+$/;

/** Parses `type::/namespace::name`; with `expectedType`, any other type is an error. */
export function parseFqn(text: string, expectedType?: FqnType): Fqn {
  const parts = splitParts(text, 'FQN');
  if (parts.length !== 3) {
    throw new FqnError(`invalid FQN ${JSON.stringify(text)}: expected type::/namespace::name`);
  }
  const type = parseType(parts[0], text, 'FQN');
  if (expectedType !== undefined && type !== expectedType) {
    throw new FqnError(`invalid FQN ${JSON.stringify(text)}: expected a ${expectedType}, got a ${type}`);
  }
  const namespace = parseNamespace(parts[1], text, 'FQN');
  const name = parseName(parts[2], text, 'FQN');
  return { type, namespace, name, text };
}

/**
 * Parses a realm: `type::/namespace` (every resource of that type at or under the namespace),
 * `::/namespace` (every type there; `::/` is everything) or a full FQN (that resource only).
 */
export function parseRealm(text: string): Realm {
  const parts = splitParts(text, 'realm');
  if (parts.length === 3) {
    if (parts[0] === '') {
      throw new FqnError(`invalid realm ${JSON.stringify(text)}: a realm naming one resource needs its type`);
    }
    const fqn = parseFqn(text);
    return { type: fqn.type, namespace: fqn.namespace, name: fqn.name, text };
  }
  if (parts.length !== 2) {
    throw new FqnError(`invalid realm ${JSON.stringify(text)}: expected type::/namespace, ::/namespace or a full FQN`);
  }
  const type = parts[0] === '' ? undefined : parseType(parts[0], text, 'realm');
  const namespace = parseNamespace(parts[1], text, 'realm');
  return type === undefined ? { namespace, text } : { type, namespace, text };
}

/** True when `fqn` lies in `realm`: same type (if the realm has one), namespace prefix by segment. */
export function realmCovers(realm: Realm, fqn: Fqn): boolean {
  if (realm.type !== undefined && realm.type !== fqn.type) return false;
  if (realm.namespace.length > fqn.namespace.length) return false;
  for (let i = 0; i < realm.namespace.length; i++) {
    if (realm.namespace[i] !== fqn.namespace[i]) return false;
  }
  if (realm.name === undefined) return true;
  return realm.namespace.length === fqn.namespace.length && realm.name === fqn.name;
}

/**
 * Specificity of a realm, for ordering widest first: namespace depth counts most, then a type,
 * then a name. Among the realms covering one FQN no two have the same depth.
 */
export function realmDepth(realm: Realm): number {
  return realm.namespace.length * 2 + (realm.type === undefined ? 0 : 1) + (realm.name === undefined ? 0 : 1);
}

function splitParts(text: string, what: string): string[] {
  if (typeof text !== 'string' || text.length === 0) {
    throw new FqnError(`invalid ${what} ${JSON.stringify(text)}: empty`);
  }
  return text.split(SEPARATOR);
}

function parseType(type: string, text: string, what: string): FqnType {
  const found = FQN_TYPES.find((t) => t === type);
  if (found === undefined) {
    throw new FqnError(
      `invalid ${what} ${JSON.stringify(text)}: unknown type ${JSON.stringify(type)} (expected one of ${FQN_TYPES.join(', ')})`,
    );
  }
  return found;
}

function parseNamespace(namespace: string, text: string, what: string): string[] {
  if (!namespace.startsWith('/')) {
    throw new FqnError(`invalid ${what} ${JSON.stringify(text)}: the namespace must start with "/"`);
  }
  if (namespace === '/') return [];
  const segments = namespace.slice(1).split('/');
  for (const segment of segments) {
    if (!SEGMENT.test(segment)) {
      throw new FqnError(
        `invalid ${what} ${JSON.stringify(text)}: namespace segment ${JSON.stringify(segment)} must be letters, digits, ".", "_" or "-"`,
      );
    }
    // "." and ".." would read as a path to another namespace while covering this one.
    if (segment === '.' || segment === '..') {
      throw new FqnError(`invalid ${what} ${JSON.stringify(text)}: namespace segment ${JSON.stringify(segment)} is not allowed`);
    }
  }
  return segments;
}

function parseName(name: string, text: string, what: string): string {
  if (!SEGMENT.test(name) || name === '.' || name === '..') {
    throw new FqnError(`invalid ${what} ${JSON.stringify(text)}: the name must be letters, digits, ".", "_" or "-" (not "." or "..")`);
  }
  return name;
}
