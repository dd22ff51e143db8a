import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { deviceIdSchema, isoTimestamp as iso, optionalBody, pageQuerySchema, pageSchema, tenantIdSchema } from '../../http/common-schemas.js';
import type { ZodTypeProvider } from '../../http/zod-type-provider.js';
import { COMMAND_STATES } from '../../lib/command-states.js';
import { deviceLabelsSchema } from '../../lib/device-labels.js';
import { commandRequestFields } from './command-schemas.js';
import { DEFAULT_MAX_PER_SECOND, MAX_JOB_DEVICE_IDS, type CommandJobService } from './command-job-service.js';

/** 100,000 device ids as JSON are about 4 MiB. */
const JOB_BODY_LIMIT = 8 * 1024 * 1024;

const jobParams = z.object({
  tenantId: tenantIdSchema,
  jobId: z
    .string()
    .regex(/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/, 'must be a UUID')
    .transform((value) => value.toLowerCase())
    .describe("The job's id"),
});
const tenantParams = z.object({ tenantId: tenantIdSchema });

const jobFields = {
  id: z.string().meta({ format: 'uuid' }),
  tenant_id: z.string(),
  name: z.string(),
  params: z.record(z.string(), z.unknown()),
  ttl_s: z.number().int(),
  response_timeout_s: z.number().int().nullable(),
  target: z
    .union([z.object({ labels: z.record(z.string(), z.string()) }), z.object({ device_ids: z.number().int().describe('How many ids were given') })])
    .describe('What the job addresses'),
  max_per_second: z.number().int(),
  state: z
    .enum(['preparing', 'running', 'completed', 'canceled'])
    .describe('`running` until every target has its outcome (its command finished, or none could be made); `canceled` once canceled'),
  reason: z.string().nullable().describe('Why a job is canceled: `canceled`, `creation_failed` or `creation_interrupted`'),
  total: z.number().int().describe('Devices addressed: the targets listed when the job was created'),
  created_at: iso,
  updated_at: iso,
  finished_at: iso.nullable(),
};

export const commandJobSchema = z.object(jobFields).meta({ id: 'CommandJob' });

const countsSchema = z
  .object(Object.fromEntries([...COMMAND_STATES, 'scheduled', 'deleted'].map((state) => [state, z.number().int()])) as Record<string, z.ZodNumber>)
  .describe(
    "Every target once, so they add up to `total`: by its command's state, `scheduled` before its command is made, `deleted` when its command went with its device; targets that never got a command count as `failed` (see `failures`) or `canceled`",
  );

export const commandJobDetailSchema = z
  .object({
    ...jobFields,
    counts: countsSchema,
    failures: z
      .object({ pending_limit: z.number().int().optional(), device_disabled: z.number().int().optional(), device_deleted: z.number().int().optional() })
      .describe('Targets that got no command, by why: the device had `COMMANDS_MAX_PENDING_PER_DEVICE` unfinished commands, was disabled, or was deleted'),
  })
  .meta({ id: 'CommandJobDetail' });

const NOT_FOUND = "No such tenant or job, or not the token's tenant";

export const commandJobRoutes: FastifyPluginAsync<{ jobs: CommandJobService }> = async (app, { jobs }) => {
  const routes = app.withTypeProvider<ZodTypeProvider>();

  routes.post(
    '/v1/tenants/:tenantId/command-jobs',
    {
      bodyLimit: JOB_BODY_LIMIT,
      schema: {
        tags: ['commands'],
        operationId: 'createCommandJob',
        summary: 'Send one command to many devices (202 with the job)',
        description: `Makes one ordinary command per device it addresses (each in that device's command list with \`job_id\`, and on \`commands.status.{tenant}\`), at most \`max_per_second\` a second across every replica. The devices are those listed in \`target.device_ids\` (up to ${MAX_JOB_DEVICE_IDS.toLocaleString('en')}, each a device of the tenant), or those of the tenant carrying every label of \`target.labels\` when the job is created. A device at its pending limit, disabled or deleted by the time its command is made gets none and counts as \`failed\`.`,
        params: tenantParams,
        body: z
          .strictObject({
            ...commandRequestFields,
            target: z.union([
              z.strictObject({ device_ids: z.array(deviceIdSchema).min(1).max(MAX_JOB_DEVICE_IDS) }),
              z.strictObject({ labels: deviceLabelsSchema.refine((labels) => Object.keys(labels).length > 0, 'at least one label') }),
            ]),
            max_per_second: z.number().int().min(1).max(10_000).optional().describe('Commands made per second, at most').meta({ default: DEFAULT_MAX_PER_SECOND }),
          })
          .meta({ examples: [{ name: 'update-firmware', params: { version: '2.4.1' }, ttl_s: 3600, target: { labels: { site: 'berlin' } }, max_per_second: 200 }] }),
        response: { 202: commandJobDetailSchema },
        answers: {
          202: 'The job, running (or completed when nothing matched)',
          400: 'The body is not valid, or a device id is given twice or is not a device of the tenant (`unknown_devices`, named in the message)',
          404: "No such tenant, or not the token's",
          413: 'The body is over 8 MiB',
        },
      },
    },
    async (request, reply) => reply.code(202).send(await jobs.create(request.actor, request.params.tenantId, request.body)),
  );

  routes.get(
    '/v1/tenants/:tenantId/command-jobs',
    {
      schema: {
        tags: ['commands'],
        operationId: 'listCommandJobs',
        summary: "List the tenant's command jobs",
        description: 'In creation order, without their counts (`GET …/command-jobs/{jobId}` has them).',
        params: tenantParams,
        querystring: pageQuerySchema,
        response: { 200: pageSchema(commandJobSchema) },
        answers: { 200: 'A page of jobs', 404: "No such tenant, or not the token's" },
      },
    },
    async (request) => jobs.list(request.actor, request.params.tenantId, request.query),
  );

  routes.get(
    '/v1/tenants/:tenantId/command-jobs/:jobId',
    {
      schema: {
        tags: ['commands'],
        operationId: 'getCommandJob',
        summary: 'Get a command job with its counts',
        params: jobParams,
        response: { 200: commandJobDetailSchema },
        answers: { 200: 'The job', 404: NOT_FOUND },
      },
    },
    async (request) => jobs.get(request.actor, request.params.tenantId, request.params.jobId),
  );

  routes.post(
    '/v1/tenants/:tenantId/command-jobs/:jobId/cancel',
    {
      schema: {
        tags: ['commands'],
        operationId: 'cancelCommandJob',
        summary: 'Cancel what EMQX has not taken of a job',
        description:
          'Targets without a command get none, and every command of the job that EMQX has not been handed is canceled; a publish under way is waited for (a few seconds) and its command canceled if EMQX did not take it. Commands EMQX took go on. Canceling a finished job changes nothing.',
        params: jobParams,
        body: optionalBody(z.strictObject({})),
        response: { 200: commandJobDetailSchema },
        answers: { 200: 'The job, canceled', 404: NOT_FOUND, 409: 'The job is still being created (`command_job_preparing`)' },
      },
    },
    async (request) => jobs.cancel(request.actor, request.params.tenantId, request.params.jobId),
  );
};
