import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';

/** Every .ts file under `directory`, at any depth. */
export function sourceFiles(directory: string): string[] {
  return readdirSync(directory).flatMap((entry) => {
    const full = path.join(directory, entry);
    if (statSync(full).isDirectory()) return sourceFiles(full);
    return entry.endsWith('.ts') ? [full] : [];
  });
}
