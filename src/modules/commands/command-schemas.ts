import { z } from 'zod';
import { COMMAND_STATES } from '../../lib/command-states.js';

/** Largest `params` object, as JSON in UTF-8. */
export const MAX_PARAMS_BYTES = 64 * 1024;
export const DEFAULT_TTL_S = 3600;
export const DEFAULT_RESPONSE_TIMEOUT_S = 60;

export const commandNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'must be 1-64 characters of A-Z, a-z, 0-9, "_", ".", ":" and "-"')
  .meta({ id: 'CommandName', examples: ['reboot'] });

export const commandParamsSchema = z
  .record(z.string(), z.unknown())
  .refine((params) => Buffer.byteLength(JSON.stringify(params), 'utf8') <= MAX_PARAMS_BYTES, 'must be at most 64 KiB as JSON');

export const ttlSchema = z.number().int().min(10).max(604_800);
export const responseTimeoutSchema = z.number().int().min(1).max(86_400);
export const commandStateSchema = z.enum(COMMAND_STATES).meta({
  id: 'CommandState',
  description:
    'Forward only: queued → sent → delivered → acked. `acked` is final without replies; with replies it is followed by `succeeded`, `failed` or `timed_out`. Before the ack a command may end `expired` or `dropped`, and while queued `canceled`. A step can be skipped (events may come before the publish answer).',
});

/** What a command request asks for, from the REST API or from Kafka. */
export const commandRequestFields = {
  name: commandNameSchema,
  params: commandParamsSchema.optional().describe('At most 64 KiB as JSON. Never written to the audit log'),
  ttl_s: ttlSchema
    .optional()
    .describe('Seconds after its creation at which the command expires unless acked')
    .meta({ default: DEFAULT_TTL_S }),
  response_timeout_s: responseTimeoutSchema
    .optional()
    .describe('With `COMMAND_REPLIES=enabled` only (400 otherwise): how long after the ack a reply may take, in seconds, before the command is `timed_out`')
    .meta({ default: DEFAULT_RESPONSE_TIMEOUT_S }),
};

/** An Idempotency-Key header or a Kafka request's command_id. */
export const idempotencyKeySchema = z
  .string()
  .trim()
  .regex(/^[\x20-\x7e]{1,200}$/, 'must be 1-200 printable ASCII characters');

/**
 * A record of commands.{tenant} (key = device id). Fields other services add
 * that are not named here are ignored.
 */
export const commandRequestRecordSchema = z.object({
  command_id: idempotencyKeySchema.optional(),
  device_id: z.string().regex(/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/, 'must be a UUID'),
  ...commandRequestFields,
});

export type CommandRequestRecord = z.output<typeof commandRequestRecordSchema>;
