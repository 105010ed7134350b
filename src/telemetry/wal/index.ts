export {
  WriteAheadLog,
  type WalAppend,
  type WalDrop,
  type WalFullPolicy,
  type ReadOptions,
  type WalOptions,
  type WalRecord,
  type WalStats,
} from './wal.js';
export type { WalLoss, WalRecovery } from './recovery.js';
