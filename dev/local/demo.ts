import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

export interface DemoDevice {
  readonly tenantId: string;
  readonly deviceId: string;
  /** The device's API key: the admin API shows it once, so it is kept here for the printed commands. */
  readonly key: string;
}

const TENANT_ID = 'demo';

/**
 * A demo tenant, device and key, created through the admin API on the first
 * run and kept in `.local/demo.json`. Created again when the device is gone
 * (another database, or deleted).
 */
export async function ensureDemoDevice(options: { serviceUrl: string; adminToken: string; directory: string }): Promise<{ demo: DemoDevice; created: boolean }> {
  const file = path.join(options.directory, 'demo.json');
  const call = async (method: string, route: string, body?: object) => {
    const response = await fetch(new URL(route, options.serviceUrl), {
      method,
      headers: { authorization: `Bearer ${options.adminToken}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    const text = await response.text();
    return { status: response.status, body: (text ? JSON.parse(text) : null) as Record<string, unknown> | null, text };
  };

  try {
    const stored = JSON.parse(await readFile(file, 'utf8')) as DemoDevice;
    if ((await call('GET', `/v1/devices/${encodeURIComponent(stored.deviceId)}`)).status === 200) return { demo: stored, created: false };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT' && !(error instanceof SyntaxError)) throw error;
  }

  const tenant = await call('POST', '/v1/tenants', { id: TENANT_ID, name: 'Demo' });
  // 409: the tenant is left from an earlier run.
  if (tenant.status !== 201 && tenant.status !== 409) throw new Error(`creating the demo tenant: ${tenant.status} ${tenant.text}`);
  const device = await call('POST', `/v1/tenants/${TENANT_ID}/devices`, { name: 'boiler-1' });
  if (device.status !== 201 || typeof device.body?.id !== 'string') throw new Error(`creating the demo device: ${device.status} ${device.text}`);
  const deviceId = device.body.id;
  const key = await call('POST', `/v1/devices/${deviceId}/keys`, { label: 'npm run local' });
  if (key.status !== 201 || typeof key.body?.key !== 'string') throw new Error(`issuing the demo key: ${key.status} ${key.text}`);

  const demo: DemoDevice = { tenantId: TENANT_ID, deviceId, key: key.body.key };
  await mkdir(options.directory, { recursive: true, mode: 0o700 });
  await writeFile(file, `${JSON.stringify(demo, null, 2)}\n`, { mode: 0o600 });
  return { demo, created: true };
}
