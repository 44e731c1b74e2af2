// Placeholder until the 'generate' command lands.
import type { Command } from 'commander';

export function registerGenerate(program: Command): void {
  void program;
}
