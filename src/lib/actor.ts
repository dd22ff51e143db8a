/** Who an admin bearer token stands for. */
export interface Principal {
  /** `root` for ADMIN_TOKEN, else the admin token's id. */
  readonly tokenId: string;
  /** The tenant a scoped token is limited to; null for global tokens. */
  readonly tenantId: string | null;
}

/** Who did something through the admin API, and from where (recorded in the audit log). */
export interface Actor extends Principal {
  /** The id the service gave the request. */
  readonly requestId: string;
  /** The client's own `x-request-id`, when it sent a usable one: recorded as the client's, never as the request's id. */
  readonly clientRequestId?: string | null;
  readonly sourceIp: string;
}
