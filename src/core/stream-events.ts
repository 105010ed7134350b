import type { Readable } from 'node:stream';

/** Handlers for a readable's data, end and error events. */
export interface StreamHandlers {
  data(chunk: Buffer): void;
  end(): void;
  error(err: Error): void;
}

/**
 * Listens to `stream`'s data, end and error with `handlers` until one of end or error comes, or
 * until the returned function is called; either way every listener is removed.
 */
export function followStream(stream: Readable, handlers: StreamHandlers): () => void {
  const onEnd = () => {
    stop();
    handlers.end();
  };
  const onError = (err: Error) => {
    stop();
    handlers.error(err);
  };
  const onData = (chunk: Buffer) => handlers.data(chunk);
  const stop = () => {
    stream.off('data', onData);
    stream.off('end', onEnd);
    stream.off('error', onError);
  };
  stream.on('data', onData);
  stream.once('end', onEnd);
  stream.once('error', onError);
  return stop;
}
