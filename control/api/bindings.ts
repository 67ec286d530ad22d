// Control-API routes for bindings: create (sempipe issues the client user and password and
// returns them once, with a connection URI), list, get (never secrets), rotate the client
// password, delete (= revoke: the primary closes its listener and live sessions).
import { readJsonBody } from './body.js';
import { sendJson, sendNoContent } from './errors.js';
import type { Route } from './route.js';
import { bindingBody, parseBody, toBindingInput } from './schemas.js';

/** Answers carrying a password must not be kept by caches or proxies. */
const NO_STORE = { 'cache-control': 'no-store' };

export const bindingRoutes: readonly Route[] = [
  {
    path: '/v1/bindings',
    methods: {
      GET: {
        summary: 'List bindings (never their secrets)',
        responses: { 200: { description: 'The bindings', schema: 'BindingList' } },
        handle: async (ctx, _req, res) => sendJson(res, 200, { bindings: ctx.catalog.listBindings() }),
      },
      POST: {
        summary: 'Create a binding; the generated password is returned once and only its SCRAM verifier is stored',
        body: bindingBody,
        responses: {
          201: { description: 'Created', schema: 'Credentials' },
          400: { description: 'Invalid body or unknown service', schema: 'Error' },
          409: { description: 'The FQN or the listen address is taken', schema: 'Error' },
        },
        handle: async (ctx, req, res) => {
          const input = toBindingInput(parseBody(bindingBody, await readJsonBody(req)));
          const issued = await ctx.catalog.createBinding(input);
          sendJson(res, 201, issued, { ...NO_STORE, location: `/v1/bindings/${encodeURIComponent(issued.fqn)}` });
        },
      },
    },
  },
  {
    path: '/v1/bindings/{fqn}/rotate',
    methods: {
      POST: {
        summary: 'Issue a new client password (returned once); the old one stops working for new connections',
        responses: { 200: { description: 'Rotated', schema: 'Credentials' }, 404: { description: 'No such binding', schema: 'Error' }, 409: { description: 'Defined in the config file', schema: 'Error' } },
        handle: async (ctx, _req, res, fqn) => sendJson(res, 200, ctx.catalog.rotateBinding(fqn!), NO_STORE),
      },
    },
  },
  {
    path: '/v1/bindings/{fqn}',
    methods: {
      GET: {
        summary: 'Get a binding (never its secrets)',
        responses: { 200: { description: 'The binding', schema: 'Binding' }, 404: { description: 'No such binding', schema: 'Error' } },
        handle: async (ctx, _req, res, fqn) => sendJson(res, 200, ctx.catalog.getBinding(fqn!)),
      },
      DELETE: {
        summary: 'Revoke a binding: its listener closes and its live sessions end with FATAL 57P01',
        responses: { 204: { description: 'Revoked' }, 404: { description: 'No such binding', schema: 'Error' }, 409: { description: 'Defined in the config file', schema: 'Error' } },
        handle: async (ctx, _req, res, fqn) => {
          ctx.catalog.deleteBinding(fqn!);
          sendNoContent(res);
        },
      },
    },
  },
];
