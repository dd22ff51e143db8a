/** Where the simulation says what it does: one line per connect, refusal, event problem. */
export interface SimLog {
  info(message: string): void;
  warn(message: string): void;
}

/** Lines on the console, each prefixed with what printed it. */
export function consoleLog(prefix: string): SimLog {
  return {
    info: (message) => console.log(`${prefix} ${message}`),
    warn: (message) => console.warn(`${prefix} ${message}`),
  };
}

/** Drops every line (tests). */
export const silentLog: SimLog = { info: () => undefined, warn: () => undefined };
