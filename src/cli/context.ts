import type { ValidationResult } from '../model/validate.js';
import type { Styler } from './format.js';

/** Exit codes: 0 success, 1 the input has problems, 2 the command line is wrong, 70 a bug. */
export const EXIT = { ok: 0, problems: 1, usage: 2, internal: 70 } as const;

/** Thrown by a command to end with a given exit code (after printing what it had to say). */
export class Exit extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

/** What every command module gets from the program: output, styling and shared steps. */
export interface CommandContext {
  out: (text: string) => void;
  err: (text: string) => void;
  /** Stylers for stdout and stderr (colour only on terminals). */
  so: Styler;
  se: Styler;
  /** Validates resource paths, printing every diagnostic; exits 1 on errors. */
  loadOrExit: (paths: string[], label: string) => Promise<ValidationResult>;
  /** Runs until SIGINT/SIGTERM, then calls `stop`. */
  runUntilSignal: (stop: () => Promise<void>, log: (e: Record<string, unknown>) => void) => Promise<void>;
}
