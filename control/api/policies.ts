// Control-API routes for policies: list, get, create or replace (PUT), delete, and the dry-run
// explain (which policies and rules would apply to a statement on a binding, and the verdict,
// from the policy engine and the SQL classifier the workers use).
import { explain } from '../policy/explain.js';
import { classifyForSession } from '../../protocols/postgres/replication-commands.js';
import { classifierReady, initClassifier } from '../../protocols/postgres/sql-classify.js';
import { readJsonBody } from './body.js';
import { sendJson, sendNoContent } from './errors.js';
import type { Route } from './route.js';
import { explainBody, parseBody, policyBody } from './schemas.js';

let classifierLoading: Promise<void> | undefined;

/** The primary loads the SQL parser on the first explain only; workers load their own. */
function classifier(): Promise<void> {
  if (classifierReady()) return Promise.resolve();
  classifierLoading ??= initClassifier();
  return classifierLoading;
}

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
        },
        handle: async (ctx, req, res) => {
          const { binding, sql, replication } = parseBody(explainBody, await readJsonBody(req));
          const { service } = ctx.catalog.getBinding(binding);
          await classifier();
          const classify = (text: string) => classifyForSession(text, replication);
          sendJson(res, 200, explain(ctx.catalog.effective().policies, { binding, service }, sql, classify, replication));
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
