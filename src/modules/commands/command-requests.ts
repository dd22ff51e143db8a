import type { ConsumedRecord } from '../../infra/kafka-consumer.js';
import type { KafkaClient } from '../../infra/kafka.js';
import type { Clock } from '../../lib/clock.js';
import type { TopicNames } from '../../lib/topics.js';
import type { CommandMetrics } from './command-metrics.js';
import { commandRequestRecordSchema } from './command-schemas.js';
import { CommandRequestRefused, type CommandService, type RefusalReason } from './command-service.js';

/** The original value kept in a dead letter, at most this many bytes. */
const MAX_KEPT_VALUE_BYTES = 256 * 1024;

/** One record of `commands.dlq.{tenant_id}`: a request that did not become a command, and why. */
export interface CommandDeadLetter {
  readonly reason: RefusalReason;
  readonly detail: string;
  readonly tenant_id: string;
  readonly source: { readonly topic: string; readonly partition: number; readonly offset: string };
  readonly key: string | null;
  /** The request as it was, base64 (it may not even be text). */
  readonly value_base64: string;
  readonly value_truncated: boolean;
  readonly dead_lettered_at: string;
}

/**
 * Command requests from other services, one record of `commands.{tenant}` at
 * a time: `{command_id?, device_id, name, params?, ttl_s?, response_timeout_s?}`
 * keyed by the device id. Each becomes a command exactly as over REST, the
 * `command_id` being the idempotency key (a redelivered record finds the
 * command it created). A record that can never become one — not JSON, not
 * valid, for a device of another tenant — goes to `commands.dlq.{tenant}`
 * with the reason. The returned promise rejects only for what may work later
 * (Postgres or Kafka unavailable), and the consumer then tries the record again.
 */
export function createCommandRequestHandler(deps: {
  service: Pick<CommandService, 'createFromRequest'>;
  topics: Pick<TopicNames, 'commandRequestsTenant' | 'commandDlq'>;
  produce: KafkaClient['produce'];
  metrics: Pick<CommandMetrics, 'deadLettered'>;
  clock: Clock;
  produceTimeoutMs: number;
}) {
  async function deadLetter(record: ConsumedRecord, tenantId: string, refusal: CommandRequestRefused) {
    const value = record.value ?? Buffer.alloc(0);
    const letter: CommandDeadLetter = {
      reason: refusal.reason,
      detail: refusal.message.slice(0, 1000),
      tenant_id: tenantId,
      source: { topic: record.topic, partition: record.partition, offset: record.offset },
      key: record.key?.toString('utf8') ?? null,
      value_base64: value.subarray(0, MAX_KEPT_VALUE_BYTES).toString('base64'),
      value_truncated: value.length > MAX_KEPT_VALUE_BYTES,
      dead_lettered_at: new Date(deps.clock()).toISOString(),
    };
    await deps.produce([{ topic: deps.topics.commandDlq(tenantId), messages: [{ key: record.key, value: JSON.stringify(letter) }] }], deps.produceTimeoutMs);
    deps.metrics.deadLettered(refusal.reason);
  }

  function parse(record: ConsumedRecord) {
    let json: unknown;
    try {
      json = JSON.parse(record.value?.toString('utf8') ?? '');
    } catch {
      throw new CommandRequestRefused('invalid_json', 'the record value is not JSON');
    }
    const parsed = commandRequestRecordSchema.safeParse(json);
    if (!parsed.success) {
      throw new CommandRequestRefused('invalid_request', parsed.error.issues.slice(0, 5).map((issue) => `${issue.path.map(String).join('.') || 'value'}: ${issue.message}`).join('; '));
    }
    const request = { ...parsed.data, device_id: parsed.data.device_id.toLowerCase() };
    const key = record.key?.toString('utf8');
    // The key decides the partition, and so the order of a device's requests.
    if (key !== undefined && key.toLowerCase() !== request.device_id) {
      throw new CommandRequestRefused('key_mismatch', `the record key ${key.slice(0, 64)} is not the device_id`);
    }
    return request;
  }

  return async function handle(record: ConsumedRecord): Promise<void> {
    const tenantId = deps.topics.commandRequestsTenant(record.topic);
    if (tenantId === null) return;
    try {
      const { command_id, device_id, ...input } = parse(record);
      await deps.service.createFromRequest(tenantId, device_id, input, command_id ?? null);
    } catch (error) {
      if (error instanceof CommandRequestRefused) return deadLetter(record, tenantId, error);
      throw error;
    }
  };
}
