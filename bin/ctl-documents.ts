// Reads the resource files of `sempipe ctl … -f FILE`: YAML or JSON (JSON is YAML), holding one
// resource or a list under its plural key (`policies:`, `services:`) as in sempipe.yaml.
// The resources themselves are validated by the API, which names the offending field.
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';

export class DocumentError extends Error {
  override readonly name = 'DocumentError';
}

export interface NamedDocument {
  readonly fqn: string;
  readonly body: Record<string, unknown>;
}

/** The resources in `file`; `listKey` is the plural key of a list (e.g. "policies"). */
export function readDocuments(file: string, listKey: string): NamedDocument[] {
  let text: string;
  try {
    text = file === '-' ? readFileSync(0, 'utf8') : readFileSync(file, 'utf8');
  } catch (err) {
    throw new DocumentError(`${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parse(text, { logLevel: 'error' });
  } catch (err) {
    throw new DocumentError(`${file}: ${(err as Error).message}`);
  }
  if (!isObject(doc)) throw new DocumentError(`${file}: expected one resource (a mapping with fqn:) or a "${listKey}:" list`);
  const list = listKey in doc ? doc[listKey] : [doc];
  if (!Array.isArray(list) || list.length === 0) throw new DocumentError(`${file}: "${listKey}" must be a non-empty list`);
  return list.map((item, i) => {
    const where = listKey in doc ? `${file}: ${listKey}[${i}]` : file;
    if (!isObject(item)) throw new DocumentError(`${where}: expected a mapping`);
    if (typeof item.fqn !== 'string') throw new DocumentError(`${where}: fqn: required`);
    return { fqn: item.fqn, body: item };
  });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
