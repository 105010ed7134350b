// Layering of the Isthmus source tree. A folder may import only from the folders
// listed as beneath it; `npm test` fails on any other edge and on any import cycle.
// Order, lowest first: core < model < protocol < telemetry < dataplane < controlplane < chaos
// < dashboard < lab < cli. See docs/architecture.md.
const layers = [
  'core',
  'model',
  'protocol',
  'telemetry',
  'dataplane',
  'controlplane',
  'chaos',
  'dashboard',
  'lab',
  'cli',
];

const upward = layers.map((layer, i) => ({
  name: `layer-${layer}`,
  comment: `src/${layer} may only import from lower layers (${layers.slice(0, i).join(', ') || 'none'})`,
  severity: 'error',
  from: { path: `^src/${layer}/` },
  to: { path: `^src/(${layers.slice(i + 1).join('|') || '__none__'})/` },
}));

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'Import cycles make initialisation order fragile and layers meaningless.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'src-not-from-test',
      comment: 'Shipped code never imports test or bench code.',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench)/' },
    },
    {
      name: 'no-unresolvable',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
    ...upward,
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default'],
    },
  },
};
