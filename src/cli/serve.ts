// Placeholder until the 'serve' command lands.
import type { Command } from 'commander';

export function registerServe(program: Command): void {
  void program;
}
