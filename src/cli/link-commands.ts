import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { IsthmusError } from '../core/errors.js';
import type { CommandContext } from './context.js';
import { hostPort, wholeNumber } from './options.js';

/** `isthmus link`: the WAN link emulator with a Toxiproxy-compatible API (docs/link.md). */
export function addLinkCommands(program: Command, ctx: CommandContext): void {
  const log = (event: Record<string, unknown>) => ctx.out(JSON.stringify(event));
  program
    .command('link')
    .description(
      'Run the WAN link emulator: TCP proxies with latency, loss and partitions, driven by a Toxiproxy-compatible API.',
    )
    .option('--listen <host:port>', 'the HTTP API', hostPort, '127.0.0.1:8474')
    .option(
      '--config <file>',
      'JSON or YAML list of proxies (Toxiproxy -config format, each may have toxics)',
    )
    .option(
      '--seed <n>',
      'seed of every random fault decision and delay sample',
      (t: string) => wholeNumber(t, 'a seed (a whole number)'),
      0,
    )
    .action(async (opts: { listen: string; config?: string; seed: number }) => {
      const { LinkEmulator, parseLinkConfigText, startLinkApi } = await import('../chaos/link/index.js');
      let specs: ReturnType<typeof parseLinkConfigText> = [];
      if (opts.config !== undefined) {
        let text: string;
        try {
          text = readFileSync(opts.config, 'utf8');
        } catch (err) {
          throw new IsthmusError(
            'ISTHMUS_E_IO',
            `cannot read --config ${opts.config}: ${(err as Error).message}`,
          );
        }
        // Validated in full before anything listens: a bad entry refuses the start, naming it.
        specs = parseLinkConfigText(text, opts.config);
      }
      const emulator = new LinkEmulator({ seed: opts.seed });
      let api: Awaited<ReturnType<typeof startLinkApi>>;
      try {
        await emulator.populate(specs);
        api = await startLinkApi(emulator, opts.listen, program.version() ?? '0.0.0');
      } catch (err) {
        await emulator.close();
        throw err;
      }
      log({
        event: 'ready',
        role: 'link',
        address: api.address,
        seed: opts.seed,
        proxies: emulator.list().map((p) => ({ name: p.name, listen: p.listen, upstream: p.upstream })),
      });
      await ctx.runUntilSignal(async () => {
        await api.close();
        await emulator.close();
      }, log);
    });
}
