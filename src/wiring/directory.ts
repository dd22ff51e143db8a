import { createBatchLoader } from '../lib/batch-loader.js';
import { createDeviceDirectory } from '../modules/devices/device-directory.js';
import { createDeviceRepository } from '../modules/devices/device-repository.js';
import type { WiringContext } from './context.js';

/** The devices the hot paths ask about, cached in memory: one per process, shared by every feature. */
export function wireDirectory({ infra, clock }: WiringContext) {
  const devices = createDeviceRepository();
  const load = createBatchLoader((ids) => devices.findRecords(infra.postgres.pool, ids));
  return createDeviceDirectory({ load, clock });
}
