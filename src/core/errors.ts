/**
 * Every error Isthmus raises on purpose carries a stable code. Codes are part of the public
 * surface: they are documented in docs/errors.md and a test keeps that page and this table in step.
 */
export const ErrorCodes = {
  ISTHMUS_E_USAGE: 'A command was called with missing or invalid arguments or flags.',
  ISTHMUS_E_IO: 'A file or directory could not be read or written.',
  ISTHMUS_E_YAML: 'A file is not well-formed YAML.',
  ISTHMUS_E_INVALID_RESOURCE: 'A mesh resource failed validation; the message names the field and the fix.',
  ISTHMUS_E_INVALID_VALUE: 'A value (duration, size, ratio, locality) could not be parsed.',
  ISTHMUS_E_NOT_FOUND: 'A named resource, service or route does not exist.',
  ISTHMUS_E_SHED: 'A per-destination limit shed a request (queue full or timed out); answered 503.',
  ISTHMUS_E_ABORTED: 'A request was cancelled by its caller (its AbortSignal fired) while it waited.',
  ISTHMUS_E_BAD_HEADER: 'A header Isthmus reads (deadline, Idempotency-Key) is malformed; answered 400.',
  ISTHMUS_E_STORE:
    'The control-plane store cannot be used: file in use or corrupt, etcd unreachable or refusing.',
  ISTHMUS_E_PROTOCOL:
    'A control-plane peer sent a message that is malformed, out of order or of an unsupported protocol version.',
  ISTHMUS_E_NOT_LEADER:
    'A write reached a global control plane that does not lead; the answer names the leader.',
  ISTHMUS_E_CONFLICT: 'An apply or rollback was based on a revision that is no longer the latest.',
  ISTHMUS_E_CORRUPT:
    'A state file Isthmus wrote (the last-known-good snapshot) is truncated, fails its checksum or is in an unknown format.',
  ISTHMUS_E_WAL_FULL:
    'The telemetry write-ahead log is at maxBytes and an append could not be admitted (whenFull: block timed out, or nothing could be dropped).',
  ISTHMUS_E_EXISTS:
    'A named resource to create already exists (a link emulator proxy or toxic); answered 409.',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

/** Base class of deliberate errors: `code` is stable, `message` names the input and the fix. */
export class IsthmusError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'IsthmusError';
    this.code = code;
  }
}

/** True for errors that describe a user mistake rather than a bug (printed without a stack). */
export function isIsthmusError(err: unknown): err is IsthmusError {
  return err instanceof IsthmusError;
}
