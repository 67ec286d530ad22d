// How an HTTP request is seen by the protocol-neutral policy engine and metrics: the statement
// text is `METHOD path` (query strings with secret-looking parameters redacted), and the method
// gives the statement class: safe methods (GET, HEAD, OPTIONS) are `select` and do not write, so
// `read_only: true` lets exactly those through; POST is `insert`, PUT and PATCH `update`, DELETE
// `delete`; any other method (TRACE, CONNECT, WebDAV's) is `unknown` and counts as a write.

export interface RequestFacts {
  readonly cls: string;
  readonly writes: boolean;
  readonly tables: readonly string[];
  readonly functions: readonly string[];
  /** Upper-case method. */
  readonly method: string;
  /** The path without its query string, percent-decoded and with dot segments resolved. */
  readonly path: string;
}

const CLASS_OF_METHOD: Readonly<Record<string, string>> = {
  GET: 'select', HEAD: 'select', OPTIONS: 'select', POST: 'insert', PUT: 'update', PATCH: 'update', DELETE: 'delete',
};

/** Methods with their own metric label; others are counted as "other" to keep label sets bounded. */
export const KNOWN_METHODS: ReadonlySet<string> = new Set([...Object.keys(CLASS_OF_METHOD), 'TRACE', 'CONNECT']);

export function classOfMethod(method: string): string {
  return CLASS_OF_METHOD[method] ?? 'unknown';
}

const NONE: readonly string[] = Object.freeze([]);

/**
 * The path a policy judges: percent-decoded (so `/%61dmin` is `/admin`), repeated slashes folded
 * and `.`/`..` segments resolved the way a server would, so no spelling of a path escapes a rule.
 */
export function normalizePath(rawPath: string): string {
  let decoded: string;
  try {
    decoded = decodeURIComponent(rawPath);
  } catch {
    decoded = rawPath;
  }
  const out: string[] = [];
  for (const segment of decoded.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') out.pop();
    else out.push(segment);
  }
  const trailing = decoded.length > 1 && decoded.endsWith('/') && out.length > 0 ? '/' : '';
  return `/${out.join('/')}${trailing}`;
}

/** The facts of a statement text `METHOD path[?query]`. */
export function classifyRequest(text: string): RequestFacts {
  const space = text.indexOf(' ');
  const method = space < 0 ? text : text.substring(0, space);
  const target = space < 0 ? '/' : text.substring(space + 1);
  const q = target.indexOf('?');
  const cls = classOfMethod(method);
  return {
    cls,
    writes: cls !== 'select',
    tables: NONE,
    functions: NONE,
    method,
    path: normalizePath(q < 0 ? target : target.substring(0, q)),
  };
}

/** Query parameter names whose values are secrets (tokens, keys, signatures, passwords). */
const SECRET_PARAM = /token|key|secret|passw|pwd|auth|sig|credential|session|code/i;

/** `url` with the values of secret-looking query parameters replaced by `REDACTED`. */
export function redactUrl(url: string): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const params = url.substring(q + 1).split('&');
  let changed = false;
  for (let i = 0; i < params.length; i++) {
    const p = params[i]!;
    const eq = p.indexOf('=');
    const name = eq < 0 ? p : p.substring(0, eq);
    let decodedName = name;
    try {
      decodedName = decodeURIComponent(name);
    } catch {
      // An undecodable name is judged as written.
    }
    if (eq >= 0 && SECRET_PARAM.test(decodedName)) {
      params[i] = `${name}=REDACTED`;
      changed = true;
    }
  }
  return changed ? `${url.substring(0, q)}?${params.join('&')}` : url;
}
