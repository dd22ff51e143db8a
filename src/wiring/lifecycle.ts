import type { FastifyBaseLogger } from 'fastify';

type Step = () => unknown;

/**
 * Where a feature's wiring says what its background work does as the app
 * starts and stops. Each phase runs all of its steps at once: no feature
 * waits for another's, and one that fails keeps none of the others from
 * running.
 */
export interface LifecycleRegistrar {
  /** Once the app is ready: starts background work. The app is ready only when every step has ended, so long work goes on in the background. */
  onReady(start: Step): void;
  /** As the app starts closing, before the clients close: stops background work and waits for what is under way. */
  preClose(stop: Step): void;
  /** After the last request has been answered, before the clients close: writes what is still pending. */
  onClose(flush: Step): void;
}

export type LifecyclePhase = keyof LifecycleRegistrar;

export interface Lifecycle extends LifecycleRegistrar {
  /** Runs every step of the phase at once; once all have ended, rejects with the first failure (each is logged). */
  run(phase: LifecyclePhase): Promise<void>;
}

/** The app runs each phase from its Fastify hook of the same name (src/app.ts). */
export function createLifecycle(log: Pick<FastifyBaseLogger, 'error'>): Lifecycle {
  const steps: Record<LifecyclePhase, Step[]> = { onReady: [], preClose: [], onClose: [] };
  return {
    onReady: (start) => void steps.onReady.push(start),
    preClose: (stop) => void steps.preClose.push(stop),
    onClose: (flush) => void steps.onClose.push(flush),
    async run(phase) {
      // A step that throws synchronously is a failure like a rejection, not the end of the phase.
      const results = await Promise.allSettled(steps[phase].map(async (step) => step()));
      const failures = results.filter((result) => result.status === 'rejected').map((result) => result.reason as unknown);
      for (const error of failures) log.error({ err: error, phase }, 'lifecycle step failed');
      if (failures.length > 0) throw failures[0];
    },
  };
}
