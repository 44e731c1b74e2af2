// Placeholder until the 'import' command lands.
import type { Command } from 'commander';

export function registerImport(program: Command): void {
  void program;
}
