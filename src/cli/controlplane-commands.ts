import path from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { IsthmusError } from '../core/errors.js';
import { formatDurationMs } from '../core/units.js';
import type { AnyResource } from '../model/resources.js';
import type { ApiClient } from '../controlplane/api-client.js';
import type { CommandContext } from './context.js';
import { hostPort, urlList } from './options.js';
import { formatDiagnostic, formatDiff, plural } from './format.js';

/**
 * Commands of the control plane: the `global` and `zone` processes, and the operator commands
 * that talk to global's API (`apply`, `get`, `history`, `rollback`, `status`).
 */

const DEFAULT_SERVER = 'http://127.0.0.1:7400';

const serverOption = [
  '--server <url>',
  `global control plane API (default: $ISTHMUS_SERVER or ${DEFAULT_SERVER})`,
] as const;

function revisionNumber(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n))
    throw new InvalidArgumentError(`"${text}" is not a revision number`);
  return n;
}

const ago = (ms: number | null | undefined) =>
  ms === null || ms === undefined ? 'never' : `${formatDurationMs(Math.max(0, Math.round(ms)))} ago`;

interface ChangeSummary {
  action: string;
  kind: string;
  name: string;
}

export function addControlPlaneCommands(program: Command, ctx: CommandContext): void {
  const { out, err, so, se } = ctx;
  const client = async (opts: { server?: string }): Promise<ApiClient> => {
    const { ApiClient } = await import('../controlplane/api-client.js');
    return new ApiClient(opts.server ?? process.env.ISTHMUS_SERVER ?? DEFAULT_SERVER);
  };
  const log = (event: Record<string, unknown>) => out(JSON.stringify(event));

  program
    .command('global')
    .description('Run the global control plane: desired state with history, its API, delivery to zones.')
    .requiredOption('--data-dir <dir>', 'where the embedded store lives (created if missing)')
    .option('--listen <host:port>', 'API and zone streams', hostPort, '127.0.0.1:7400')
    .option('--store <url>', 'sqlite:PATH (default DATA_DIR/global.db) or etcd://HOST:PORT[,HOST:PORT]')
    .option('--id <id>', 'name of this process in status pages and elections')
    .option('--election-ttl <ms>', 'leader lease with etcd, ms', (v) => revisionNumber(v), 5000)
    .action(
      async (opts: { dataDir: string; listen: string; store?: string; id?: string; electionTtl: number }) => {
        const { openStore } = await import('../controlplane/store/open.js');
        const { GlobalControlPlane } = await import('../controlplane/global.js');
        const dataDir = path.resolve(opts.dataDir);
        const storeUrl = opts.store ?? `sqlite:${path.join(dataDir, 'global.db')}`;
        const store = await openStore(storeUrl, { dataDir });
        const global = await GlobalControlPlane.start({
          store,
          listen: opts.listen,
          ...(opts.id !== undefined && { id: opts.id }),
          elect: async (advertise) => {
            if (store.url.startsWith('etcd')) {
              const { EtcdElection } = await import('../controlplane/store/etcd.js');
              return EtcdElection.campaign(store, { name: 'global', id: advertise, ttlMs: opts.electionTtl });
            }
            const { SingleProcessElection } = await import('../controlplane/store/election.js');
            return new SingleProcessElection(advertise);
          },
          log,
        });
        log({ event: 'ready', role: 'global', address: global.address, store: store.url });
        await ctx.runUntilSignal(() => global.close(), log);
      },
    );

  program
    .command('zone')
    .description(
      'Run a zone control plane: its region’s registrations, snapshots for its proxies, the link to global.',
    )
    .requiredOption('--region <name>', 'the region this zone serves')
    .requiredOption('--data-dir <dir>', 'where its state lives (created if missing)')
    .option(
      '--global <urls>',
      'global control plane URL(s), comma-separated; omit to run standalone',
      urlList,
    )
    .option('--listen <host:port>', 'API and proxy streams', hostPort, '127.0.0.1:7401')
    .option('--id <id>', 'name of this process in status pages')
    .action(
      async (opts: { region: string; dataDir: string; global?: string[]; listen: string; id?: string }) => {
        if (!/^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$/.test(opts.region))
          throw new IsthmusError(
            'ISTHMUS_E_USAGE',
            `--region "${opts.region}" is not a region name (lowercase letters, digits, -)`,
          );
        const { openStore } = await import('../controlplane/store/open.js');
        const { ZoneControlPlane } = await import('../controlplane/zone.js');
        const dataDir = path.resolve(opts.dataDir);
        const store = await openStore(`sqlite:${path.join(dataDir, 'zone.db')}`, { dataDir });
        const zone = await ZoneControlPlane.start({
          region: opts.region,
          globalUrls: opts.global ?? [],
          store,
          listen: opts.listen,
          ...(opts.id !== undefined && { id: opts.id }),
          log,
        });
        log({
          event: 'ready',
          role: 'zone',
          region: opts.region,
          address: zone.address,
          policyRevision: zone.policyRevision,
        });
        await ctx.runUntilSignal(() => zone.close(), log);
      },
    );

  program
    .command('apply')
    .description(
      'Make the files the desired state: validate, show the diff against global, apply atomically.',
    )
    .requiredOption('-f, --file <paths...>', 'YAML files or directories: the complete desired state')
    .option(...serverOption)
    .option('--dry-run', 'validate and show the diff, change nothing')
    .option('-m, --message <text>', 'why (kept in the history)')
    .option('--json', 'print the result as JSON')
    .action(
      async (opts: {
        file: string[];
        server?: string;
        dryRun?: boolean;
        message?: string;
        json?: boolean;
      }) => {
        const result = await ctx.loadOrExit(opts.file, 'nothing applied');
        const proposed = result.resources.map((r) => r.resource);
        const api = await client(opts);
        const live = await api.get<{ revision: number; resources: AnyResource[] }>('/v1/resources');
        const { diffMeshes } = await import('../model/diff.js');
        const diff = diffMeshes(live.resources, proposed);
        if (!opts.json) {
          out(so.bold(`Changes against revision ${live.revision} at ${api.baseUrl}:`));
          out(formatDiff(diff, so));
        }
        if (opts.dryRun || diff.changes.length === 0) {
          if (opts.json)
            out(JSON.stringify({ dryRun: !!opts.dryRun, revision: live.revision, diff }, null, 2));
          return;
        }
        const { ApiCallError } = await import('../controlplane/api-client.js');
        try {
          const applied = await api.post<{ revision: number; changes: ChangeSummary[] }>('/v1/apply', {
            resources: proposed,
            baseRevision: live.revision,
            actor: process.env.USER ?? 'unknown',
            ...(opts.message !== undefined && { message: opts.message }),
          });
          if (opts.json) out(JSON.stringify(applied, null, 2));
          else
            out(
              so.green(
                `✓ applied as revision ${applied.revision} (${plural(applied.changes.length, 'change')})`,
              ),
            );
        } catch (e) {
          if (e instanceof ApiCallError && Array.isArray(e.body.diagnostics)) {
            for (const d of e.body.diagnostics as Parameters<typeof formatDiagnostic>[0][])
              err(formatDiagnostic(d, se));
          }
          throw e;
        }
      },
    );

  program
    .command('get')
    .description('Print the live desired state (or part of it) as YAML.')
    .argument('[what]', 'KIND or KIND/NAME')
    .option(...serverOption)
    .option('--json', 'print JSON')
    .action(async (what: string | undefined, opts: { server?: string; json?: boolean }) => {
      const api = await client(opts);
      const suffix = what ? `/${what.split('/').map(encodeURIComponent).join('/')}` : '';
      const live = await api.get<{ revision: number; resources: AnyResource[] }>(`/v1/resources${suffix}`);
      if (opts.json) {
        out(JSON.stringify(live, null, 2));
        return;
      }
      const { printResources } = await import('../model/print.js');
      out(`# revision ${live.revision}, ${plural(live.resources.length, 'resource')}`);
      if (live.resources.length > 0) out(printResources(live.resources));
    });

  program
    .command('history')
    .description('List applied revisions (who, when, from where, what changed), or show one in full.')
    .argument('[revision]', 'show this revision’s changes field by field', revisionNumber)
    .option(...serverOption)
    .option('--limit <n>', 'how many revisions to list', (v) => revisionNumber(v), 20)
    .option('--json', 'print JSON')
    .action(
      async (revision: number | undefined, opts: { server?: string; limit: number; json?: boolean }) => {
        const api = await client(opts);
        if (revision !== undefined) {
          const record = await api.get<{
            revision: number;
            atMs: number;
            actor: string;
            origin: string;
            message: string;
            rollbackTo?: number;
            changes: (ChangeSummary & { before?: AnyResource; after?: AnyResource })[];
          }>(`/v1/history/${revision}`);
          if (opts.json) {
            out(JSON.stringify(record, null, 2));
            return;
          }
          out(
            so.bold(`revision ${record.revision}`) +
              `  ${new Date(record.atMs).toISOString()}  by ${record.actor} from ${record.origin}`,
          );
          if (record.message) out(`  ${record.message}`);
          const { diffMeshes } = await import('../model/diff.js');
          const before = record.changes.flatMap((c) => (c.before ? [c.before] : []));
          const after = record.changes.flatMap((c) => (c.after ? [c.after] : []));
          out(formatDiff(diffMeshes(before, after), so));
          return;
        }
        const { revisions } = await api.get<{
          revisions: {
            revision: number;
            atMs: number;
            actor: string;
            origin: string;
            message: string;
            rollbackTo?: number;
            changes: ChangeSummary[];
          }[];
        }>(`/v1/history?limit=${opts.limit}`);
        if (opts.json) {
          out(JSON.stringify({ revisions }, null, 2));
          return;
        }
        if (revisions.length === 0) out('No revisions yet: nothing has been applied.');
        for (const r of revisions) {
          const counts = ['create', 'update', 'delete']
            .map((a) => [a, r.changes.filter((c) => c.action === a).length] as const)
            .filter(([, n]) => n > 0)
            .map(([a, n]) => `${n} ${a}`)
            .join(', ');
          out(
            `${so.bold(String(r.revision).padStart(5))}  ${new Date(r.atMs).toISOString()}  ${r.actor.padEnd(10)} ${counts.padEnd(28)} ${r.rollbackTo !== undefined ? so.yellow(`rollback to ${r.rollbackTo} `) : ''}${r.message}`,
          );
        }
      },
    );

  program
    .command('rollback')
    .description('Restore the desired state as it was right after a revision (applied as a new revision).')
    .argument('<revision>', 'the revision to go back to', revisionNumber)
    .option(...serverOption)
    .option('-m, --message <text>', 'why (kept in the history)')
    .action(async (revision: number, opts: { server?: string; message?: string }) => {
      const api = await client(opts);
      const result = await api.post<{ revision: number; unchanged: boolean; changes: ChangeSummary[] }>(
        '/v1/rollback',
        {
          revision,
          actor: process.env.USER ?? 'unknown',
          ...(opts.message !== undefined && { message: opts.message }),
        },
      );
      if (result.unchanged) out(`The live state already equals revision ${revision}; nothing to do.`);
      else
        out(
          so.green(
            `✓ rolled back to revision ${revision} as revision ${result.revision} (${plural(result.changes.length, 'change')})`,
          ),
        );
    });

  program
    .command('status')
    .description(
      'Show the control plane: leader, revision, and each zone (connected, acknowledged revision, ages).',
    )
    .option(...serverOption)
    .option('--zone <url>', 'also show the proxies of the zone at this URL')
    .option('--json', 'print JSON')
    .action(async (opts: { server?: string; zone?: string; json?: boolean }) => {
      const api = await client(opts);
      const status = await api.get<{
        id: string;
        revision: number;
        store: string;
        leader: { self: boolean; id: string | null };
        zones: {
          region: string;
          connected: boolean;
          lastHeardAgeMs: number | null;
          ackedRevision: number;
          behind: number;
          nack: { revision: number; reason: string } | null;
          inventory: { endpoints: number; ageMs: number; revision: number } | null;
        }[];
      }>('/v1/status');
      let zone: Record<string, unknown> | undefined;
      if (opts.zone) {
        const { ApiClient } = await import('../controlplane/api-client.js');
        zone = await new ApiClient(opts.zone).get<Record<string, unknown>>('/v1/status');
      }
      if (opts.json) {
        out(JSON.stringify({ global: status, ...(zone && { zone }) }, null, 2));
        return;
      }
      out(
        `${so.bold('global')} ${status.id}  revision ${status.revision}  store ${status.store}  leader ${status.leader.id ?? 'none'}`,
      );
      if (status.zones.length === 0) out('  no zone has connected yet');
      for (const z of status.zones) {
        const state = z.connected ? so.green('connected') : so.red('disconnected');
        const acked =
          z.behind === 0
            ? `at revision ${z.ackedRevision}`
            : so.yellow(`at revision ${z.ackedRevision}, ${z.behind} behind`);
        const inv = z.inventory
          ? `${plural(z.inventory.endpoints, 'endpoint')}, inventory ${ago(z.inventory.ageMs)}`
          : 'no inventory yet';
        out(`  ${z.region.padEnd(14)} ${state}  heard ${ago(z.lastHeardAgeMs)}  ${acked}  ${inv}`);
        if (z.nack) out(se.red(`      refused revision ${z.nack.revision}: ${z.nack.reason}`));
      }
      if (zone) {
        const proxies = zone.proxies as {
          node: string;
          role: string;
          service: string | null;
          current: boolean;
          acked: string | null;
          lastHeardAgeMs: number;
          nack: { reason: string } | null;
        }[];
        out(
          `\n${so.bold('zone')} ${String(zone.id)}  region ${String(zone.region)}  policy revision ${String(zone.policyRevision)}`,
        );
        for (const p of proxies)
          out(
            `  ${p.node.padEnd(30)} ${p.role.padEnd(8)} ${(p.service ?? '').padEnd(12)} ${p.current ? so.green('current') : so.yellow(`at ${p.acked ?? 'nothing'}`)}  heard ${ago(p.lastHeardAgeMs)}${p.nack ? se.red(`  refused: ${p.nack.reason}`) : ''}`,
          );
      }
    });
}
