import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type {} from '@fastify/swagger';
import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import type { ZodTypeProvider } from '../../http/zod-type-provider.js';

/**
 * The page, its script and Swagger UI's files all come from this service, so
 * the reference renders where the network reaches nothing else; the policy
 * makes the browser refuse anything from elsewhere.
 */
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  // Swagger UI sets style attributes.
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

// Relative addresses, so the page also works behind a proxy that adds a path prefix.
const PAGE = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>device-link-mqtt API reference</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
<div id="reference"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/reference.js"></script>
</body>
</html>
`;

// A reference, not a client: no "try it out", so the page never holds a token.
// validatorUrl null: Swagger UI would otherwise ask an online validator about the document.
const INITIALIZER = `window.addEventListener('load', function () {
  window.ui = SwaggerUIBundle({
    url: 'openapi.json',
    dom_id: '#reference',
    deepLinking: true,
    validatorUrl: null,
    supportedSubmitMethods: [],
    defaultModelsExpandDepth: 0,
  });
});
`;

const require = createRequire(import.meta.url);

/** Swagger UI's files, read when first asked for and then kept. */
const SWAGGER_UI_FILES = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
} as const;

const fileSchema = z
  .enum([...(Object.keys(SWAGGER_UI_FILES) as (keyof typeof SWAGGER_UI_FILES)[]), 'reference.js'])
  .describe("One of the page's files: Swagger UI's style sheet and script, and the script that starts it on this document");

/**
 * `GET /docs`, the API reference rendered by Swagger UI, and `GET
 * /openapi.json`, the document it renders. No token: the document holds no
 * secrets. Not logged per request, as the health checks.
 */
export const docsRoutes: FastifyPluginAsync = async (app) => {
  const routes = app.withTypeProvider<ZodTypeProvider>();
  const files = new Map<string, Promise<Buffer>>();
  let document: string | null = null;

  routes.get(
    '/docs',
    {
      logLevel: 'warn',
      schema: {
        tags: ['docs'],
        operationId: 'getDocs',
        summary: 'This API reference, rendered',
        description: "An HTML page that renders `/openapi.json` with Swagger UI. Everything it loads comes from this service, so it works where the network reaches nothing else. It needs no token.",
        answers: { 200: { description: 'The page', type: 'text/html', body: z.string() } },
      },
    },
    async (_request, reply) => reply.type('text/html; charset=utf-8').header('content-security-policy', CONTENT_SECURITY_POLICY).header('cache-control', 'no-cache').send(PAGE),
  );

  routes.get(
    '/docs/:file',
    {
      logLevel: 'warn',
      schema: {
        tags: ['docs'],
        operationId: 'getDocsFile',
        summary: 'A file of the rendered reference',
        params: z.object({ file: fileSchema }),
        answers: { 200: { description: 'The file', type: ['text/css', 'text/javascript'], body: z.string() } },
      },
    },
    async (request, reply) => {
      const { file } = request.params;
      if (file === 'reference.js') return reply.type('text/javascript; charset=utf-8').header('cache-control', 'no-cache').send(INITIALIZER);
      let content = files.get(file);
      if (!content) files.set(file, (content = readFile(require.resolve(`swagger-ui-dist/${file}`))));
      // Swagger UI changes only with the service's version: an hour of caching spares the 1.5 MB script.
      return reply.type(SWAGGER_UI_FILES[file]).header('cache-control', 'public, max-age=3600').send(await content);
    },
  );

  routes.get(
    '/openapi.json',
    {
      logLevel: 'warn',
      schema: {
        tags: ['docs'],
        operationId: 'getOpenApiDocument',
        summary: 'This document',
        description: 'The OpenAPI 3.1 document of every route, generated from the routes themselves; `openapi.yaml` in the repository holds the same. It needs no token.',
        answers: { 200: { description: 'The document', body: z.record(z.string(), z.unknown()).describe('An OpenAPI 3.1 document') } },
      },
    },
    async (_request, reply) => {
      // The routes are fixed once the app is ready, and so is the document.
      document ??= JSON.stringify(app.swagger());
      return reply.type('application/json; charset=utf-8').header('cache-control', 'no-cache').send(document);
    },
  );
};
