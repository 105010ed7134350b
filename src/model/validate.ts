import { checkMesh } from './checks.js';
import { compareDiagnostics, type Diagnostic } from './diagnostics.js';
import { loadDocuments, loadPaths, loadText, type LoadResult, type LoadedResource } from './load.js';

export interface ValidationResult {
  resources: LoadedResource[];
  diagnostics: Diagnostic[];
  files: string[];
  errors: number;
  warnings: number;
  /** True when there is no error (warnings allowed). */
  ok: boolean;
}

function finish(loaded: LoadResult): ValidationResult {
  const diagnostics = [...loaded.diagnostics, ...checkMesh(loaded.resources, loaded.rejected)].sort(
    compareDiagnostics,
  );
  const errors = diagnostics.filter((d) => d.severity === 'error').length;
  return {
    resources: loaded.resources,
    diagnostics,
    files: loaded.files,
    errors,
    warnings: diagnostics.length - errors,
    ok: errors === 0,
  };
}

/** Loads and fully validates the resources below `paths`: schema, references and merged policies. */
export async function validatePaths(paths: readonly string[]): Promise<ValidationResult> {
  return finish(await loadPaths(paths));
}

/** Same as validatePaths for one file's text. */
export function validateText(text: string, file = '<input>'): ValidationResult {
  return finish(loadText(text, file));
}

/**
 * Same as validatePaths for in-memory documents (the resources of a control-plane snapshot);
 * problems are located at `ORIGIN#INDEX`, line 1.
 */
export function validateDocuments(docs: readonly unknown[], origin: string): ValidationResult {
  return finish(loadDocuments(docs, origin));
}
