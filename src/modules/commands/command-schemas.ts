import { z } from 'zod';
import { COMMAND_STATES } from '../../lib/command-states.js';

/** Largest `params` object, as JSON in UTF-8. */
export const MAX_PARAMS_BYTES = 64 * 1024;
export const DEFAULT_TTL_S = 3600;
export const DEFAULT_RESPONSE_TIMEOUT_S = 60;

export const commandNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'must be 1-64 characters of A-Z, a-z, 0-9, "_", ".", ":" and "-"');

export const commandParamsSchema = z
  .record(z.string(), z.unknown())
  .refine((params) => Buffer.byteLength(JSON.stringify(params), 'utf8') <= MAX_PARAMS_BYTES, 'must be at most 64 KiB as JSON');

export const ttlSchema = z.number().int().min(10).max(604_800);
export const responseTimeoutSchema = z.number().int().min(1).max(86_400);
export const commandStateSchema = z.enum(COMMAND_STATES);

/** What a command request asks for, from the REST API or from Kafka. */
export const commandRequestFields = {
  name: commandNameSchema,
  params: commandParamsSchema.optional(),
  ttl_s: ttlSchema.optional(),
  response_timeout_s: responseTimeoutSchema.optional(),
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
