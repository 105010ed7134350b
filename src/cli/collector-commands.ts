import path from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { IsthmusError } from '../core/errors.js';
import { parseDurationMs } from '../core/units.js';
import { TelemetrySettings } from '../model/settings.js';
import type { CommandContext } from './context.js';

/** `isthmus collector`: the telemetry collector of a region, or the global one (docs/collector.md). */

const REGION_RE = /^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$/;

function hostPort(text: string): string {
  if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(text) || Number(text.split(':').pop()) > 65535)
    throw new InvalidArgumentError(`"${text}" is not HOST:PORT`);
  return text;
}

function httpUrl(text: string): string {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new InvalidArgumentError(`"${text}" is not a URL (e.g. http://127.0.0.1:4318)`);
  }
  if (u.protocol !== 'http:') throw new InvalidArgumentError(`"${text}" must be an http:// URL`);
  return text;
}

function regionList(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const m = /^([^=]+)=(.+)$/.exec(part);
    if (!m || !REGION_RE.test(m[1] as string))
      throw new InvalidArgumentError(`"${part}" is not REGION=URL (e.g. eu-west=http://10.0.0.5:4318)`);
    out[m[1] as string] = httpUrl(m[2] as string);
  }
  if (Object.keys(out).length === 0) throw new InvalidArgumentError('give at least one REGION=URL');
  return out;
}

function duration(text: string): number {
  try {
    return parseDurationMs(text);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

function fieldList(text: string): string[] {
  const fields = text
    .split(',')
    .map((f) => f.trim())
    .filter(Boolean);
  for (const f of fields)
    if (!/^[A-Za-z][A-Za-z0-9_.]*$/.test(f)) throw new InvalidArgumentError(`"${f}" is not a field name`);
  return fields;
}

const DEFAULT_ALLOWED_OUT = TelemetrySettings.properties.residency.properties.logFieldsAllowedOut
  .default as readonly string[];

export function addCollectorCommands(program: Command, ctx: CommandContext): void {
  const log = (event: Record<string, unknown>) => ctx.out(JSON.stringify(event));
  program
    .command('collector')
    .description('Run a telemetry collector: OTLP/HTTP JSON ingest, dedupe, continuity, forwarding, queries.')
    .requiredOption('--region <name>', 'the region this collector serves (or e.g. "global")')
    .requiredOption('--data-dir <dir>', 'where its store and forwarding log live (created if missing)')
    .option('--listen <host:port>', 'OTLP/HTTP and query API', hostPort, '127.0.0.1:4318')
    .option('--upstream <url>', 'collector to forward everything to (normally the global one)', httpUrl)
    .option('--regions <list>', 'region collectors to federate log searches to: name=URL,...', regionList)
    .option(
      '--heartbeat-interval <duration>',
      'sources heartbeat this often; silent for two is stale',
      duration,
      2_000,
    )
    .option(
      '--log-fields-allowed-out <fields>',
      `log fields allowed out of the region (default: ${DEFAULT_ALLOWED_OUT.join(',')})`,
      fieldList,
    )
    .option(
      '--federation-timeout <duration>',
      'how long a federated search waits for a region',
      duration,
      2_000,
    )
    .action(
      async (opts: {
        region: string;
        dataDir: string;
        listen: string;
        upstream?: string;
        regions?: Record<string, string>;
        heartbeatInterval: number;
        logFieldsAllowedOut?: string[];
        federationTimeout: number;
      }) => {
        if (!REGION_RE.test(opts.region))
          throw new IsthmusError(
            'ISTHMUS_E_USAGE',
            `--region "${opts.region}" is not a region name (lowercase letters, digits, -)`,
          );
        const { Collector } = await import('../controlplane/collector/collector.js');
        const collector = await Collector.start({
          region: opts.region,
          dataDir: path.resolve(opts.dataDir),
          listen: opts.listen,
          ...(opts.upstream !== undefined && { upstream: opts.upstream }),
          ...(opts.regions !== undefined && { regions: opts.regions }),
          heartbeatIntervalMs: opts.heartbeatInterval,
          logFieldsAllowedOut: opts.logFieldsAllowedOut ?? DEFAULT_ALLOWED_OUT,
          federationTimeoutMs: opts.federationTimeout,
          log,
        });
        log({
          event: 'ready',
          role: 'collector',
          region: opts.region,
          address: collector.address,
          upstream: opts.upstream ?? null,
          regions: opts.regions ?? null,
        });
        await ctx.runUntilSignal(() => collector.close(), log);
      },
    );
}
