import { readFileSync } from 'node:fs';
import path from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { IsthmusError } from '../core/errors.js';
import { TelemetrySettings } from '../model/settings.js';
import { parseAlertRules, toPrometheusRules } from '../telemetry/alert-rules.js';
import type { AlertRule } from '../telemetry/alerts.js';
import type { CommandContext } from './context.js';
import { duration, hostPort, httpUrl, REGION_RE } from './options.js';

/** `isthmus collector`: the telemetry collector of a region, or the global one (docs/collector.md). */

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

function fieldList(text: string): string[] {
  const fields = text
    .split(',')
    .map((f) => f.trim())
    .filter(Boolean);
  for (const f of fields)
    if (!/^[A-Za-z][A-Za-z0-9_.]*$/.test(f)) throw new InvalidArgumentError(`"${f}" is not a field name`);
  return fields;
}

/** The default retention of `isthmus collector`, 7 days (a Collector started in code keeps all). */
const DEFAULT_RETENTION = '168h';
const MIN_RETENTION_MS = 60_000;

/**
 * `--retention`: a duration as for the other flags (no `d` unit: 7 days is `168h`), or `0` /
 * `forever` to keep everything. Anything under a minute is refused: items already older than the
 * window on arrival are not stored, so a typo like `7s` would silently drop nearly everything.
 */
function retention(text: string): number {
  if (text === '0' || text === 'forever') return 0;
  let ms: number;
  try {
    ms = duration(text);
  } catch {
    throw new InvalidArgumentError(
      `"${text}" is not a retention: write a duration in h, m or s (e.g. "168h" for 7 days, "12h", "30m"), or 0 / forever to keep everything`,
    );
  }
  if (ms !== 0 && ms < MIN_RETENTION_MS)
    throw new InvalidArgumentError(
      `"${text}" is too short a retention: at least 1m, or 0 / forever to keep everything`,
    );
  return ms;
}

const DEFAULT_ALLOWED_OUT = TelemetrySettings.properties.residency.properties.logFieldsAllowedOut
  .default as readonly string[];

/** Reads and validates an alert rules file; a bad file stops the command with the located error. */
function loadAlertRules(file: string): AlertRule[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new IsthmusError('ISTHMUS_E_IO', `cannot read --alert-rules ${file}: ${(err as Error).message}`);
  }
  return parseAlertRules(text, file);
}

export function addCollectorCommands(program: Command, ctx: CommandContext): void {
  const log = (event: Record<string, unknown>) => ctx.out(JSON.stringify(event));
  const collector = program
    .command('collector')
    .description('Run a telemetry collector: OTLP/HTTP JSON ingest, dedupe, continuity, forwarding, queries.')
    // Checked in the action rather than required here: commander would demand them of
    // `collector rules export` too.
    .option('--region <name>', 'the region this collector serves (or e.g. "global") (required)')
    .option('--data-dir <dir>', 'where its store and forwarding log live, created if missing (required)')
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
    .option(
      '--retention <duration>',
      `keep items this long by their original time, e.g. 12h; 0 or forever keeps all (default: ${DEFAULT_RETENTION})`,
      retention,
    )
    .option('--alert-rules <file>', 'YAML alert rules evaluated here (docs/collector.md#alerts)')
    .option('--alert-interval <duration>', 'how often alert rules are evaluated', duration, 10_000)
    .option('--alert-webhook <url>', 'receives each firing/resolved alert event as a JSON POST', httpUrl)
    .action(
      async (opts: {
        region?: string;
        dataDir?: string;
        listen: string;
        upstream?: string;
        regions?: Record<string, string>;
        heartbeatInterval: number;
        logFieldsAllowedOut?: string[];
        federationTimeout: number;
        retention?: number;
        alertRules?: string;
        alertInterval: number;
        alertWebhook?: string;
      }) => {
        if (opts.region === undefined || opts.dataDir === undefined)
          throw new IsthmusError(
            'ISTHMUS_E_USAGE',
            `required option '${opts.region === undefined ? '--region <name>' : '--data-dir <dir>'}' not specified`,
          );
        if (!REGION_RE.test(opts.region))
          throw new IsthmusError(
            'ISTHMUS_E_USAGE',
            `--region "${opts.region}" is not a region name (lowercase letters, digits, -)`,
          );
        // Before opening anything: an invalid rules file refuses the start with its located error.
        const alertRules = opts.alertRules === undefined ? undefined : loadAlertRules(opts.alertRules);
        const retentionMs = opts.retention ?? retention(DEFAULT_RETENTION);
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
          retentionMs,
          ...(alertRules !== undefined && { alertRules }),
          alertIntervalMs: opts.alertInterval,
          ...(opts.alertWebhook !== undefined && { alertWebhook: opts.alertWebhook }),
          log,
        });
        log({
          event: 'ready',
          role: 'collector',
          region: opts.region,
          address: collector.address,
          upstream: opts.upstream ?? null,
          regions: opts.regions ?? null,
          retentionMs,
        });
        await ctx.runUntilSignal(() => collector.close(), log);
      },
    );
  collector
    .command('rules')
    .description('Alert rules of a collector.')
    .command('export')
    .description(
      "Print --alert-rules as a Prometheus rules file (PromQL over the proxies' and collectors' /metrics).",
    )
    .option('--alert-rules <file>', 'YAML alert rules (docs/collector.md#alerts)')
    .action((_opts: unknown, cmd: Command) => {
      // `collector` declares --alert-rules too and takes it wherever it appears: read both levels.
      const file = cmd.optsWithGlobals<{ alertRules?: string }>().alertRules;
      if (file === undefined)
        throw new IsthmusError('ISTHMUS_E_USAGE', 'collector rules export needs --alert-rules FILE');
      ctx.out(toPrometheusRules(loadAlertRules(file)).trimEnd());
    });
}
