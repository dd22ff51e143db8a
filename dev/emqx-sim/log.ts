/** Where the development broker says what it does: one line per connect, refusal, event problem. */
export interface BrokerLog {
  info(message: string): void;
  warn(message: string): void;
}

/** Lines on the console, each prefixed with what printed it. */
export function consoleLog(prefix: string): BrokerLog {
  return {
    info: (message) => console.log(`${prefix} ${message}`),
    warn: (message) => console.warn(`${prefix} ${message}`),
  };
}

/** Drops every line (tests). */
export const silentBrokerLog: BrokerLog = { info: () => undefined, warn: () => undefined };
