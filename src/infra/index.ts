import { createEmqxApi, type EmqxApi, type EmqxApiOptions } from './emqx-api.js';
import { createKafka, type KafkaClient, type KafkaLogger, type KafkaOptions } from './kafka.js';
import { createPostgres, type PostgresClient } from './postgres.js';
import { createRedis, type RedisClient, type RedisSettings } from './redis.js';

export interface Infra {
  readonly postgres: PostgresClient;
  readonly redis: RedisClient;
  readonly kafka: KafkaClient;
  readonly emqx: EmqxApi;
}

/** The parts of the configuration the clients are made from. */
export interface InfraOptions {
  readonly postgres: { readonly url: string; readonly poolMax: number };
  readonly redis: RedisSettings;
  readonly kafka: KafkaOptions;
  readonly emqx: EmqxApiOptions;
}

export function createInfra(config: InfraOptions, logger: KafkaLogger): Infra {
  return {
    postgres: createPostgres(config.postgres, logger),
    redis: createRedis(config.redis, logger),
    kafka: createKafka(config.kafka, logger),
    emqx: createEmqxApi(config.emqx),
  };
}

/** Kafka first: its producer flushes while the pools it may still need are open. */
export async function closeInfra(infra: Infra): Promise<void> {
  await infra.kafka.close();
  await Promise.allSettled([infra.postgres.close(), infra.redis.close()]);
}
