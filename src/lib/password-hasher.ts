import argon2 from 'argon2';

export interface Argon2Params {
  readonly memoryKib: number;
  readonly timeCost: number;
  readonly parallelism: number;
}

export interface PasswordHasher {
  hash(secret: string): Promise<string>;
  /** False for a mismatch and for a malformed stored hash; never throws on a wrong secret. */
  verify(storedHash: string, secret: string): Promise<boolean>;
}

/** argon2id with the configured cost. Verification reads the cost from the stored hash. */
export function createPasswordHasher(params: Argon2Params): PasswordHasher {
  return {
    hash: (secret) =>
      argon2.hash(secret, {
        type: argon2.argon2id,
        memoryCost: params.memoryKib,
        timeCost: params.timeCost,
        parallelism: params.parallelism,
      }),
    async verify(storedHash, secret) {
      try {
        return await argon2.verify(storedHash, secret);
      } catch {
        return false;
      }
    },
  };
}
