// Reading `sempipe ctl … -f FILE`: one resource or a plural list, YAML or JSON, and every other
// input (arbitrary text) refused with a DocumentError naming the file, never another exception.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, test } from 'vitest';
import { DocumentError, readDocuments } from './ctl-documents.js';

const dir = mkdtempSync(join(tmpdir(), 'sempipe-ctl-docs-'));
let n = 0;
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(text: string): string {
  const path = join(dir, `doc-${n++}.yaml`);
  writeFileSync(path, text);
  return path;
}

describe('readDocuments', () => {
  test('one resource, in YAML or JSON', () => {
    expect(readDocuments(file('fqn: policy::/a::b\nread_only: true\n'), 'policies')).toEqual([{ fqn: 'policy::/a::b', body: { fqn: 'policy::/a::b', read_only: true } }]);
    expect(readDocuments(file('{"fqn": "policy::/a::c", "realm": "::/"}'), 'policies')).toEqual([{ fqn: 'policy::/a::c', body: { fqn: 'policy::/a::c', realm: '::/' } }]);
  });

  test('a plural list keeps its order', () => {
    const docs = readDocuments(file('policies:\n  - { fqn: policy::/a::x }\n  - { fqn: policy::/a::y }\n'), 'policies');
    expect(docs.map((d) => d.fqn)).toEqual(['policy::/a::x', 'policy::/a::y']);
  });

  test('refusals name the file and the item', () => {
    const f = file('policies:\n  - { realm: "::/" }\n');
    expect(() => readDocuments(f, 'policies')).toThrow(new DocumentError(`${f}: policies[0]: fqn: required`));
    const empty = file('policies: []\n');
    expect(() => readDocuments(empty, 'policies')).toThrow(`${empty}: "policies" must be a non-empty list`);
    expect(() => readDocuments(file('- a\n- b\n'), 'policies')).toThrow(/expected one resource/);
    expect(() => readDocuments(join(dir, 'absent.yaml'), 'policies')).toThrow(`${join(dir, 'absent.yaml')}: no such file`);
  });

  test('arbitrary text never escapes as anything but a DocumentError', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (text) => {
        try {
          for (const d of readDocuments(file(text), 'policies')) expect(typeof d.fqn).toBe('string');
        } catch (err) {
          expect(err).toBeInstanceOf(DocumentError);
        }
      }),
      { numRuns: 300 },
    );
  });
});
