import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { isIsthmusError, IsthmusError } from '../core/errors.js';
import type { Proxy } from '../dataplane/proxy.js';
import { closestMatch } from '../core/text.js';
import { formatDurationMs } from '../core/units.js';
import type { Diagnostic } from '../model/diagnostics.js';
import { describeOrigin, type Effective } from '../model/effective.js';
import { formatLocality, parseLocality, type Locality } from '../model/locality.js';
import { MeshIndex } from '../model/mesh.js';
import { KINDS, resourceSchema, type Kind } from '../model/resources.js';
import { leavesOf, getIn, type JsonSchema } from '../model/schema-walk.js';
import { PartitionSettings, TelemetrySettings, TrafficSettings } from '../model/settings.js';
import type { ValidationResult } from '../model/validate.js';

// Heavy modules (the YAML parser, schema compiler, HTTP client) are loaded by the commands that
// need them, so a long-running proxy does not carry what only `validate` uses.
const validatePaths = async (paths: readonly string[]) =>
  (await import('../model/validate.js')).validatePaths(paths);
import {
  formatDiagnostic,
  formatDiff,
  formatValue,
  plural,
  styler,
  useColor,
  type Styler,
} from './format.js';

import { EXIT, Exit, type CommandContext } from './context.js';
import { addCollectorCommands } from './collector-commands.js';
import { addLinkCommands } from './link-commands.js';
import { addControlPlaneCommands } from './controlplane-commands.js';
import { addLabCommands } from './lab-commands.js';

export { EXIT };

export interface CliIo {
  version: string;
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
}

function locality(text: string): Locality {
  try {
    return parseLocality(text);
  } catch (err) {
    throw new InvalidArgumentError(err instanceof Error ? err.message : String(err));
  }
}

export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const out = (text: string) => io.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  const err = (text: string) => io.stderr.write(text.endsWith('\n') ? text : `${text}\n`);
  const so = styler(useColor(io.stdout as NodeJS.WriteStream));
  const se = styler(useColor(io.stderr as NodeJS.WriteStream));

  const program = new Command('isthmus')
    .description(
      'Isthmus: a cross-region service mesh. Policy as code, failover you can explain, signals that survive partitions.',
    )
    .version(io.version, '-V, --version')
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) })
    .addHelpText(
      'after',
      '\nExit status: 0 success, 1 the input has problems, 2 wrong usage.\nDocs: docs/cli.md, docs/policies.md',
    );

  /** Prints every diagnostic (to stderr) and, on errors, a summary; returns the exit code. */
  const report = (result: ValidationResult, label: string): number => {
    for (const d of result.diagnostics) err(formatDiagnostic(d, se));
    if (!result.ok) {
      err(
        se.red(
          `✗ ${label}: ${plural(result.errors, 'error')}${result.warnings ? `, ${plural(result.warnings, 'warning')}` : ''} in ${plural(result.files.length, 'file')}`,
        ),
      );
      return EXIT.problems;
    }
    return EXIT.ok;
  };

  const loadOrExit = async (paths: string[], label: string): Promise<ValidationResult> => {
    const result = await validatePaths(paths);
    const code = report(result, label);
    if (code !== EXIT.ok) throw new Exit(code);
    return result;
  };

  program
    .command('validate')
    .description('Check mesh resources: every problem in one run, each located as file:line:col.')
    .argument('<paths...>', 'YAML files or directories (read recursively)')
    .option('--json', 'print a machine-readable report on stdout')
    .action(async (paths: string[], opts: { json?: boolean }) => {
      const result = await validatePaths(paths);
      if (opts.json) {
        out(
          JSON.stringify(
            {
              ok: result.ok,
              files: result.files.length,
              resources: result.resources.length,
              errors: result.errors,
              warnings: result.warnings,
              diagnostics: result.diagnostics,
            },
            null,
            2,
          ),
        );
        throw new Exit(result.ok ? EXIT.ok : EXIT.problems);
      }
      const code = report(result, 'invalid');
      if (code === EXIT.ok) {
        out(
          so.green(
            `✓ ${plural(result.resources.length, 'resource')} in ${plural(result.files.length, 'file')} valid${result.warnings ? ` (${plural(result.warnings, 'warning')})` : ''}`,
          ),
        );
      }
      throw new Exit(code);
    });

  program
    .command('schema')
    .description('Print the JSON Schema of mesh resources (for editors and other tools).')
    .addOption(new Option('--kind <kind>', 'only the schema of one kind').choices(KINDS))
    .action(async (opts: { kind?: Kind }) => {
      const { meshJsonSchema } = await import('../model/reference.js');
      out(JSON.stringify(opts.kind ? resourceSchema(opts.kind) : meshJsonSchema(), null, 2));
    });

  program
    .command('diff')
    .description('Semantic diff of two trees of resources: the plan step before an apply.')
    .argument('<old>', 'file or directory with the current resources')
    .argument('<new>', 'file or directory with the proposed resources')
    .option('--json', 'print the diff as JSON')
    .option('--exit-code', 'exit 3 when there are changes (0 when none)')
    .action(async (oldPath: string, newPath: string, opts: { json?: boolean; exitCode?: boolean }) => {
      const before = await loadOrExit([oldPath], `old (${oldPath})`);
      const after = await loadOrExit([newPath], `new (${newPath})`);
      const { diffMeshes } = await import('../model/diff.js');
      const diff = diffMeshes(
        before.resources.map((r) => r.resource),
        after.resources.map((r) => r.resource),
      );
      out(opts.json ? JSON.stringify(diff, null, 2) : formatDiff(diff, so));
      const changed = diff.changes.length > 0;
      throw new Exit(opts.exitCode && changed ? 3 : EXIT.ok);
    });

  program
    .command('explain')
    .description('Show the effective policy of a service or route after merging, each field with its origin.')
    .argument('<paths...>', 'YAML files or directories with the mesh resources')
    .requiredOption('--service <name>', 'the destination service')
    .option('--route <name>', 'a named route of the service')
    .option(
      '--from <region/zone>',
      'the caller’s locality: adds its routing plan and partition settings',
      locality,
    )
    .option('--json', 'print JSON')
    .action(
      async (paths: string[], opts: { service: string; route?: string; from?: Locality; json?: boolean }) => {
        const result = await loadOrExit(paths, 'invalid');
        const index = new MeshIndex(result.resources);
        const service = index.services.get(opts.service);
        if (!service) throw notFound('service', opts.service, index.services.keys());
        const routes = (service.resource.spec.routes ?? []).map((r) => r.name);
        if (opts.route !== undefined && !routes.includes(opts.route))
          throw notFound(`route of service ${opts.service}`, opts.route, routes);
        if (opts.from && !index.regions.has(opts.from.region))
          throw notFound('region', opts.from.region, index.regions.keys());
        const fromZones = opts.from
          ? index.regions.get(opts.from.region)?.resource.spec.zones.map((z) => z.name)
          : [];
        if (opts.from?.zone !== undefined && !fromZones?.includes(opts.from.zone))
          throw notFound(`zone of region ${opts.from.region}`, opts.from.zone, fromZones ?? []);

        const traffic = index.traffic(opts.service, opts.route);
        const telemetry = index.telemetry(opts.service);
        const partition = opts.from ? index.partition(opts.from.region) : undefined;
        const plan = opts.from ? index.routingPlan(opts.from, opts.service, opts.route) : undefined;
        if (opts.json) {
          const asJson = (e: Effective<unknown>) => ({
            value: e.value,
            origins: Object.fromEntries(e.origins),
          });
          out(
            JSON.stringify(
              {
                service: opts.service,
                route: opts.route ?? null,
                from: opts.from ? formatLocality(opts.from) : null,
                homeRegion: service.resource.spec.homeRegion ?? null,
                routingPlan: plan ?? null,
                traffic: asJson(traffic),
                telemetry: asJson(telemetry),
                partition: partition ? asJson(partition) : null,
              },
              null,
              2,
            ),
          );
          return;
        }
        const title = `${opts.service}${opts.route ? ` route ${opts.route}` : ''}`;
        out(so.bold(`Effective policy for ${title}${opts.from ? ` from ${formatLocality(opts.from)}` : ''}`));
        if (service.resource.spec.homeRegion) out(`home region: ${service.resource.spec.homeRegion}`);
        if (plan) {
          out(`\n${so.bold('Routing plan')} (remote tiers reorder by measured RTT at run time)`);
          for (const t of plan.tiers) {
            const where =
              t.tier === 'zone' ? `${t.region}/${t.zones.join(', ')}` : `${t.region} (${t.zones.join(', ')})`;
            const via =
              t.via === 'gateway'
                ? `via gateway${t.rttHintMs !== undefined ? `, ~${formatDurationMs(t.rttHintMs)} RTT` : ''}`
                : 'direct';
            out(`  P${t.priority}  ${t.tier.padEnd(6)}  ${where.padEnd(36)} ${so.dim(via)}`);
          }
          for (const note of plan.notes) out(`  ${so.yellow('note')}: ${note}`);
        }
        printEffective(out, so, 'Traffic settings', TrafficSettings, traffic);
        printEffective(out, so, `Telemetry settings (service ${opts.service})`, TelemetrySettings, telemetry);
        if (partition && opts.from)
          printEffective(
            out,
            so,
            `Partition settings (region ${opts.from.region})`,
            PartitionSettings,
            partition,
          );
      },
    );

  const runProxy = (mode: 'sidecar' | 'gateway') => async (opts: { config: string; check?: boolean }) => {
    const { loadBootstrapInWorker } = await import('../dataplane/load-config.js');
    const { ConfigError, Proxy } = await import('../dataplane/proxy.js');
    const { bootstrap, diagnostics } = await loadBootstrapInWorker(opts.config);
    for (const d of diagnostics) err(formatDiagnostic(d, se));
    if (!bootstrap) throw new Exit(EXIT.problems);
    if (bootstrap.spec.mode !== mode) {
      throw new IsthmusError(
        'ISTHMUS_E_USAGE',
        `${opts.config} is a ${bootstrap.spec.mode} bootstrap; run it with \`isthmus ${bootstrap.spec.mode === 'sidecar' ? 'proxy' : 'gateway'}\``,
      );
    }
    if (opts.check && bootstrap.controlPlane) {
      out(so.green(`✓ ${opts.config} valid (the mesh resources come from the zone control plane)`));
      throw new Exit(EXIT.ok);
    }
    if (opts.check) {
      const result = await validatePaths(bootstrap.resourcePaths);
      const code = report(result, `${opts.config}: the mesh resources it names are invalid`);
      if (code === EXIT.ok)
        out(so.green(`✓ ${opts.config} and ${plural(result.resources.length, 'resource')} valid`));
      throw new Exit(code);
    }
    const log = (event: Record<string, unknown>) => out(JSON.stringify(event));
    let proxy: Proxy;
    try {
      proxy = await Proxy.start(bootstrap, { log });
    } catch (e) {
      if (e instanceof ConfigError) {
        for (const d of e.diagnostics) err(formatDiagnostic(d, se));
        err(se.red(`✗ ${opts.config}: the mesh resources it names are invalid`));
        throw new Exit(EXIT.problems);
      }
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
        throw new IsthmusError('ISTHMUS_E_IO', `cannot listen: ${(e as Error).message}`);
      }
      throw e;
    }
    let client: { close(): Promise<void> } | undefined;
    if (bootstrap.controlPlane) {
      const { ControlPlaneClient } = await import('../dataplane/control-plane-client.js');
      const { systemClock } = await import('../core/clock.js');
      client = new ControlPlaneClient(proxy, bootstrap.controlPlane.zones, {
        clock: systemClock,
        log,
      }).start();
    }
    log({
      event: 'ready',
      mode,
      name: bootstrap.name,
      version: proxy.config?.version ?? null,
      listeners: proxy.addresses,
    });
    await new Promise<void>((resolve) => {
      const stop = (signal: string) => {
        log({ event: 'stopping', signal });
        process.off('SIGHUP', hup);
        void (client?.close() ?? Promise.resolve())
          .catch(() => undefined)
          .then(() => proxy.stop())
          .then(resolve);
      };
      const hup = () => void proxy.reload();
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
      process.on('SIGHUP', hup);
    });
  };

  program
    .command('proxy')
    .description('Run the sidecar proxy beside one app instance (inbound, outbound and admin listeners).')
    .requiredOption('-c, --config <file>', 'ProxyBootstrap file (see docs/proxy.md)')
    .option('--check', 'validate the bootstrap file and the resources it names, then exit')
    .addHelpText(
      'after',
      '\nSignals: SIGHUP reloads the mesh resources (an invalid set is rejected and the running one kept); SIGTERM stops.',
    )
    .action(runProxy('sidecar'));

  program
    .command('gateway')
    .description('Run a region gateway: the door for traffic from other regions.')
    .requiredOption('-c, --config <file>', 'ProxyBootstrap file with mode: gateway (see docs/proxy.md)')
    .option('--check', 'validate the bootstrap file and the resources it names, then exit')
    .action(runProxy('gateway'));

  const ctx: CommandContext = {
    out,
    err,
    so,
    se,
    loadOrExit,
    runUntilSignal: (stop, log) =>
      new Promise<void>((resolve) => {
        const onSignal = (signal: string) => {
          log({ event: 'stopping', signal });
          void stop().then(resolve, (e: Error) => {
            log({ event: 'stop-failed', error: e.message });
            resolve();
          });
        };
        process.once('SIGTERM', () => onSignal('SIGTERM'));
        process.once('SIGINT', () => onSignal('SIGINT'));
      }),
  };
  addControlPlaneCommands(program, ctx);
  addCollectorCommands(program, ctx);
  addLabCommands(program, ctx);
  addLinkCommands(program, ctx);

  program
    .command('docs', { hidden: true })
    .description('Print generated reference documents.')
    .argument('<which>', 'policies | schema')
    .action(async (which: string) => {
      const { meshJsonSchema, policyReference } = await import('../model/reference.js');
      if (which === 'policies') out(policyReference());
      else if (which === 'schema') out(JSON.stringify(meshJsonSchema(), null, 2));
      else throw new IsthmusError('ISTHMUS_E_USAGE', `unknown document "${which}": use policies or schema`);
    });

  try {
    if (argv.length === 0) {
      program.outputHelp();
      return EXIT.usage;
    }
    await program.parseAsync([...argv], { from: 'user' });
    return EXIT.ok;
  } catch (e) {
    if (e instanceof Exit) return e.code;
    if (e instanceof CommanderError) {
      if (
        e.code === 'commander.helpDisplayed' ||
        e.code === 'commander.version' ||
        e.code === 'commander.help'
      )
        return EXIT.ok;
      return EXIT.usage; // commander has already printed the message
    }
    if (isIsthmusError(e)) {
      err(`${se.red('error')}: ${e.message} ${se.dim(`(${e.code})`)}`);
      return e.code === 'ISTHMUS_E_USAGE' ? EXIT.usage : EXIT.problems;
    }
    err(`${se.red('internal error')}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    err('This is a bug in Isthmus; please report it with the command you ran.');
    return EXIT.internal;
  }
}

function notFound(what: string, name: string, known: Iterable<string>): IsthmusError {
  const names = [...known];
  const suggestion = closestMatch(name, names);
  return new IsthmusError(
    'ISTHMUS_E_NOT_FOUND',
    `${what} "${name}" does not exist${suggestion ? `; did you mean "${suggestion}"?` : names.length ? ` (known: ${names.join(', ')})` : ''}`,
  );
}

function printEffective(
  out: (s: string) => void,
  s: Styler,
  title: string,
  schema: JsonSchema,
  effective: Effective<unknown>,
) {
  out(`\n${s.bold(title)}`);
  const leaves = leavesOf(schema);
  const width = Math.max(...leaves.map((l) => l.path.join('.').length));
  const valueWidth = 22;
  for (const leaf of leaves) {
    const key = leaf.path.join('.');
    const origin = effective.origins.get(key);
    const value = formatValue(getIn(effective.value, leaf.path));
    const from = describeOrigin(origin);
    const shownFrom = origin?.level === 'builtin' ? s.dim(from) : s.cyan(from);
    out(`  ${key.padEnd(width)}  ${value.padEnd(valueWidth)} ${shownFrom}`);
  }
}

export type { Diagnostic };
