// Kept for src/transfer/jobs.ts until its split lands: the parts now live in src/transfer/adaptive/.
export { AdaptiveConcurrency, type AdaptiveDecision, type AdaptiveOptions } from './adaptive/controller.ts';
export { runWithLimit } from './adaptive/pool.ts';
export { CpuMeter, type CpuShare, watchCpu } from './adaptive/cpu.ts';
export { GzipLevelChooser, type GzipLevelOptions } from './adaptive/gzip-level.ts';
