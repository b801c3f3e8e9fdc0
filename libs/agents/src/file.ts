import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { AgentProfileError } from './store.js';

/** A profile file's content: JSON (`.json`) or YAML (`.yaml`, `.yml`), not yet checked against the schema. */
export async function readProfileFile(path: string): Promise<unknown> {
  const text = await readFile(path, 'utf8');
  const ext = extname(path).toLowerCase();
  try {
    if (ext === '.json') return JSON.parse(text);
    if (ext === '.yaml' || ext === '.yml') return parseYaml(text);
  } catch (err) {
    throw new AgentProfileError(`${path} is not valid ${ext.slice(1).toUpperCase()}: ${(err as Error).message}`);
  }
  throw new AgentProfileError(`${path}: a profile is a .json, .yaml or .yml file`);
}
