// How busy the machine's cores and this process are, sampled from the OS: what the gzip level of the
// bodies a node compresses is chosen from (GzipLevelChooser).
import { cpus } from 'node:os';
import { clamp } from './common.ts';

/** How busy the machine and this process were between two samples of a CpuMeter. */
export interface CpuShare {
  /** Share of all the machine's cores that were busy, whatever the process (0 to 1). */
  busy: number;
  /** This process' CPU, in cores (1.5: one core and a half busy). */
  own: number;
  /** Cores of the machine. */
  cores: number;
}

/** Samples the machine's CPU times (os.cpus) and this process' (process.cpuUsage), as shares since the last sample. */
export class CpuMeter {
  #last: { idle: number; total: number; own: number; at: number; cores: number } | undefined;

  #read(): { idle: number; total: number; own: number; at: number; cores: number } {
    let idle = 0;
    let total = 0;
    const all = cpus();
    for (const c of all) {
      idle += c.times.idle;
      total += c.times.user + c.times.nice + c.times.sys + c.times.idle + c.times.irq;
    }
    const u = process.cpuUsage();
    return { idle, total, own: (u.user + u.system) / 1000, at: performance.now(), cores: Math.max(1, all.length) };
  }

  /** The shares since the previous call; undefined on the first call or when no time has passed. */
  sample(): CpuShare | undefined {
    const now = this.#read();
    const last = this.#last;
    this.#last = now;
    if (!last || now.total <= last.total || now.at <= last.at) return undefined;
    const busy = 1 - (now.idle - last.idle) / (now.total - last.total);
    return { busy: clamp(busy, 0, 1), own: Math.max(0, (now.own - last.own) / (now.at - last.at)), cores: now.cores };
  }
}

/** What watchCpu feeds: a GzipLevelChooser, or anything else that follows the CPU. */
export interface CpuObserver {
  observe(cpu: CpuShare): void;
}

/**
 * Samples the CPU once a second while `active()` says bodies are being compressed, and feeds `chooser`.
 * Answers the function that stops it.
 */
export function watchCpu(chooser: CpuObserver, active: () => boolean, everyMs = 1000): () => void {
  const meter = new CpuMeter();
  meter.sample();
  const timer = setInterval(() => {
    const s = meter.sample();
    if (s && active()) chooser.observe(s);
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
