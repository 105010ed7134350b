import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compareDiagnostics, type Diagnostic } from '../../src/model/diagnostics.js';
import { loadText, MAX_ALIASES } from '../../src/model/load.js';
import { header, textAt, yamlDoc } from '../support/yaml-doc.js';

const FILE = 'mesh/policies.yaml';

const ids = (text: string) =>
  loadText(text, FILE).resources.map((r) => `${r.resource.kind}/${r.resource.metadata.name}`);

/** Diagnostics as a readable list, for assertion messages. */
function show(diagnostics: readonly Diagnostic[]): string {
  return (
    diagnostics.map((d) => `  ${d.line}:${d.col} ${d.rule} ${d.path ?? '-'}: ${d.message}`).join('\n') ||
    '  (none)'
  );
}

// ---------------------------------------------------------------------------------------------
// Valid documents
// ---------------------------------------------------------------------------------------------

interface ValidCase {
  name: string;
  text: string;
  /** `Kind/name` of each resource, in order, with its 0-based document index in the file. */
  resources: [id: string, docIndex: number][];
  /** When given, the exact specs of the resources, in order. */
  specs?: unknown[];
}

const VALID: ValidCase[] = [
  {
    name: 'minimal Mesh',
    text: header('Mesh', 'default') + 'spec: {}\n',
    resources: [['Mesh/default', 0]],
    specs: [{}],
  },
  {
    name: 'Mesh with defaults for all three settings groups',
    text: yamlDoc`
      apiVersion: isthmus.dev/v1alpha1
      kind: Mesh
      metadata:
        name: default
        labels: {owner: platform}
        annotations: {note: "set by hand"}
      spec:
        defaults:
          traffic:
            timeouts: {overall: 15s}
            retries: {maxAttempts: 2}
          partition:
            proxy: {remoteEndpoints: freeze}
            leaseTtl: 30s
          telemetry:
            sampling: {tracesPerSecond: 2.5, minRatio: 0.01}
            buffer: {maxBytes: 1GiB, whenFull: block}
    `,
    resources: [['Mesh/default', 0]],
    specs: [
      {
        defaults: {
          traffic: { timeouts: { overall: '15s' }, retries: { maxAttempts: 2 } },
          partition: { proxy: { remoteEndpoints: 'freeze' }, leaseTtl: '30s' },
          telemetry: {
            sampling: { tracesPerSecond: 2.5, minRatio: 0.01 },
            buffer: { maxBytes: '1GiB', whenFull: 'block' },
          },
        },
      },
    ],
  },
  {
    name: 'minimal Region',
    text: header('Region', 'us-east') + 'spec:\n  zones:\n    - name: use1-az1\n',
    resources: [['Region/us-east', 0]],
    specs: [{ zones: [{ name: 'use1-az1' }] }],
  },
  {
    name: 'Region with gateway and latency hints',
    text: yamlDoc`
      apiVersion: isthmus.dev/v1alpha1
      kind: Region
      metadata:
        name: eu-west
      spec:
        zones: [{name: a}, {name: b}, {name: c}]
        gateway:
          address: gw.eu-west.example.com
          port: 15443
        latencyHints:
          us-east: 80ms
          ap-south-1: 180ms
    `,
    resources: [['Region/eu-west', 0]],
    specs: [
      {
        zones: [{ name: 'a' }, { name: 'b' }, { name: 'c' }],
        gateway: { address: 'gw.eu-west.example.com', port: 15443 },
        latencyHints: { 'us-east': '80ms', 'ap-south-1': '180ms' },
      },
    ],
  },
  {
    name: 'minimal Service',
    text: header('Service', 'checkout') + 'spec:\n  ports:\n    - {name: http, port: 8080}\n',
    resources: [['Service/checkout', 0]],
    specs: [{ ports: [{ name: 'http', port: 8080 }] }],
  },
  {
    name: 'Service with home region and routes',
    text: yamlDoc`
      apiVersion: isthmus.dev/v1alpha1
      kind: Service
      metadata:
        name: checkout
      spec:
        ports:
          - name: http
            port: 8080
            protocol: http2
          - {name: grpc, port: 9090, protocol: grpc}
        homeRegion: us-east
        routes:
          - name: get-cart
            match:
              methods: [GET, HEAD]
              path: {prefix: /cart}
          - name: pay
            match:
              path: {exact: /pay}
          - name: everything-else
            match: {}
    `,
    resources: [['Service/checkout', 0]],
  },
  {
    name: 'minimal TrafficPolicy',
    text: header('TrafficPolicy', 'mesh-wide') + 'spec:\n  targetRef: {kind: Mesh}\n',
    resources: [['TrafficPolicy/mesh-wide', 0]],
    specs: [{ targetRef: { kind: 'Mesh' } }],
  },
  {
    name: 'TrafficPolicy on a route setting every section',
    text: yamlDoc`
      apiVersion: isthmus.dev/v1alpha1
      kind: TrafficPolicy
      metadata:
        name: checkout-reads
      spec:
        targetRef: {kind: Route, service: checkout, name: get-cart}
        timeouts: {connect: 500ms, perTry: 1s, overall: 1m30s, propagate: false}
        retries:
          maxAttempts: 10
          retryOn: [connect-failure, reset, 5xx]
          retryOnStatusCodes: [409, 429]
          nonIdempotent: never
          differentLocality: always
          backoff: {base: 10ms, max: 1s}
          budget: {ratio: 0.25, minPerSecond: 5, window: 30s}
          crossRegion: {ratio: 0, minPerSecond: 0, window: 10m}
        circuitBreaker: {maxConnections: 100, maxPendingRequests: 0, pendingTimeout: 100ms, retryAfter: 1h}
        outlierDetection:
          consecutiveFailures: 0
          interval: 100ms
          successRate: {enabled: false, stdevFactor: 0.1}
          latency: {factor: 1.1, minLatency: 0s}
        localityFailover:
          priorities: [zone, region]
          overprovisioningFactor: 1
          panicThreshold: 0
          regionHealth: {ejectBelow: 0.4, readmitAbove: 0.9, window: 500ms}
          failback: {slowStart: 0s, initialWeight: 1}
        healthChecks: {enabled: false, path: /ready, interval: 5s, timeout: 10ms, unhealthyStatusMin: 600}
        hedging: {enabled: true, afterQuantile: 0.99, minDelay: 5ms, maxHedges: 3}
        faultInjection: {delay: {ratio: 0.01, duration: 2s}, abort: {ratio: 0.001, status: 503}}
        fallback:
          staleIfError: {enabled: true, maxAge: 168h, maxBytes: 16GiB, maxEntryBytes: 64KB}
          static: {enabled: true, status: 200, contentType: text/plain, body: ""}
        consistency: {mode: strong, maxStaleness: 0s}
        idempotency: {window: 1h, maxEntryBytes: 16MiB}
        degradation: {flags: [cart.readonly, no_recs]}
    `,
    resources: [['TrafficPolicy/checkout-reads', 0]],
  },
  {
    name: 'minimal PartitionPolicy',
    text: header('PartitionPolicy', 'p') + 'spec:\n  targetRef: {kind: Mesh}\n',
    resources: [['PartitionPolicy/p', 0]],
    specs: [{ targetRef: { kind: 'Mesh' } }],
  },
  {
    name: 'PartitionPolicy on a region',
    text: yamlDoc`
      apiVersion: isthmus.dev/v1alpha1
      kind: PartitionPolicy
      metadata:
        name: eu-fail-closed
      spec:
        targetRef:
          kind: Region
          name: eu-west
        proxy:
          remoteEndpoints: fail-closed
          decayAfter: 168h
        zone: {remoteEndpoints: decay, decayAfter: 1s}
        leaseTtl: 1h
    `,
    resources: [['PartitionPolicy/eu-fail-closed', 0]],
    specs: [
      {
        targetRef: { kind: 'Region', name: 'eu-west' },
        proxy: { remoteEndpoints: 'fail-closed', decayAfter: '168h' },
        zone: { remoteEndpoints: 'decay', decayAfter: '1s' },
        leaseTtl: '1h',
      },
    ],
  },
  {
    name: 'minimal TelemetryPolicy',
    text: header('TelemetryPolicy', 't') + 'spec:\n  targetRef: {kind: Mesh}\n',
    resources: [['TelemetryPolicy/t', 0]],
  },
  {
    name: 'TelemetryPolicy on a service',
    text: yamlDoc`
      apiVersion: isthmus.dev/v1alpha1
      kind: TelemetryPolicy
      metadata:
        name: checkout-telemetry
      spec:
        targetRef: {kind: Service, name: checkout}
        sampling: {tracesPerSecond: 0, minRatio: 1, keepErrors: false, keepSlowerThan: 1h}
        buffer: {maxBytes: 1TiB, segmentBytes: 64KiB, fsyncInterval: 1ms}
        heartbeatInterval: 100ms
        metricsInterval: 10m
        residency:
          logFieldsAllowedOut: [timestamp, status, http.route]
    `,
    resources: [['TelemetryPolicy/checkout-telemetry', 0]],
  },
  {
    name: 'minimal ExternalService',
    text: header('ExternalService', 'stripe') + 'spec:\n  host: api.stripe.com\n  ports: [443]\n',
    resources: [['ExternalService/stripe', 0]],
    specs: [{ host: 'api.stripe.com', ports: [443] }],
  },
  {
    name: 'ExternalService with a wildcard host',
    text: yamlDoc`
      apiVersion: isthmus.dev/v1alpha1
      kind: ExternalService
      metadata:
        name: s3
      spec:
        host: "*.s3.amazonaws.com"
        ports: [80, 443]
        protocol: tls
        allowedRegions: [us-east, eu-west]
    `,
    resources: [['ExternalService/s3', 0]],
  },
  {
    name: 'several documents in one file, with a leading --- and a document end marker',
    text:
      '---\n' +
      header('Region', 'us-east') +
      'spec: {zones: [{name: a}]}\n' +
      '---\n' +
      header('Service', 'checkout') +
      'spec: {ports: [{name: http, port: 80}]}\n' +
      '...\n' +
      '---\n' +
      header('TrafficPolicy', 'checkout') +
      'spec: {targetRef: {kind: Service, name: checkout}}\n',
    resources: [
      ['Region/us-east', 0],
      ['Service/checkout', 1],
      ['TrafficPolicy/checkout', 2],
    ],
  },
  {
    name: 'an empty trailing --- is not a document',
    text: header('Mesh', 'default') + 'spec: {}\n---\n',
    resources: [['Mesh/default', 0]],
  },
  {
    name: 'empty documents between --- markers are skipped',
    text: '---\n# nothing here yet\n---\n' + header('Mesh', 'default') + 'spec: {}\n---\n---\n',
    resources: [['Mesh/default', 1]],
  },
  {
    name: 'comments everywhere',
    text: yamlDoc`
      # Retries for the checkout service.
      apiVersion: isthmus.dev/v1alpha1 # the only version
      kind: TrafficPolicy
      metadata:
        # names are DNS labels
        name: checkout
      spec:
        targetRef: {kind: Service, name: checkout} # whole service
        retries:
          # three tries in all
          maxAttempts: 3
      # trailing comment
    `,
    resources: [['TrafficPolicy/checkout', 0]],
    specs: [{ targetRef: { kind: 'Service', name: 'checkout' }, retries: { maxAttempts: 3 } }],
  },
  {
    name: 'flow style (JSON) on one line',
    text:
      '{"apiVersion": "isthmus.dev/v1alpha1", "kind": "TrafficPolicy", "metadata": {"name": "p"},' +
      ' "spec": {"targetRef": {"kind": "Mesh"}, "timeouts": {"perTry": "250ms"}, "retries": {"budget": {"ratio": 0.2}}}}\n',
    resources: [['TrafficPolicy/p', 0]],
    specs: [
      { targetRef: { kind: 'Mesh' }, timeouts: { perTry: '250ms' }, retries: { budget: { ratio: 0.2 } } },
    ],
  },
  {
    name: 'flow style spread over lines, quoted strings and anchors',
    text: yamlDoc`
      apiVersion: "isthmus.dev/v1alpha1"
      kind: 'TrafficPolicy'
      metadata: {
        name: &svc checkout
      }
      spec: {
        targetRef: {kind: Service, name: *svc},
        timeouts: {perTry: "1s", overall: '3s'},
      }
    `,
    resources: [['TrafficPolicy/checkout', 0]],
    specs: [{ targetRef: { kind: 'Service', name: 'checkout' }, timeouts: { perTry: '1s', overall: '3s' } }],
  },
  {
    name: 'Windows line endings',
    text: (header('Service', 'checkout') + 'spec:\n  ports: [{name: http, port: 80}]\n').replace(
      /\n/g,
      '\r\n',
    ),
    resources: [['Service/checkout', 0]],
  },
  {
    name: 'an empty file',
    text: '',
    resources: [],
  },
  {
    name: 'a file of comments only',
    text: '# nothing\n\n# here\n',
    resources: [],
  },
];

describe('loadText: valid documents', () => {
  for (const c of VALID) {
    it(c.name, () => {
      const result = loadText(c.text, FILE);
      assert.deepEqual(result.diagnostics, [], `expected no diagnostics, got:\n${show(result.diagnostics)}`);
      assert.deepEqual(result.files, [FILE]);
      assert.deepEqual(
        result.resources.map((r) => [`${r.resource.kind}/${r.resource.metadata.name}`, r.docIndex]),
        c.resources,
      );
      for (const r of result.resources) {
        assert.equal(r.file, FILE);
        assert.equal(r.resource.apiVersion, 'isthmus.dev/v1alpha1');
      }
      if (c.specs) {
        assert.deepEqual(
          result.resources.map((r) => r.resource.spec),
          c.specs,
        );
      }
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Invalid documents
// ---------------------------------------------------------------------------------------------

interface ExpectedDiagnostic {
  rule: string | RegExp;
  line: number;
  /** One column, or the columns any of which is acceptable. */
  col: number | number[];
  /** The text the position points at (checked against the fixture, so the table stays honest). */
  at?: string;
  /** `null`: the diagnostic must have no path. */
  path?: string | null;
  resource?: string | null;
  message?: string | RegExp;
  expected?: string | RegExp;
  found?: string | RegExp;
  hint?: string | RegExp;
}

interface InvalidCase {
  name: string;
  text: string;
  diagnostics: ExpectedDiagnostic[];
  /** Resources that still load (`Kind/name`); none when absent. */
  resources?: string[];
}

/** A TrafficPolicy on the whole mesh; the lines appended after it start at line 7. */
const POLICY = header('TrafficPolicy', 'p') + 'spec:\n  targetRef: {kind: Mesh}\n';
const policy = (lines: string) => POLICY + lines;

const INVALID: InvalidCase[] = [
  {
    name: 'unknown field with a close match',
    text: policy('  retrys:\n    maxAttempts: 3\n'),
    diagnostics: [
      {
        rule: 'unknown-field',
        line: 7,
        col: 3,
        at: 'retrys:',
        path: 'spec.retrys',
        resource: 'TrafficPolicy/p',
        message: 'retrys',
        expected: 'retries',
        found: '"retrys"',
        hint: /did you mean "retries"/,
      },
    ],
  },
  {
    // Found by the load property test: String() of such a mapping throws, and the loader with it.
    name: 'a mapping whose key shadows an Object.prototype method where a choice is expected',
    text: policy('  consistency:\n    mode:\n      toString: null\n'),
    diagnostics: [
      {
        rule: 'wrong-type',
        line: 9,
        col: 7,
        at: 'toString',
        path: 'spec.consistency.mode',
        found: 'a mapping',
      },
    ],
  },
  {
    name: 'unknown top-level field',
    text: policy('status: {}\n'),
    diagnostics: [{ rule: 'unknown-field', line: 7, col: 1, at: 'status', path: 'status' }],
  },
  {
    name: 'duration written as a bare number',
    text: policy('  timeouts:\n    perTry: 250\n'),
    diagnostics: [
      {
        rule: 'wrong-type',
        line: 8,
        col: 13,
        at: '250',
        path: 'spec.timeouts.perTry',
        expected: /duration/,
        found: 'the number 250',
        hint: '"250ms"',
      },
    ],
  },
  {
    name: 'duration with a spelled-out unit',
    text: policy('  timeouts: {overall: 5 seconds}\n'),
    diagnostics: [
      {
        rule: 'invalid-duration',
        line: 7,
        col: 23,
        at: '5 seconds',
        path: 'spec.timeouts.overall',
        hint: '"5s"',
      },
    ],
  },
  {
    name: 'duration above its maximum',
    text: policy('  timeouts:\n    perTry: 2h\n'),
    diagnostics: [
      {
        rule: 'out-of-range',
        line: 8,
        col: 13,
        at: '2h',
        path: 'spec.timeouts.perTry',
        message: /above the maximum 1h/,
        expected: /from 1ms to 1h/,
      },
    ],
  },
  {
    name: 'duration below its minimum',
    text: policy('  retries:\n    budget: {window: 500ms}\n'),
    diagnostics: [
      {
        rule: 'out-of-range',
        line: 8,
        col: 22,
        at: '500ms',
        path: 'spec.retries.budget.window',
        message: /below the minimum 1s/,
      },
    ],
  },
  {
    name: 'ratio written as a percentage number',
    text: policy('  retries:\n    budget:\n      ratio: 20\n'),
    diagnostics: [
      {
        rule: 'out-of-range',
        line: 9,
        col: 14,
        at: '20',
        path: 'spec.retries.budget.ratio',
        expected: /ratio from 0 to 1/,
        hint: /write 0\.2\b/,
      },
    ],
  },
  {
    name: 'ratio written as a percentage string',
    text: policy('  localityFailover: {panicThreshold: 25%}\n'),
    diagnostics: [
      {
        rule: 'wrong-type',
        line: 7,
        col: 38,
        at: '25%',
        path: 'spec.localityFailover.panicThreshold',
        hint: /0\.25/,
      },
    ],
  },
  {
    name: 'integer out of range',
    text: policy('  retries:\n    maxAttempts: 0\n'),
    diagnostics: [
      {
        rule: 'out-of-range',
        line: 8,
        col: 18,
        at: '0',
        path: 'spec.retries.maxAttempts',
        expected: 'an integer from 1 to 10',
      },
    ],
  },
  {
    name: 'fractional integer',
    text: policy('  retries:\n    maxAttempts: 2.5\n'),
    diagnostics: [{ rule: 'wrong-type', line: 8, col: 18, at: '2.5', path: 'spec.retries.maxAttempts' }],
  },
  {
    name: '.nan is not a ratio',
    text: policy('  hedging: {afterQuantile: .nan}\n'),
    diagnostics: [{ rule: 'wrong-type', line: 7, col: 28, at: '.nan', path: 'spec.hedging.afterQuantile' }],
  },
  {
    name: 'size with a lowercase unit',
    text:
      header('TelemetryPolicy', 't') + 'spec:\n  targetRef: {kind: Mesh}\n  buffer:\n    maxBytes: 64mb\n',
    diagnostics: [
      { rule: 'invalid-size', line: 8, col: 15, at: '64mb', path: 'spec.buffer.maxBytes', hint: /"64MiB"/ },
    ],
  },
  {
    name: 'enum value with a typo',
    text: policy('  retries:\n    nonIdempotent: nevr\n'),
    diagnostics: [
      {
        rule: 'invalid-value',
        line: 8,
        col: 20,
        at: 'nevr',
        path: 'spec.retries.nonIdempotent',
        hint: '"never"',
      },
    ],
  },
  {
    name: 'YAML 1.1 boolean spelling is text in YAML 1.2',
    text: policy('  hedging:\n    enabled: yes\n'),
    diagnostics: [
      {
        rule: 'wrong-type',
        line: 8,
        col: 14,
        at: 'yes',
        path: 'spec.hedging.enabled',
        found: 'the text "yes"',
      },
    ],
  },
  {
    name: 'null where a section is expected',
    text: policy('  timeouts:\n'),
    diagnostics: [{ rule: 'wrong-type', line: 7, col: 12, path: 'spec.timeouts', found: 'null' }],
  },
  {
    name: 'bad resource name',
    text: header('Region', 'Us_east') + 'spec:\n  zones: [{name: a}]\n',
    diagnostics: [
      {
        rule: 'invalid-text',
        line: 4,
        col: 9,
        at: 'Us_east',
        path: 'metadata.name',
        resource: 'Region/Us_east',
        expected: /lowercase letters, digits and "-"/,
        hint: '"us-east"',
      },
    ],
  },
  {
    name: 'resource name longer than 63 characters',
    text: header('Region', 'r'.repeat(64)) + 'spec:\n  zones: [{name: a}]\n',
    diagnostics: [{ rule: 'invalid-length', line: 4, col: 9, path: 'metadata.name', found: '64 characters' }],
  },
  {
    name: 'unknown kind with a close match',
    text: header('Servce', 'checkout') + 'spec:\n  ports: [{name: http, port: 80}]\n',
    diagnostics: [
      {
        rule: 'unknown-kind',
        line: 2,
        col: 7,
        at: 'Servce',
        path: 'kind',
        expected: /Service/,
        found: 'the text "Servce"',
        hint: /did you mean "Service"/,
      },
    ],
  },
  {
    name: 'missing kind',
    text: 'apiVersion: isthmus.dev/v1alpha1\nmetadata: {name: x}\nspec: {}\n',
    diagnostics: [{ rule: 'missing-field', line: 1, col: 1, path: 'kind', message: /"kind"/ }],
  },
  {
    name: 'missing apiVersion',
    text: 'kind: Service\nmetadata: {name: checkout}\nspec: {ports: [{name: http, port: 80}]}\n',
    diagnostics: [
      {
        rule: 'missing-field',
        line: 1,
        col: 1,
        path: 'apiVersion',
        resource: 'Service/checkout',
        message: /"apiVersion"/,
        expected: '"isthmus.dev/v1alpha1"',
        found: 'nothing',
      },
    ],
  },
  {
    name: 'wrong apiVersion',
    text: 'apiVersion: isthmus.dev/v1\nkind: Service\nmetadata: {name: checkout}\nspec: {ports: [{name: http, port: 80}]}\n',
    diagnostics: [
      {
        rule: 'unknown-api-version',
        line: 1,
        col: 13,
        at: 'isthmus.dev/v1',
        path: 'apiVersion',
        expected: '"isthmus.dev/v1alpha1"',
        found: 'the text "isthmus.dev/v1"',
        hint: 'isthmus.dev/v1alpha1',
      },
    ],
  },
  {
    name: 'wrong apiVersion and a schema error are both reported',
    text: 'apiVersion: v1\nkind: Service\nmetadata: {name: checkout}\nspec: {ports: []}\n',
    diagnostics: [
      { rule: 'unknown-api-version', line: 1, col: 13, at: 'v1', path: 'apiVersion' },
      { rule: 'invalid-length', line: 4, col: 15, at: '[]', path: 'spec.ports' },
    ],
  },
  {
    name: 'missing spec',
    text: header('Service', 'checkout'),
    diagnostics: [{ rule: 'missing-field', line: 1, col: 1, path: 'spec', resource: 'Service/checkout' }],
  },
  {
    name: 'a list is not a resource',
    text: '- kind: Service\n- kind: Region\n',
    diagnostics: [
      { rule: 'not-a-resource', line: 1, col: 1, path: null, resource: null, found: 'a list of 2' },
    ],
  },
  {
    name: 'a scalar is not a resource',
    text: 'just some text\n',
    diagnostics: [
      { rule: 'not-a-resource', line: 1, col: 1, path: null, expected: 'a mapping', found: /just some text/ },
    ],
  },
  {
    name: 'YAML syntax error',
    text: header('Service', 'checkout') + 'spec:\n  ports: [{name: http: x, port: 80}]\n',
    diagnostics: [
      {
        rule: 'yaml-syntax',
        line: 6,
        col: 18,
        at: 'http: x',
        path: null,
        resource: null,
        hint: /YAML syntax/,
      },
    ],
  },
  {
    name: 'tab used for indentation',
    text: policy('  timeouts:\n\tperTry: 5s\n'),
    diagnostics: [{ rule: 'yaml-syntax', line: 8, col: 1, message: /[Tt]ab/ }],
  },
  {
    name: 'duplicate key in a block mapping',
    text: 'apiVersion: isthmus.dev/v1alpha1\nkind: Service\nmetadata:\n  name: a\n  name: b\nspec: {ports: [{name: http, port: 80}]}\n',
    diagnostics: [
      {
        rule: 'yaml-syntax',
        line: 5,
        col: 3,
        at: 'name: b',
        path: null,
        message: /unique/,
        hint: /once per mapping/,
      },
    ],
  },
  {
    name: 'duplicate key in a flow mapping',
    text: header('Service', 'checkout') + 'spec: {ports: [{name: http, port: 80, port: 81}]}\n',
    diagnostics: [{ rule: 'yaml-syntax', line: 5, col: 39, at: 'port: 81', hint: /once per mapping/ }],
  },
  {
    name: 'unresolved tag',
    text: policy('  timeouts: !duration {perTry: 5s}\n'),
    diagnostics: [{ rule: 'yaml-syntax', line: 7, col: 13, at: '!duration' }],
  },
  {
    name: 'duplicate entries in priorities',
    text: policy('  localityFailover:\n    priorities: [zone, region, zone]\n'),
    diagnostics: [
      {
        rule: 'duplicate-item',
        line: 8,
        col: 32,
        at: 'zone]',
        path: 'spec.localityFailover.priorities[2]',
        message: /same as item 0/,
      },
    ],
  },
  {
    name: 'empty priorities',
    text: policy('  localityFailover:\n    priorities: []\n'),
    diagnostics: [
      { rule: 'invalid-length', line: 8, col: 17, at: '[]', path: 'spec.localityFailover.priorities' },
    ],
  },
  {
    name: 'unknown entry in priorities',
    text: policy('  localityFailover:\n    priorities: [zone, regoin]\n'),
    diagnostics: [
      {
        rule: 'invalid-value',
        line: 8,
        col: 24,
        at: 'regoin',
        path: 'spec.localityFailover.priorities[1]',
        hint: '"region"',
      },
    ],
  },
  {
    name: 'Route target without a name',
    text: header('TrafficPolicy', 'p') + 'spec:\n  targetRef: {kind: Route, service: x}\n',
    diagnostics: [
      {
        rule: 'missing-field',
        line: 6,
        col: 14,
        at: '{kind: Route',
        path: 'spec.targetRef.name',
        message: /"name"/,
      },
    ],
  },
  {
    name: 'Route target without service or name',
    text: header('TrafficPolicy', 'p') + 'spec:\n  targetRef:\n    kind: Route\n',
    diagnostics: [
      { rule: 'missing-field', line: 7, col: 5, at: 'kind: Route', path: 'spec.targetRef.name' },
      { rule: 'missing-field', line: 7, col: 5, at: 'kind: Route', path: 'spec.targetRef.service' },
    ],
  },
  {
    name: 'missing targetRef',
    text: header('TrafficPolicy', 'p') + 'spec:\n  retries: {maxAttempts: 2}\n',
    diagnostics: [{ rule: 'missing-field', line: 6, col: 3, at: 'retries', path: 'spec.targetRef' }],
  },
  {
    name: 'target kind not allowed for the policy',
    text: header('PartitionPolicy', 'p') + 'spec:\n  targetRef: {kind: Service, name: x}\n',
    diagnostics: [{ rule: 'invalid-value', line: 6, col: 21, at: 'Service', path: 'spec.targetRef.kind' }],
  },
  {
    name: 'path match with both exact and prefix',
    text: yamlDoc`
      apiVersion: isthmus.dev/v1alpha1
      kind: Service
      metadata:
        name: checkout
      spec:
        ports: [{name: http, port: 80}]
        routes:
          - name: cart
            match:
              path: {exact: /cart, prefix: /cart/}
    `,
    diagnostics: [
      {
        rule: 'invalid-choice',
        line: 10,
        col: 15,
        at: '{exact',
        path: 'spec.routes[0].match.path',
        message: /exact or prefix/,
        found: '2 fields',
      },
    ],
  },
  {
    name: 'path match with neither exact nor prefix',
    text:
      header('Service', 'checkout') +
      'spec:\n  ports: [{name: http, port: 80}]\n  routes: [{name: r, match: {path: {}}}]\n',
    diagnostics: [{ rule: 'invalid-choice', line: 7, col: 36, at: '{}', path: 'spec.routes[0].match.path' }],
  },
  {
    name: 'invalid latencyHints key',
    text:
      header('Region', 'us-east') +
      'spec:\n  zones: [{name: a}]\n  latencyHints:\n    eu-west: 80ms\n    EU_Central: 90ms\n',
    diagnostics: [
      {
        rule: 'invalid-key',
        line: 9,
        col: 5,
        at: 'EU_Central',
        path: 'spec.latencyHints.EU_Central',
        found: /EU_Central/,
        // The suggestion must itself be a valid name.
        hint: '"eu-central"',
      },
    ],
  },
  {
    name: 'invalid latencyHints value',
    text: header('Region', 'us-east') + 'spec:\n  zones: [{name: a}]\n  latencyHints: {eu-west: 11s}\n',
    diagnostics: [{ rule: 'out-of-range', line: 7, col: 27, at: '11s', path: 'spec.latencyHints.eu-west' }],
  },
  {
    name: 'billion laughs',
    text: yamlDoc`
      a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]
      b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
      c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
      d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
      e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
      f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
      g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
      h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
      i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
    `,
    diagnostics: [{ rule: 'yaml-syntax', line: 1, col: 1, path: null, hint: String(MAX_ALIASES) }],
  },
  // YAML 1.1 tags that `yaml` still resolves produce Maps, Sets, Dates and Buffers; a section
  // written with one of them must be rejected once, not accepted as an empty mapping (hiding
  // `perTry: 5`) or reported as dozens of unknown fields named after Buffer methods.
  ...(['!!omap [{perTry: 5}]', '!!set {perTry}', '!!timestamp 2024-01-01', '!!binary aGVsbG8='] as const).map(
    (value): InvalidCase => ({
      name: `a section written as ${value.split(' ')[0]}`,
      text: policy(`  timeouts: ${value}\n`),
      // At the tag (column 13) or at the value after it.
      diagnostics: [{ rule: /^(wrong-type|yaml-syntax)$/, line: 7, col: [13, 14 + value.indexOf(' ')] }],
    }),
  ),
];

function matches(actual: string | undefined, want: string | RegExp, what: string): void {
  assert.ok(actual !== undefined, `${what}: missing, wanted ${String(want)}`);
  if (typeof want === 'string')
    assert.ok(actual.includes(want), `${what}: ${JSON.stringify(actual)} lacks ${JSON.stringify(want)}`);
  else assert.match(actual, want, what);
}

function checkDiagnostic(d: Diagnostic, want: ExpectedDiagnostic, label: string): void {
  if (want.rule instanceof RegExp) assert.match(d.rule, want.rule, `${label} rule`);
  else assert.equal(d.rule, want.rule, `${label} rule`);
  assert.equal(d.severity, 'error', `${label} severity`);
  assert.equal(d.file, FILE, `${label} file`);
  if (Array.isArray(want.col)) {
    assert.equal(d.line, want.line, `${label} line`);
    assert.ok(want.col.includes(d.col), `${label} col ${d.col}, wanted one of ${want.col.join(', ')}`);
  } else {
    assert.deepEqual([d.line, d.col], [want.line, want.col], `${label} position (line, col)`);
  }
  if (want.path === null) assert.equal(d.path, undefined, `${label} path`);
  else if (want.path !== undefined) assert.equal(d.path, want.path, `${label} path`);
  if (want.resource === null) assert.equal(d.resource, undefined, `${label} resource`);
  else if (want.resource !== undefined) assert.equal(d.resource, want.resource, `${label} resource`);
  assert.ok(d.message.length > 0, `${label} message is empty`);
  if (want.message !== undefined) matches(d.message, want.message, `${label} message`);
  if (want.expected !== undefined) matches(d.expected, want.expected, `${label} expected`);
  if (want.found !== undefined) matches(d.found, want.found, `${label} found`);
  if (want.hint !== undefined) matches(d.hint, want.hint, `${label} hint`);
}

describe('loadText: invalid documents', () => {
  for (const c of INVALID) {
    it(c.name, () => {
      // The table itself: every expected position points where the row says it does.
      for (const want of c.diagnostics) {
        if (want.at === undefined || Array.isArray(want.col)) continue;
        const there = textAt(c.text, want.line, want.col);
        assert.ok(
          there?.startsWith(want.at),
          `fixture: ${want.line}:${want.col} is ${JSON.stringify(there)}, not ${want.at}`,
        );
      }
      const started = Date.now();
      const result = loadText(c.text, FILE);
      assert.ok(Date.now() - started < 1000, 'loading took over a second');
      const diagnostics = [...result.diagnostics].sort(compareDiagnostics);
      assert.equal(
        diagnostics.length,
        c.diagnostics.length,
        `expected ${c.diagnostics.length} diagnostic(s), got:\n${show(diagnostics)}`,
      );
      c.diagnostics.forEach((want, i) =>
        checkDiagnostic(diagnostics[i] as Diagnostic, want, `diagnostic ${i + 1}`),
      );
      assert.deepEqual(ids(c.text), c.resources ?? [], 'resources loaded');
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Whole-file behaviour
// ---------------------------------------------------------------------------------------------

describe('loadText: every problem, every document', () => {
  it('reports all mistakes of a document in one run', () => {
    const text = yamlDoc`
      apiVersion: isthmus.dev/v1alpha1
      kind: TrafficPolicy
      metadata:
        name: Checkout_Reads
      spec:
        targetRef: {kind: Service, name: checkout}
        retrys: {}
        timeouts:
          perTry: 250
        retries:
          maxAttempts: 0
    `;
    const result = loadText(text, FILE);
    assert.deepEqual(
      result.diagnostics.map((d) => [d.line, d.col, d.rule, d.path]),
      [
        [4, 9, 'invalid-text', 'metadata.name'],
        [7, 3, 'unknown-field', 'spec.retrys'],
        [9, 13, 'wrong-type', 'spec.timeouts.perTry'],
        [11, 18, 'out-of-range', 'spec.retries.maxAttempts'],
      ],
    );
    assert.ok(result.diagnostics.every((d) => d.resource === 'TrafficPolicy/Checkout_Reads'));
    assert.deepEqual(result.resources, []);
  });

  it('reports every error of every document of a file, with file-wide line numbers', () => {
    const text =
      header('Region', 'us-east') + // lines 1-4
      'spec: {zones: [{name: a}]}\n' + // 5
      '---\n' + // 6
      header('TrafficPolicy', 'bad') + // 7-10
      'spec:\n' + // 11
      '  targetRef: {kind: Mesh}\n' + // 12
      '  retries: {maxAttempts: 11}\n' + // 13
      '---\n' + // 14
      header('Service', 'checkout') + // 15-18
      'spec: {ports: [{name: http, port: 80}]}\n' + // 19
      '---\n' + // 20
      'apiVersion: isthmus.dev/v1alpha1\nkind: Service\nmetadata: {name: [\n' + // 21-23: syntax error
      '---\n' + // 24
      header('Mesh', 'default') + // 25-28
      'spec: {}\n'; // 29
    const result = loadText(text, FILE);
    assert.deepEqual(
      result.resources.map((r) => [`${r.resource.kind}/${r.resource.metadata.name}`, r.docIndex]),
      [
        ['Region/us-east', 0],
        ['Service/checkout', 2],
        ['Mesh/default', 4],
      ],
    );
    const [range, ...syntax] = result.diagnostics;
    assert.ok(range, 'no diagnostics');
    assert.deepEqual(
      [range.line, range.col, range.rule, range.path, range.resource],
      [13, 26, 'out-of-range', 'spec.retries.maxAttempts', 'TrafficPolicy/bad'],
    );
    // The unclosed `[` inside `{` may be reported once or once per unclosed bracket.
    assert.ok(syntax.length >= 1, `no yaml-syntax diagnostic:\n${show(result.diagnostics)}`);
    for (const d of syntax) {
      assert.equal(d.rule, 'yaml-syntax');
      assert.ok(
        d.line >= 21 && d.line <= 24,
        `syntax error reported at line ${d.line}, outside its document`,
      );
    }
  });

  it('a syntax error in one document does not stop the next from loading', () => {
    const text = 'metadata: {name: [\n---\n' + header('Mesh', 'default') + 'spec: {}\n';
    const result = loadText(text, FILE);
    assert.ok(result.diagnostics.length >= 1, 'no diagnostics');
    for (const d of result.diagnostics) {
      assert.equal(d.rule, 'yaml-syntax', show(result.diagnostics));
      assert.ok(d.line <= 2, show(result.diagnostics));
    }
    assert.deepEqual(ids(text), ['Mesh/default']);
  });

  it('places syntax errors after a dedented line on the line they are on', () => {
    // Line 2 is a plain scalar that yaml folds into a multi-line token; the `:` of `b: c` is on line 3.
    const text = '  a: 1\nfoo bar\nb: c\n';
    const result = loadText(text, FILE);
    assert.ok(result.diagnostics.length > 0);
    for (const d of result.diagnostics) {
      assert.equal(d.rule, 'yaml-syntax');
      assert.ok(
        textAt(text, d.line, d.col) !== undefined,
        `${d.line}:${d.col} is outside the text:\n${show(result.diagnostics)}`,
      );
    }
    const colon = result.diagnostics.find((d) => d.message.includes('":"'));
    if (colon) assert.deepEqual([colon.line, colon.col], [3, 2], show(result.diagnostics));
  });

  it('names the file it was given in every diagnostic and resource', () => {
    const text = policy('  retrys: 1\n') + '---\n' + POLICY;
    const result = loadText(text, 'a/b.yml');
    assert.deepEqual(
      result.diagnostics.map((d) => d.file),
      ['a/b.yml'],
    );
    assert.deepEqual(
      result.resources.map((r) => r.file),
      ['a/b.yml'],
    );
    assert.deepEqual(result.files, ['a/b.yml']);
  });
});

describe('loadText: locating fields of loaded resources', () => {
  const text = yamlDoc`
    apiVersion: isthmus.dev/v1alpha1
    kind: TrafficPolicy
    metadata:
      name: p
    spec:
      targetRef: {kind: Mesh}
      retries:
        maxAttempts: 4
        retryOn: [reset, 5xx]
  `;
  const second = '---\n' + header('Mesh', 'default') + 'spec: {}\n';
  const [first, mesh] = loadText(text + second, FILE).resources;

  it('points at values, keys and list items', () => {
    assert.ok(first && mesh);
    assert.deepEqual(first.locate(['spec', 'retries', 'maxAttempts']), { file: FILE, line: 8, col: 18 });
    assert.deepEqual(first.locate(['spec', 'retries', 'maxAttempts'], true), { file: FILE, line: 8, col: 5 });
    assert.deepEqual(first.locate(['spec', 'retries', 'retryOn', 1]), { file: FILE, line: 9, col: 22 });
    assert.deepEqual(first.locate(['spec', 'targetRef', 'kind']), { file: FILE, line: 6, col: 21 });
  });

  it('falls back to the closest existing parent', () => {
    assert.ok(first);
    // `timeouts` is absent: the closest parent is the spec mapping, whose first key is on line 6.
    assert.deepEqual(first.locate(['spec', 'timeouts', 'perTry']), { file: FILE, line: 6, col: 3 });
    assert.deepEqual(first.locate(['spec', 'retries', 'retryOn', 7]), { file: FILE, line: 9, col: 14 });
  });

  it('counts lines from the start of the file in later documents', () => {
    assert.ok(mesh);
    assert.equal(mesh.docIndex, 1);
    assert.deepEqual(mesh.locate(['metadata', 'name']), { file: FILE, line: 14, col: 9 });
    assert.deepEqual(mesh.locate(['spec']), { file: FILE, line: 15, col: 7 });
  });
});
