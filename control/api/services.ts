// Control-API routes for services: list, get, create, replace, delete (409 while bindings use it)
// and rotation of the upstream password (new upstream connections use it; open sessions stay).
import { readJsonBody } from './body.js';
import { sendJson, sendNoContent } from './errors.js';
import type { Route } from './route.js';
import { parseBody, rotateServiceBody, serviceBody, toServiceConfig } from './schemas.js';

export const serviceRoutes: readonly Route[] = [
  {
    path: '/v1/services',
    methods: {
      GET: {
        summary: 'List services (from the config file and the API)',
        responses: { 200: { description: 'The services', schema: 'ServiceList' } },
        handle: async (ctx, _req, res) => sendJson(res, 200, { services: ctx.catalog.listServices() }),
      },
      POST: {
        summary: 'Create a service',
        body: serviceBody,
        responses: { 201: { description: 'Created', schema: 'Service' }, 400: { description: 'Invalid body', schema: 'Error' }, 409: { description: 'The FQN exists or is defined in the config file', schema: 'Error' } },
        handle: async (ctx, req, res) => {
          const service = toServiceConfig(parseBody(serviceBody, await readJsonBody(req)));
          const view = ctx.catalog.createService(service);
          sendJson(res, 201, view, { location: `/v1/services/${encodeURIComponent(view.fqn)}` });
        },
      },
    },
  },
  {
    path: '/v1/services/{fqn}/rotate',
    methods: {
      POST: {
        summary: 'Rotate the upstream password (PostgreSQL: new upstream connections use it, open sessions are not dropped) or the injected credential (HTTP: the next request carries it)',
        body: rotateServiceBody,
        responses: { 204: { description: 'Rotated' }, 404: { description: 'No such service', schema: 'Error' }, 409: { description: 'Defined in the config file', schema: 'Error' } },
        handle: async (ctx, req, res, fqn) => {
          const { password, ...credential } = parseBody(rotateServiceBody, await readJsonBody(req));
          if (password !== undefined) ctx.catalog.rotateService(fqn!, password);
          else ctx.catalog.rotateServiceCredential(fqn!, credential);
          sendNoContent(res);
        },
      },
    },
  },
  {
    path: '/v1/services/{fqn}',
    methods: {
      GET: {
        summary: 'Get a service (never its password)',
        responses: { 200: { description: 'The service', schema: 'Service' }, 404: { description: 'No such service', schema: 'Error' } },
        handle: async (ctx, _req, res, fqn) => sendJson(res, 200, ctx.catalog.getService(fqn!)),
      },
      PUT: {
        summary: 'Replace an API-created service; without upstream.password the current one is kept',
        body: serviceBody,
        responses: { 200: { description: 'Replaced', schema: 'Service' }, 400: { description: 'Invalid body', schema: 'Error' }, 404: { description: 'No such service', schema: 'Error' }, 409: { description: 'Defined in the config file', schema: 'Error' } },
        handle: async (ctx, req, res, fqn) => {
          const body = await readJsonBody(req);
          const withFqn = typeof body === 'object' && body !== null && !Array.isArray(body) && !('fqn' in body) ? { fqn, ...body } : body;
          sendJson(res, 200, ctx.catalog.updateService(fqn!, toServiceConfig(parseBody(serviceBody, withFqn))));
        },
      },
      DELETE: {
        summary: 'Delete an API-created service',
        responses: { 204: { description: 'Deleted' }, 404: { description: 'No such service', schema: 'Error' }, 409: { description: 'Used by bindings, or defined in the config file', schema: 'Error' } },
        handle: async (ctx, _req, res, fqn) => {
          ctx.catalog.deleteService(fqn!);
          sendNoContent(res);
        },
      },
    },
  },
];
