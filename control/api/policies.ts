// Control-API routes for policies: list, get, create or replace (PUT), delete, and the dry-run
// explain (which policies and rules would apply to a statement on a binding, and the verdict).
import { readJsonBody } from './body.js';
import { ApiError, sendJson, sendNoContent } from './errors.js';
import type { Route } from './route.js';
import { explainBody, parseBody, policyBody } from './schemas.js';

export const policyRoutes: readonly Route[] = [
  {
    path: '/v1/policies',
    methods: {
      GET: {
        summary: 'List policies (from the config file and the API)',
        responses: { 200: { description: 'The policies', schema: 'PolicyList' } },
        handle: async (ctx, _req, res) => sendJson(res, 200, { policies: ctx.catalog.listPolicies() }),
      },
    },
  },
  {
    path: '/v1/policies/explain',
    methods: {
      POST: {
        summary: 'Dry run: which policies and rules apply to a statement on a binding, and the verdict',
        body: explainBody,
        responses: {
          200: { description: 'The explanation', schema: 'Explanation' },
          400: { description: 'Invalid body', schema: 'Error' },
          404: { description: 'No such binding', schema: 'Error' },
          501: { description: 'No policy engine is wired in', schema: 'Error' },
        },
        handle: async (ctx, req, res) => {
          const input = parseBody(explainBody, await readJsonBody(req));
          if (ctx.explain === undefined) throw new ApiError('not_implemented', 'explain is not available: no policy engine is wired into this control API');
          ctx.catalog.getBinding(input.binding);
          sendJson(res, 200, await ctx.explain(input, ctx.catalog.effective()));
        },
      },
    },
  },
  {
    path: '/v1/policies/{fqn}',
    methods: {
      GET: {
        summary: 'Get a policy',
        responses: { 200: { description: 'The policy', schema: 'Policy' }, 404: { description: 'No such policy', schema: 'Error' } },
        handle: async (ctx, _req, res, fqn) => sendJson(res, 200, ctx.catalog.getPolicy(fqn!)),
      },
      PUT: {
        summary: 'Create or replace a policy; it applies to the next statement of open sessions',
        body: policyBody,
        responses: {
          200: { description: 'Replaced', schema: 'Policy' },
          201: { description: 'Created', schema: 'Policy' },
          400: { description: 'Invalid policy', schema: 'Error' },
          409: { description: 'Defined in the config file', schema: 'Error' },
        },
        handle: async (ctx, req, res, fqn) => {
          const { created, policy } = ctx.catalog.putPolicy(fqn!, await readJsonBody(req));
          sendJson(res, created ? 201 : 200, policy, created ? { location: `/v1/policies/${encodeURIComponent(fqn!)}` } : {});
        },
      },
      DELETE: {
        summary: 'Delete an API-created policy',
        responses: { 204: { description: 'Deleted' }, 404: { description: 'No such policy', schema: 'Error' }, 409: { description: 'Defined in the config file', schema: 'Error' } },
        handle: async (ctx, _req, res, fqn) => {
          ctx.catalog.deletePolicy(fqn!);
          sendNoContent(res);
        },
      },
    },
  },
];
