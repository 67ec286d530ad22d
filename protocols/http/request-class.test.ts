// Tests of the request's statement facts: method classes, path normalization, query redaction.
import { describe, expect, it } from 'vitest';
import { classifyRequest, normalizePath, redactUrl } from './request-class.js';

describe('classifyRequest', () => {
  it('classes safe methods as reads and the rest as writes', () => {
    expect(['GET', 'HEAD', 'OPTIONS'].map((m) => classifyRequest(`${m} /x`))).toMatchObject([
      { cls: 'select', writes: false }, { cls: 'select', writes: false }, { cls: 'select', writes: false },
    ]);
    expect(['POST', 'PUT', 'PATCH', 'DELETE', 'TRACE', 'PROPFIND'].map((m) => [classifyRequest(`${m} /x`).cls, classifyRequest(`${m} /x`).writes])).toEqual([
      ['insert', true], ['update', true], ['update', true], ['delete', true], ['unknown', true], ['unknown', true],
    ]);
  });

  it('judges the path without its query', () => {
    expect(classifyRequest('GET /admin/users?x=1')).toMatchObject({ method: 'GET', path: '/admin/users' });
  });
});

describe('normalizePath', () => {
  it('decodes, folds slashes and resolves dot segments so no spelling escapes a rule', () => {
    expect(normalizePath('/%61dmin/x')).toBe('/admin/x');
    expect(normalizePath('//admin///x')).toBe('/admin/x');
    expect(normalizePath('/public/../admin/./x')).toBe('/admin/x');
    expect(normalizePath('/../../admin')).toBe('/admin');
    expect(normalizePath('/a/b/')).toBe('/a/b/');
    expect(normalizePath('/')).toBe('/');
    expect(normalizePath('/%zz')).toBe('/%zz');
  });
});

describe('redactUrl', () => {
  it('redacts secret-looking query values only', () => {
    expect(redactUrl('/x?api_key=abc&page=2&access_token=t&sig=s&q=hello')).toBe('/x?api_key=REDACTED&page=2&access_token=REDACTED&sig=REDACTED&q=hello');
    expect(redactUrl('/x?page=2')).toBe('/x?page=2');
    expect(redactUrl('/x')).toBe('/x');
    expect(redactUrl('/x?%74oken=abc')).toBe('/x?%74oken=REDACTED');
  });
});
