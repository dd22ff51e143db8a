import type { Queryable } from '../../infra/transaction.js';
import type { CredentialChange } from '../../lib/credential-change.js';
import type { ChangeRepository } from './change-repository.js';

/** What to do once the transaction that recorded a change has committed. Never rejects. */
export type AfterCommit = () => Promise<void>;

/** What this replica does after every commit of changes. Never rejects. */
export type OnCommitted = (changes: readonly CredentialChange[]) => Promise<void>;

export interface ChangeRecorder {
  /**
   * Inside the change's transaction, after the device rows it touches are
   * locked: appends the changes to the log with what must follow them.
   * Resolves with what the caller runs after its commit.
   */
  record(db: Queryable, changes: readonly CredentialChange[]): Promise<AfterCommit>;
}

/**
 * The registry's side of the change log. `inTransaction` is where other
 * features take their part of the same transaction (a deleted device's
 * commands end with it); `afterCommit` lets this replica apply the change and
 * start its effects at once rather than at its next read of the log.
 */
export function createChangeRecorder(deps: {
  repository: Pick<ChangeRepository, 'record'>;
  kickDelayMs: number;
  inTransaction?: (db: Queryable, changes: readonly CredentialChange[]) => Promise<AfterCommit>;
  afterCommit: OnCommitted;
}): ChangeRecorder {
  return {
    async record(db, changes) {
      await deps.repository.record(db, changes, { kickDelayMs: deps.kickDelayMs });
      const alsoAfter = deps.inTransaction ? await deps.inTransaction(db, changes) : null;
      return async () => {
        await Promise.all([deps.afterCommit(changes), alsoAfter?.()]);
      };
    },
  };
}
