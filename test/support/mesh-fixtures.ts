/** Small, valid resource documents for tests, composed with `yamlStream`. */
export const API = 'apiVersion: isthmus.dev/v1alpha1';

export function yamlStream(...docs: string[]): string {
  return docs.map((d) => d.trim()).join('\n---\n') + '\n';
}

export const region = (name: string, zones: string[] = [`${name}-a`], hints = '') => `
${API}
kind: Region
metadata: {name: ${name}}
spec:
  zones: [${zones.map((z) => `{name: ${z}}`).join(', ')}]
${hints ? `  latencyHints: ${hints}` : ''}`;

export const service = (name: string, extra = '') => `
${API}
kind: Service
metadata: {name: ${name}}
spec:
  ports: [{name: http, port: 8080}]
${extra}`;

export const trafficPolicy = (name: string, target: string, body: string) => `
${API}
kind: TrafficPolicy
metadata: {name: ${name}}
spec:
  targetRef: ${target}
${body}`;
