export interface DependencyLogger {
  warn(object: object, message: string): void;
  info(object: object, message: string): void;
}

export interface DependencyState {
  readonly name: string;
  isUp(): boolean;
  /** Records a failure; logs only on the transition from up to down. */
  down(error: unknown, context?: object): void;
  /** Records success; logs only on the transition from down to up. */
  up(): void;
}

/**
 * Tracks whether a dependency is reachable so that an outage is logged once,
 * with context, instead of once per request that runs into it.
 */
export function createDependencyState(name: string, logger: DependencyLogger): DependencyState {
  let up = true;
  let downSince = 0;
  return {
    name,
    isUp: () => up,
    down(error, context) {
      if (!up) return;
      up = false;
      downSince = Date.now();
      const message = error instanceof Error ? error.message : String(error);
      logger.warn({ dependency: name, err: message, ...context }, `${name} unavailable`);
    },
    up() {
      if (up) return;
      up = true;
      logger.info({ dependency: name, downForMs: Date.now() - downSince }, `${name} available again`);
    },
  };
}
