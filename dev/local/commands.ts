/** The product page's example telemetry. */
export const PRODUCT_PAGE_PAYLOAD = '{"temperature":22.5,"humidity":65,"state":"running"}';
const COMMAND = '{"name":"reboot","params":{"delay_s":5}}';

/** A word the shell reads as it is, quoted when it has to be. */
function shellWord(word: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(word) ? word : `'${word.replaceAll("'", `'"'"'`)}'`;
}

export interface DeviceCommands {
  /** The product page's command: over TLS, the server verified with the CA. */
  readonly publishTls: string;
  readonly subscribeTls: string;
  /** The same in plain MQTT, for local tries only (the key crosses in clear text). */
  readonly publishPlain: string;
  readonly subscribePlain: string;
  readonly status: string;
  readonly sendCommand: string;
}

/**
 * What a device and its owner type, with real values: the `mosquitto_pub` /
 * `mosquitto_sub` lines of the product page, the status `curl` and a `curl`
 * that sends the device a command. `npm run local` prints these, and the
 * end-to-end test runs the TLS line as printed.
 */
export function deviceCommands(options: {
  readonly host: string;
  readonly mqttPort: number;
  readonly mqttsPort: number;
  readonly caFile: string;
  readonly deviceId: string;
  readonly key: string;
  readonly serviceUrl: string;
  readonly adminToken: string;
}): DeviceCommands {
  const device = shellWord(options.deviceId);
  const login = `-i ${device} -u ${device} -P ${shellWord(options.key)}`;
  const tls = `--cafile ${shellWord(options.caFile)} -h ${options.host} -p ${options.mqttsPort} ${login}`;
  const plain = `-h ${options.host} -p ${options.mqttPort} ${login}`;
  const telemetry = `-t devices/${device}/telemetry -m '${PRODUCT_PAGE_PAYLOAD}'`;
  const commands = `-q 1 -t devices/${device}/commands`;
  const auth = `-H 'authorization: Bearer ${options.adminToken}'`;
  return {
    publishTls: `mosquitto_pub ${tls} ${telemetry}`,
    subscribeTls: `mosquitto_sub ${tls} ${commands}`,
    publishPlain: `mosquitto_pub ${plain} ${telemetry}`,
    subscribePlain: `mosquitto_sub ${plain} ${commands}`,
    status: `curl -sS ${options.serviceUrl}/v1/devices/${device}/status ${auth}`,
    sendCommand: `curl -sS ${options.serviceUrl}/v1/devices/${device}/commands ${auth} \\\n    -H 'content-type: application/json' -d '${COMMAND}'`,
  };
}
