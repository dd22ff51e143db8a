import { z } from 'zod';
import { DEVICE_ID_PATTERN, TENANT_ID_PATTERN } from '../lib/identifiers.js';

/** Device ids: any-case UUID accepted, stored and answered in canonical lowercase. */
export const deviceIdSchema = z
  .string()
  .regex(/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/, 'must be a UUID')
  .transform((value) => value.toLowerCase())
  .pipe(z.string().regex(DEVICE_ID_PATTERN));

export const deviceParams = z.object({ deviceId: deviceIdSchema.describe('The device id: a UUID, in any case') });

export const tenantIdSchema = z
  .string()
  .regex(TENANT_ID_PATTERN, 'must be 1-63 characters of a-z, 0-9, "_" and "-", starting with a letter or digit')
  .meta({ examples: ['acme'] });

export const labelSchema = z.string().trim().min(1).max(200);

export const CURSOR_DESCRIPTION = "The previous page's `next_cursor`; any other value is 400";

export const pageQuerySchema = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(50).describe('Most items on the page'),
  cursor: z.string().min(1).max(512).optional().describe(CURSOR_DESCRIPTION),
});

/** An ISO 8601 time as the service writes it (`toISOString()`); not checked on the way out. */
export const isoTimestamp = z.string().meta({ format: 'date-time' });

export function pageSchema<T extends z.ZodType>(item: T) {
  return z.object({
    items: z.array(item),
    next_cursor: z.string().nullable().describe('Pass it as `cursor` for the next page; null on the last one'),
  });
}

/** A body that may be left out entirely (fastify then passes null): treated as `{}`. */
export function optionalBody<T extends z.ZodType>(schema: T) {
  return z.preprocess((value) => value ?? {}, schema);
}
