/**
 * A separate process campaigning in an etcd election, for tests that kill the leader's process:
 * `ENDPOINT PREFIX NAME ID TTL_MS`. Prints `leading` or `following` once it knows, then
 * `leader true|false` on every change, and runs until killed.
 */
import { writeSync } from 'node:fs';
import { EtcdElection, EtcdKvStore } from '../../../src/controlplane/store/etcd.js';

const [endpoint, prefix, name, id, ttlMs] = process.argv.slice(2);
const print = (line: string) => writeSync(1, `${line}\n`);

const store = new EtcdKvStore({ endpoints: [endpoint!], prefix: prefix! });
const election = await EtcdElection.campaign(store, { name: name!, id: id!, ttlMs: Number(ttlMs) });
election.onChange((isLeader) => print(`leader ${isLeader}`));
print(election.isLeader ? 'leading' : 'following');
