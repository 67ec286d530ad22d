// The upstream auth machine (pg's client SCRAM) against our own server-side SCRAM, frame by frame,
// plus a server that skips its proof and arbitrary Authentication frames.
import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { authenticationMd5, authenticationOk, authenticationSasl, authenticationSaslContinue, authenticationSaslFinal, authenticationCleartext } from '../backend-messages.js';
import { decodePasswordMessage, decodeSaslInitialResponse, decodeSaslResponse } from '../frontend-messages.js';
import { md5Salt, verifyMd5Response } from './md5.js';
import { createScramServer, handleClientFinal, handleClientFirst, scramMechanisms } from './scram-server.js';
import { createScramVerifier, parseScramVerifier } from './scram-verifier.js';
import { createUpstreamAuth, handleAuthRequest, type UpstreamAuthStep } from './upstream-auth.js';

const sent = (step: UpstreamAuthStep): Buffer => {
  if (step.kind !== 'send') throw new Error(`expected a frame to send, got ${JSON.stringify(step)}`);
  return step.frame;
};

describe('upstream auth against our server-side SCRAM', () => {
  const verifier = parseScramVerifier(createScramVerifier('svc-secret'))!;

  test('a full SCRAM-SHA-256 exchange ends in ok with the method named', async () => {
    const a = createUpstreamAuth('svc', 'svc-secret', undefined);
    const server = createScramServer({ verifier });
    const initial = decodeSaslInitialResponse(sent(await handleAuthRequest(a, authenticationSasl(scramMechanisms(false)))))!;
    const first = handleClientFirst(server, initial.mechanism, initial.data);
    if (!first.ok) throw new Error(first.reason);
    const final = handleClientFinal(server, decodeSaslResponse(sent(await handleAuthRequest(a, authenticationSaslContinue(first.serverFirst)))));
    if (!final.ok) throw new Error(final.reason);
    expect(await handleAuthRequest(a, authenticationSaslFinal(final.serverFinal))).toEqual({ kind: 'wait' });
    expect(await handleAuthRequest(a, authenticationOk())).toEqual({ kind: 'ok', method: 'scram-sha-256' });
  });

  test('a server that answers AuthenticationOk without proving it knows the verifier is refused', async () => {
    const a = createUpstreamAuth('svc', 'svc-secret', undefined);
    const server = createScramServer({ verifier });
    const initial = decodeSaslInitialResponse(sent(await handleAuthRequest(a, authenticationSasl(['SCRAM-SHA-256']))))!;
    const first = handleClientFirst(server, initial.mechanism, initial.data);
    if (!first.ok) throw new Error(first.reason);
    await handleAuthRequest(a, authenticationSaslContinue(first.serverFirst));
    expect(await handleAuthRequest(a, authenticationOk())).toMatchObject({ kind: 'fail', reason: expect.stringMatching(/before proving its identity/) });
  });

  test('a forged server signature is refused by pg sasl and reported with its step', async () => {
    const a = createUpstreamAuth('svc', 'svc-secret', undefined);
    const server = createScramServer({ verifier });
    const initial = decodeSaslInitialResponse(sent(await handleAuthRequest(a, authenticationSasl(['SCRAM-SHA-256']))))!;
    const first = handleClientFirst(server, initial.mechanism, initial.data);
    if (!first.ok) throw new Error(first.reason);
    await handleAuthRequest(a, authenticationSaslContinue(first.serverFirst));
    const step = await handleAuthRequest(a, authenticationSaslFinal(`v=${Buffer.alloc(32).toString('base64')}`));
    expect(step).toMatchObject({ kind: 'fail', reason: expect.stringMatching(/SCRAM-SERVER-FINAL-MESSAGE/) });
  });

  test('md5 and cleartext requests are answered with what our server side accepts', async () => {
    const salt = md5Salt();
    const md5 = decodePasswordMessage(sent(await handleAuthRequest(createUpstreamAuth('svc', 'pw', undefined), authenticationMd5(salt))))!;
    expect(verifyMd5Response(md5, 'svc', 'pw', salt)).toBe(true);
    const clear = decodePasswordMessage(sent(await handleAuthRequest(createUpstreamAuth('svc', 'pw', undefined), authenticationCleartext())));
    expect(clear).toBe('pw');
  });

  test('no password configured: requests for one fail without sending anything', async () => {
    for (const frame of [authenticationCleartext(), authenticationMd5(md5Salt()), authenticationSasl(['SCRAM-SHA-256'])]) {
      expect(await handleAuthRequest(createUpstreamAuth('svc', undefined, undefined), frame)).toMatchObject({ kind: 'fail' });
    }
  });

  test('SASL messages out of order fail', async () => {
    expect(await handleAuthRequest(createUpstreamAuth('svc', 'pw', undefined), authenticationSaslContinue('r=x,s=AAAA,i=1'))).toMatchObject({ kind: 'fail' });
    expect(await handleAuthRequest(createUpstreamAuth('svc', 'pw', undefined), authenticationSaslFinal('v=AAAA'))).toMatchObject({ kind: 'fail' });
  });

  test('arbitrary Authentication frames never throw', async () => {
    await fc.assert(fc.asyncProperty(fc.integer({ min: 0, max: 20 }), fc.uint8Array({ maxLength: 64 }), async (code, body) => {
      const frame = Buffer.alloc(9 + body.length);
      frame[0] = 0x52;
      frame.writeUInt32BE(8 + body.length, 1);
      frame.writeUInt32BE(code, 5);
      frame.set(body, 9);
      const step = await handleAuthRequest(createUpstreamAuth('svc', 'pw', undefined), frame);
      return ['send', 'wait', 'ok', 'fail'].includes(step.kind);
    }), { numRuns: 500 });
  });
});
