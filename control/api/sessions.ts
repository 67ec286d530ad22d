// Control-API routes for live sessions, which the workers own: list them (gathered by the primary
// over IPC) and kill one.
import { ApiError, sendJson, sendNoContent } from './errors.js';
import type { Route, SessionSummary } from './route.js';

function sessionJson(s: SessionSummary): Record<string, unknown> {
  return {
    id: s.id,
    binding: s.binding,
    user: s.user,
    client_address: s.clientAddress,
    started_at: new Date(s.startedAt).toISOString(),
    statements: s.statements,
    bytes_in: s.bytesIn,
    bytes_out: s.bytesOut,
  };
}

export const sessionRoutes: readonly Route[] = [
  {
    path: '/v1/sessions',
    methods: {
      GET: {
        summary: 'List live sessions of every worker',
        responses: { 200: { description: 'The sessions', schema: 'SessionList' } },
        handle: async (ctx, _req, res) => sendJson(res, 200, { sessions: (await ctx.sessions.list()).map(sessionJson) }),
      },
    },
  },
  {
    path: '/v1/sessions/{id}',
    methods: {
      DELETE: {
        summary: 'Kill a session (the client gets FATAL 57P01)',
        responses: { 204: { description: 'Killed' }, 404: { description: 'No such session', schema: 'Error' } },
        handle: async (ctx, _req, res, id) => {
          if (!(await ctx.sessions.kill(id!))) throw new ApiError('not_found', `session ${id!} does not exist`);
          sendNoContent(res);
        },
      },
    },
  },
];
