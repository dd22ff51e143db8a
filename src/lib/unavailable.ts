import { TimeoutError } from './with-timeout.js';

/** Network errors of a dependency that is down, unreachable or restarting. */
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH']);

/**
 * PostgreSQL conditions that pass: class 08 (connection exception), 53300
 * (too many connections), 57P01-57P03 (shutting down, crashed, not accepting
 * connections yet), 57014 (the statement timed out).
 */
const POSTGRES_TRANSIENT = /^(08...|53300|57P0[123]|57014)$/;

/** What pg and ioredis say when they cannot reach their server, or gave up waiting for it. */
const UNAVAILABLE_MESSAGES = [
  'timeout exceeded when trying to connect',
  'Connection terminated',
  // pg, on a client whose connection was lost between two of its queries.
  'Client has encountered a connection error and is not queryable',
  'Connection is closed',
  'connect ECONNREFUSED',
  'Reached the max retries per request limit',
  "Stream isn't writeable",
  // ioredis, when a command outlived its timeout, and on a cluster or behind
  // Sentinels when no node, or no Sentinel, could be reached.
  'Command timed out',
  'Too many Cluster redirections',
  'None of startup nodes is available',
  'CLUSTERDOWN',
  'All sentinels are unreachable',
];

/**
 * Whether an error says a dependency (Postgres, Redis, Kafka) is unavailable
 * for now rather than that the request or the code is wrong: such a request
 * may succeed later, so it is answered 503, not 500. Looks through causes.
 */
export function isUnavailable(error: unknown): boolean {
  for (let current = error, depth = 0; current instanceof Error && depth < 5; current = current.cause, depth++) {
    if (current instanceof TimeoutError) return true;
    const { code } = current as { code?: unknown };
    if (typeof code === 'string' && (NETWORK_CODES.has(code) || POSTGRES_TRANSIENT.test(code))) return true;
    if (UNAVAILABLE_MESSAGES.some((text) => current instanceof Error && current.message.includes(text))) return true;
    if (current.name === 'MaxRetriesPerRequestError') return true;
  }
  return false;
}
