import os from 'node:os';
import path from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { IsthmusError } from '../core/errors.js';
import { EXIT, Exit, type CommandContext } from './context.js';
import { duration, wholeNumber } from './options.js';

/** `isthmus lab`: the whole mesh on one machine, and `lab status|fault|heal` against it. */

const DEFAULT_LAB = 'http://127.0.100.4:7300';

const labOption = ['--lab <url>', `the running lab's API (default: $ISTHMUS_LAB or ${DEFAULT_LAB})`] as const;

function regionsList(text: string): string[] {
  const list = text
    .split(',')
    .map((r) => r.trim())
    .filter(Boolean);
  if (list.length === 0) throw new InvalidArgumentError('give at least one region');
  return list;
}

function percentile(sorted: number[], q: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? null;
}

export function addLabCommands(program: Command, ctx: CommandContext): void {
  const { out, so } = ctx;
  const client = async (opts: { lab?: string }) => {
    const { LabClient } = await import('../lab/client.js');
    return new LabClient(opts.lab ?? process.env.ISTHMUS_LAB ?? DEFAULT_LAB);
  };

  const lab = program
    .command('lab')
    .description(
      'Run a whole three-region mesh on this machine: control planes, gateways, demo apps, links, load.',
    )
    .option('--regions <list>', 'regions to run, comma-separated', regionsList)
    .option('--dir <dir>', 'working folder (data, bootstraps, logs)')
    .option(
      '--subnet <n>',
      'second octet of every lab address, 0–254 (labs on different subnets coexist)',
      (v) => wholeNumber(v, 'a subnet number'),
    )
    .option('--rate <n>', 'steady load in requests per second (0: none)', (v) => wholeNumber(v, 'a rate'), 20)
    .option('--seed <n>', 'seed for links, balancers and load', (v) => wholeNumber(v, 'a seed'), 1)
    .option('--report-every <duration>', 'how often the live status line is printed', duration, 5000)
    .option('--json', 'print JSON events instead of the human view')
    .action(
      async (opts: {
        regions?: string[];
        dir?: string;
        subnet?: number;
        rate: number;
        seed: number;
        reportEvery: number;
        json?: boolean;
      }) => {
        const { Lab } = await import('../lab/lab.js');
        const { serveLabApi } = await import('../lab/lab-api.js');
        const { Workload, DEFAULT_MIX } = await import('../chaos/workload.js');
        const subnet = opts.subnet ?? 0;
        const dir = opts.dir ?? path.join(os.tmpdir(), `isthmus-lab-${subnet}`);
        const log = (e: Record<string, unknown>) => out(JSON.stringify(e));
        const started = Date.now();
        if (!opts.json) out(so.bold(`Starting the lab in ${dir} …`));
        let lastStep = '';
        const running = await Lab.start({
          dir,
          subnet,
          seed: opts.seed,
          ...(opts.regions && { regions: opts.regions }),
          onProgress: (p) => {
            if (opts.json) return log({ event: 'progress', ...p });
            if (p.step !== lastStep) {
              lastStep = p.step;
              out(`  ${so.dim(`[${p.done}/${p.total}]`)} ${p.step}`);
            }
          },
        });
        const api = await serveLabApi(running, running.topology.global.labApi);
        const d = running.describe();
        const t = running.topology;
        if (opts.json)
          log({ event: 'ready', role: 'lab', api: `http://${api.address}`, ...running.describe() });
        else {
          out(so.green(`✓ lab ready in ${((Date.now() - started) / 1000).toFixed(1)} s`));
          out('');
          out(so.bold('Global'));
          out(
            `  control plane  http://${t.global.controlPlane}   (isthmus status --server http://${t.global.controlPlane})`,
          );
          out(`  collector      http://${t.global.collector}   (/v1/continuity, /v1/regions, /v1/traces/ID)`);
          out(`  link emulator  http://${t.global.linkApi}   (Toxiproxy API: /proxies)`);
          out(`  lab API        http://${api.address}   (isthmus lab status|fault|heal)`);
          for (const r of d.regions) {
            out(so.bold(r.name));
            out(`  gateway ${r.gateway}   zone http://${r.zone}   collector http://${r.collector}`);
            for (const i of r.instances)
              out(`  ${i.name.padEnd(28)} inbound ${i.inbound}   admin http://${i.admin}`);
          }
          out('');
          out(`Try:  curl -s http://${d.frontends[0]?.url.replace('http://', '') ?? ''}/products/7`);
          out(
            `      isthmus lab fault partition --region ${t.regions[1]?.name ?? t.regions[0]?.name ?? 'eu-west'}   then   isthmus lab heal`,
          );
          out(`      isthmus drill run drills/region-partition.yaml --lab http://${api.address}`);
          out(so.dim('Ctrl-C stops everything.'));
        }
        // Steady load, with a status line now and then.
        let window: { ok: number; failed: number; unknown: number; latencies: number[] } = {
          ok: 0,
          failed: 0,
          unknown: 0,
          latencies: [],
        };
        const load =
          opts.rate > 0
            ? new Workload({
                targets: running.frontends(),
                ratePerSec: opts.rate,
                mix: DEFAULT_MIX,
                seed: opts.seed,
                onResult: (r) => {
                  window[r.outcome]++;
                  window.latencies.push(r.latencyMs);
                },
              })
            : undefined;
        load?.start();
        const ticker = setInterval(() => {
          const w = window;
          window = { ok: 0, failed: 0, unknown: 0, latencies: [] };
          const sorted = w.latencies.sort((a, b) => a - b);
          const p99 = percentile(sorted, 0.99);
          const faults = running.faults.map((f) => f.description);
          const down = running.supervisor.status().filter((s) => s.state !== 'running').length;
          if (opts.json)
            return log({
              event: 'status',
              ok: w.ok,
              failed: w.failed,
              unknown: w.unknown,
              p99Ms: p99,
              faults,
              down,
            });
          const secs = Math.round((Date.now() - started) / 1000);
          out(
            `${so.dim(`t+${secs}s`)}  ok ${so.green(String(w.ok))}  failed ${w.failed > 0 ? so.red(String(w.failed)) : '0'}  unknown ${w.unknown}  p99 ${p99 === null ? '–' : `${Math.round(p99)} ms`}  ${
              faults.length > 0 ? so.yellow(`faults: ${faults.join('; ')}`) : 'no faults'
            }${down > 0 ? so.red(`  ${down} process(es) down`) : ''}`,
          );
        }, opts.reportEvery);
        await ctx.runUntilSignal(
          async () => {
            clearInterval(ticker);
            await load?.stop();
            await api.close();
            await running.stop();
            if (!opts.json) out(so.green('✓ every lab process stopped'));
          },
          opts.json ? log : () => undefined,
        );
      },
    );

  lab
    .command('status')
    .description('Show the running lab: processes and active faults.')
    .option(...labOption)
    .option('--json', 'print JSON')
    .action(async (opts: { lab?: string; json?: boolean }) => {
      const c = await client(opts);
      const d = await c.call<{
        processes: { name: string; region: string; state: string; starts: number; pid: number | null }[];
        faults: { id: string; description: string; sinceMs: number }[];
      }>('GET', '/v1/lab');
      if (opts.json) return out(JSON.stringify(d, null, 2));
      for (const p of d.processes)
        out(
          `${p.name.padEnd(36)} ${p.region.padEnd(10)} ${(p.state === 'running' ? so.green : so.red)(p.state.padEnd(9))} pid ${p.pid ?? '–'}${p.starts > 1 ? `  (started ${p.starts}×)` : ''}`,
        );
      out(d.faults.length === 0 ? 'no active faults' : so.bold('active faults:'));
      for (const f of d.faults)
        out(`  ${f.id}  ${f.description}  for ${Math.round((Date.now() - f.sinceMs) / 1000)} s`);
    });

  lab
    .command('fault')
    .description('Inject a fault into the running lab (see docs/drills.md for the fault types).')
    .argument(
      '<type>',
      'partition | latency | loss | bandwidth | region-outage | control-plane-loss | proxy-restart | flap',
    )
    .option(...labOption)
    .option('--id <id>', 'name of the fault (to remove it alone later)')
    .option('--region <name>')
    .option('--from <region>')
    .option('--to <region>', 'a region, or global')
    .option('--mode <mode>', 'blackhole | reject | reset')
    .option('--direction <d>', 'both | one-way')
    .option('--scope <s>', 'partition: new | all; control-plane-loss: global | zone')
    .option('--purpose <p>', 'data | control | telemetry')
    .option('--latency <duration>')
    .option('--jitter <duration>')
    .option('--distribution <d>', 'uniform | normal | pareto')
    .option('--probability <p>', 'loss probability 0–1', Number)
    .option('--stall <duration>')
    .option('--rate <kbps>', 'bandwidth, KB/s', Number)
    .option('--down <duration>')
    .option('--up <duration>')
    .option('--service <name>')
    .action(async (type: string, opts: Record<string, unknown> & { lab?: string; id?: string }) => {
      const { lab: labUrl, id, ...fields } = opts;
      const fault: Record<string, unknown> = { type };
      for (const [k, v] of Object.entries(fields)) if (v !== undefined) fault[k] = v;
      const { parseFault } = await import('../chaos/drill/spec.js');
      const parsed = parseFault(fault, 'fault');
      if (!parsed.ok)
        throw new IsthmusError(
          'ISTHMUS_E_USAGE',
          parsed.error.replace(/^fault\./, '--').replace(/^fault: /, ''),
        );
      const c = await client({ ...(labUrl !== undefined && { lab: labUrl }) });
      const r = await c.call<{ id: string }>('POST', '/v1/faults', {
        fault,
        ...(id !== undefined && { id }),
      });
      const { describeFault } = await import('../chaos/fault.js');
      out(so.yellow(`✓ ${r.id}: ${describeFault(parsed.fault)}`));
    });

  lab
    .command('heal')
    .description('Remove faults from the running lab (all, or one by id) and restart what they stopped.')
    .option(...labOption)
    .option('--id <id>', 'remove only this fault')
    .action(async (opts: { lab?: string; id?: string }) => {
      const c = await client(opts);
      if (opts.id !== undefined) {
        await c.call('DELETE', `/v1/faults/${encodeURIComponent(opts.id)}`);
        out(so.green(`✓ removed ${opts.id}`));
        return;
      }
      const r = await c.call<{ healed: boolean; problems: string[] }>('POST', '/v1/heal', { restore: true });
      if (r.healed) out(so.green('✓ healed: no faults, every link accepts, every process runs'));
      else {
        for (const p of r.problems) out(so.red(`  ${p}`));
        throw new IsthmusError(
          'ISTHMUS_E_IO',
          'the lab is not whole yet (see above); try again in a few seconds',
        );
      }
    });

  const drill = program
    .command('drill')
    .description('Chaos drills: run a drill spec and report, with numbers.');
  drill
    .command('run')
    .description(
      'Run a drill (YAML, docs/drills.md) against a lab and print its report; exit 1 if an expectation fails.',
    )
    .argument('<file>', 'drill spec, e.g. drills/region-partition.yaml')
    .option('--lab <url>', 'run against this running lab instead of the topology in the file')
    .option('--dir <dir>', 'working folder of the lab the drill starts')
    .option(
      '--subnet <n>',
      'second octet of the addresses of the lab the drill starts',
      (v) => wholeNumber(v, 'a subnet number'),
      50,
    )
    .option('--json', 'print the report as JSON (progress goes to stderr)')
    .option('--html <file>', 'also write the report as a self-contained HTML page')
    .action(
      async (
        file: string,
        opts: { lab?: string; dir?: string; subnet: number; json?: boolean; html?: string },
      ) => {
        const { loadDrillFile } = await import('../chaos/drill/spec.js');
        const { runDrill } = await import('../chaos/drill/runner.js');
        const { renderText, renderHtml, renderProgressLine } = await import('../chaos/drill/render.js');
        const { verdictExitCode } = await import('../chaos/drill/report.js');
        const { formatDiagnostic } = await import('./format.js');
        const loaded = await loadDrillFile(file);
        for (const d of loaded.diagnostics) ctx.err(formatDiagnostic(d, ctx.se));
        if (!loaded.drill || loaded.diagnostics.some((d) => d.severity === 'error')) {
          ctx.err(ctx.se.red(`✗ ${file}: the drill is invalid; nothing was run`));
          throw new Exit(EXIT.usage);
        }
        const spec = loaded.drill;
        const say = (line: string) => (opts.json ? ctx.err(line) : out(line));
        const labUrl = opts.lab ?? (spec.topology.source === 'endpoints' ? spec.topology.lab : undefined);
        let stopLab: (() => Promise<void>) | undefined;
        let target;
        if (labUrl !== undefined) {
          const { LabClient } = await import('../lab/client.js');
          const { remoteLabTarget } = await import('../lab/drill-target.js');
          target = await remoteLabTarget(new LabClient(labUrl));
          say(so.dim(`drill ${spec.name} against the lab at ${labUrl}`));
        } else {
          const { Lab } = await import('../lab/lab.js');
          const { localLabTarget } = await import('../lab/drill-target.js');
          const regions = spec.topology.source === 'lab' ? spec.topology.regions : undefined;
          const dir = opts.dir ?? path.join(os.tmpdir(), `isthmus-drill-${opts.subnet}`);
          say(so.dim(`drill ${spec.name}: starting a lab (${(regions ?? []).join(', ')}) in ${dir} …`));
          const lab = await Lab.start({
            dir,
            subnet: opts.subnet,
            seed: spec.seed,
            ...(regions && { regions }),
            ...(spec.topology.source === 'lab' &&
              spec.topology.placement && { placement: spec.topology.placement }),
            onProgress: (p) => {
              if (p.name === undefined) say(so.dim(`  [${p.done}/${p.total}] ${p.step}`));
            },
          });
          stopLab = () => lab.stop();
          target = localLabTarget(lab);
        }
        let report;
        try {
          report = await runDrill(spec, target, {
            onProgress: (p) =>
              say(
                renderProgressLine(p, { color: ctx.so !== undefined && !opts.json && process.stdout.isTTY }),
              ),
            onEvent: (e) =>
              say(
                so.yellow(
                  `  ${(e.atMs / 1000).toFixed(1)}s ${e.kind}${e.step ? ` ${e.step}` : ''}: ${e.detail}`,
                ),
              ),
          });
        } finally {
          await stopLab?.();
        }
        if (opts.html) {
          const { writeFile } = await import('node:fs/promises');
          await writeFile(opts.html, renderHtml(report));
        }
        if (opts.json) out(JSON.stringify(report, null, 2));
        else out(renderText(report, { color: process.stdout.isTTY }));
        if (opts.html && !opts.json) out(so.dim(`HTML report: ${opts.html}`));
        throw new Exit(verdictExitCode(report.verdict));
      },
    );
}
