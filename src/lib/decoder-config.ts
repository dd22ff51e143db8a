import { z } from 'zod';

/**
 * A device's payload decoder, stored in devices.decoder (null = defaults) and
 * validated with this schema when set through the registry API.
 *  - type `json`: the payload is a JSON object of metric -> value.
 *  - timestamp: take the reading's time from a payload field (dotted path into
 *    nested objects) in seconds, milliseconds or ISO-8601; values outside a
 *    sane window fall back to the arrival time and are flagged.
 * Base64 is not a decoder setting: it is how the EMQX rule ships binary
 * payloads, marked on the event itself.
 */
export const decoderConfigSchema = z
  .object({
    type: z.literal('json').default('json'),
    timestamp: z
      .object({
        field: z
          .string()
          .min(1)
          .max(256)
          .regex(/^[^.]+(\.[^.]+)*$/, 'must be a field name or a dotted path')
          .describe('The payload field holding the reading time; a dotted path reaches into nested objects')
          .meta({ examples: ['ts'] }),
        unit: z.enum(['s', 'ms', 'iso8601']),
      })
      .strict()
      .optional()
      .describe("Where the reading's time is; the arrival time when left out"),
  })
  .strict()
  .meta({ id: 'Decoder', description: "How the device's payloads are read; null restores the defaults (a JSON object, the arrival time)." });

export type DecoderConfig = z.output<typeof decoderConfigSchema>;
