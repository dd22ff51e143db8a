import { STATUS_CODES } from 'node:http';
import type { FastifyBaseLogger, FastifyError, FastifyInstance } from 'fastify';
import { z } from 'zod';
import { AppError } from '../lib/errors.js';
import { isUnavailable } from '../lib/unavailable.js';
import { RequestValidationError } from './zod-type-provider.js';

/** The body of every error the app's own handlers answer. */
export const errorBodySchema = z
  .object({
    statusCode: z.number().int().meta({ examples: [400] }),
    error: z.string().describe('The status text').meta({ examples: ['Bad Request'] }),
    code: z.string().describe('Stable and machine-readable: `validation_failed`, `not_found`, `unauthorized`, `forbidden`, `unavailable`, or one a route names').meta({ examples: ['validation_failed'] }),
    message: z.string().describe('For people; a 400 names the field').meta({ examples: ['params.deviceId: must be a UUID'] }),
    requestId: z.string().describe("The id the service gave the request (the `x-request-id` answer header on `/v1`)").meta({ examples: ['5f0c2b7d9e41a3c86b2d0e17-1a'] }),
  })
  .meta({ id: 'Error', description: 'The body of every error of the `/v1` and operations routes.' });

export type ErrorBody = z.output<typeof errorBodySchema>;

/**
 * The answer to an error a route threw: its status and `{statusCode, error,
 * code, message, requestId}`. 5xx details stay out of it (logFailure logs them).
 */
export function errorAnswer(rawError: unknown, requestId: string): ErrorBody {
  // Anything can be thrown; what is not an object is an internal error.
  const error = (typeof rawError === 'object' && rawError !== null ? rawError : {}) as FastifyError & { validation?: unknown };
  let statusCode = 500;
  let code = 'internal_error';
  let message = 'internal error';

  if (error instanceof AppError) {
    ({ statusCode, code, message } = error);
  } else if (error instanceof RequestValidationError) {
    statusCode = 400;
    code = 'validation_failed';
    message = error.message;
  } else if (error.validation) {
    statusCode = 400;
    code = 'validation_failed';
    message = error.message;
  } else if (typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500) {
    // Fastify's own client errors: bad JSON, too large, unsupported media type.
    statusCode = error.statusCode;
    code = (error.code ?? 'bad_request').toLowerCase();
    message = error.message;
  } else if ((typeof error.statusCode === 'number' && error.statusCode === 503) || isUnavailable(error)) {
    // A dependency down or out of connections: the request may succeed later.
    statusCode = 503;
    code = 'unavailable';
    message = 'service unavailable';
  }
  return { statusCode, error: STATUS_CODES[statusCode] ?? 'Error', code, message, requestId };
}

/**
 * Logs an error answered 5xx with the request id its body carries (also on
 * the EMQX routes, whose logger is shared rather than bound to each request).
 */
export function logFailure(log: FastifyBaseLogger, error: unknown, answer: ErrorBody) {
  if (answer.statusCode === 503) log.warn({ err: error, requestId: answer.requestId }, 'request failed: a dependency is unavailable');
  else if (answer.statusCode >= 500) log.error({ err: error, requestId: answer.requestId }, 'request failed');
}

/** One error shape for every route (errorAnswer). */
export function registerErrorHandler(app: FastifyInstance) {
  app.setErrorHandler((error, request, reply) => {
    const body = errorAnswer(error, String(request.id));
    logFailure(request.log, error, body);
    return reply.status(body.statusCode).send(body);
  });

  app.setNotFoundHandler((request, reply) => {
    const body: ErrorBody = {
      statusCode: 404,
      error: 'Not Found',
      code: 'route_not_found',
      message: `no route ${request.method} ${request.url.split('?')[0]}`,
      requestId: String(request.id),
    };
    return reply.status(404).send(body);
  });
}
