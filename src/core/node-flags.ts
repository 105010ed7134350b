/**
 * The V8 flags every long-running Isthmus process runs with (docs/performance.md, "Runtime
 * flags"). The `isthmus` bin's shebang carries the same list (a test holds them equal); code that
 * starts Isthmus processes itself (the lab, the benchmarks) passes these.
 *
 * - `--max-semi-space-size=4`: the young generation is capped at 4 MB per semi-space (Node's
 *   default grows it to 16 MB): a proxy's short-lived request garbage is collected sooner, for
 *   ~15 MB less peak memory under load and no measurable throughput cost.
 * - `--no-allocation-site-pretenuring`: V8 otherwise starts allocating objects of a site straight
 *   in the old generation once enough of them survived a young collection. Under a proxy's load
 *   the requests in flight at a collection make their sites look long-lived, their objects then
 *   die in the old generation, and the process runs in a degraded state (slow young
 *   collections, a full collection every ~0.5 s, a quarter of a core in GC threads) for as long
 *   as it lives: in about half of the starts, at ~30 % lower throughput.
 */
export const NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4', '--no-allocation-site-pretenuring'];
