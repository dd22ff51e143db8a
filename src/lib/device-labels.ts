import { z } from 'zod';

/**
 * Labels: up to 32 key → value pairs an operator sets on a device to find and
 * address groups of devices (`site=berlin`, `model=tx-40`).
 */
export type DeviceLabels = Readonly<Record<string, string>>;

export const MAX_LABELS = 32;
export const LABEL_KEY_PATTERN = /^[a-z0-9][a-z0-9._/-]{0,62}$/;
const LABEL_VALUE_MAX = 128;

const labelKeySchema = z
  .string()
  .regex(LABEL_KEY_PATTERN, 'a label key is 1-63 characters of a-z, 0-9, ".", "_", "/" and "-", starting with a letter or digit');
const labelValueSchema = z.string().max(LABEL_VALUE_MAX, `a label value is at most ${LABEL_VALUE_MAX} characters`);

export const deviceLabelsSchema = z
  .record(labelKeySchema, labelValueSchema)
  .refine((labels) => Object.keys(labels).length <= MAX_LABELS, `at most ${MAX_LABELS} labels`)
  .describe(`Up to ${MAX_LABELS} key → value pairs; keys match \`${LABEL_KEY_PATTERN.source}\`, values are at most ${LABEL_VALUE_MAX} characters`)
  .meta({ maxProperties: MAX_LABELS, examples: [{ site: 'berlin', model: 'tx-40' }] });

/**
 * `label=key=value` query parameters (repeatable) as the labels a device must
 * all carry; null when one key is asked for with two values, which no device
 * can match.
 */
export const labelSelectorSchema = z
  .union([z.string(), z.array(z.string())])
  .transform((value, context): DeviceLabels | null => {
    const wanted = new Map<string, string>();
    let contradictory = false;
    for (const term of Array.isArray(value) ? value : [value]) {
      const split = term.indexOf('=');
      const key = term.slice(0, split);
      const wantedValue = term.slice(split + 1);
      if (split < 0 || !LABEL_KEY_PATTERN.test(key) || wantedValue.length > LABEL_VALUE_MAX) {
        context.addIssue({
          code: 'custom',
          message: `"${term.slice(0, 80)}" is not key=value with a label key and a value of at most ${LABEL_VALUE_MAX} characters`,
        });
        return z.NEVER;
      }
      if (wanted.has(key) && wanted.get(key) !== wantedValue) contradictory = true;
      wanted.set(key, wantedValue);
    }
    return contradictory ? null : Object.fromEntries(wanted);
  });
