// Tests of the header rewriting in both directions.
import { describe, expect, it } from 'vitest';
import { clientResponseHeaders, REQUEST_STRIP, upstreamRequestHeaders, type ForwardContext } from './proxy-headers.js';

const ctx: ForwardContext = {
  strip: new Set([...REQUEST_STRIP, 'x-api-key']),
  injected: ['X-Api-Key', 'service-secret'],
  clientIp: '10.0.0.7',
  proto: 'https',
};

function pairs(flat: string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i]!, flat[i + 1]!]);
  return out;
}

describe('upstreamRequestHeaders', () => {
  it('drops hop-by-hop headers, those Connection names, the token and client copies of injected headers', () => {
    const out = upstreamRequestHeaders(
      [
        'Host', 'sempipe.local:8081', 'Authorization', 'Bearer job-token', 'Connection', 'keep-alive, X-Private',
        'Keep-Alive', 'timeout=5', 'X-Private', 'drop me', 'TE', 'trailers', 'Proxy-Authorization', 'Basic x',
        'Proxy-Foo', 'y', 'X-Api-Key', 'client-forged', 'Accept', 'application/json', 'X-Forwarded-For', '1.2.3.4',
        'X-Forwarded-Proto', 'http', 'Expect', '100-continue', 'Via', '1.0 edge',
      ],
      ctx,
    );
    expect(pairs(out)).toEqual([
      ['Accept', 'application/json'],
      ['X-Api-Key', 'service-secret'],
      ['x-forwarded-for', '1.2.3.4, 10.0.0.7'],
      ['x-forwarded-proto', 'https'],
      ['x-forwarded-host', 'sempipe.local:8081'],
      ['via', '1.0 edge, 1.1 sempipe'],
    ]);
  });
});

describe('clientResponseHeaders', () => {
  it('drops hop-by-hop headers and those Connection names; keeps the rest and adds Via', () => {
    expect(
      clientResponseHeaders({
        'content-type': 'text/plain',
        'content-length': '5',
        connection: 'close, x-hop',
        'x-hop': '1',
        'keep-alive': 'timeout=5',
        'transfer-encoding': 'chunked',
        'set-cookie': ['a=1', 'b=2'],
      }),
    ).toEqual({ 'content-type': 'text/plain', 'content-length': '5', 'set-cookie': ['a=1', 'b=2'], via: '1.1 sempipe' });
  });
});
