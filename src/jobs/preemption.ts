// Priority that preempts, as the jobs engine decides it: among the jobs that move data over the node's link
// (push and pull transfers, node-wide: one uplink), a job runs only while no runnable job of higher Priority
// waits or runs. Pure functions over what the engine holds; the engine stops the losers and puts them back
// to Pending (what Orthanc shows of a queued job, and what its own resume goes through), not Running with a
// note: a client polling for Success or Failure needs nothing new, and the job takes no ConcurrentJobs slot.
import type { JobState, JobType } from './store.ts';

/** What the decision needs of one job. */
export interface Contender {
  readonly id: string;
  readonly type: JobType;
  readonly priority: number;
  /** Order of submission: between equal priorities, the older job is named. */
  readonly seq: number;
  readonly state: JobState;
}

/** The job that a preempted one gives way to. */
export interface Preemptor {
  readonly id: string;
  readonly priority: number;
}

/**
 * The runnable (Pending or Running) link job of highest Priority, the oldest of equals: the one every
 * link job of lower Priority gives way to. Undefined when no link job is runnable.
 */
export function topLinkJob(jobs: Iterable<Contender>, sharesLink: (type: JobType) => boolean): Preemptor | undefined {
  let top: Contender | undefined;
  for (const j of jobs) {
    if ((j.state !== 'Pending' && j.state !== 'Running') || !sharesLink(j.type)) continue;
    if (!top || j.priority > top.priority || (j.priority === top.priority && j.seq < top.seq)) top = j;
  }
  return top ? { id: top.id, priority: top.priority } : undefined;
}

/** Whether a link job of `priority` must give way to `top` (only a strictly higher Priority preempts). */
export function mustYield(priority: number, top: Preemptor | undefined): top is Preemptor {
  return top !== undefined && priority < top.priority;
}

/**
 * Whether the best Pending link job may start now: its Priority is the highest among the runnable link
 * jobs (the store claims by Priority, so the first link job it hands out is one of those).
 */
export function mayStartLinkJob(jobs: Iterable<Contender>, sharesLink: (type: JobType) => boolean, top: Preemptor | undefined): boolean {
  if (!top) return true;
  for (const j of jobs) if (j.state === 'Pending' && sharesLink(j.type) && j.priority === top.priority) return true;
  return false;
}

/** What the engine holds of a link job, as a preemption pass reads and marks it. */
export interface LinkJob {
  readonly row: Contender;
  readonly controller?: AbortController;
  /** The run is in its preemptible stretch. */
  readonly preemptible?: boolean;
  /** The running job gives way to this one (stopped at once, or when its preemptible stretch begins). */
  yieldTo?: Preemptor;
  /** The Pending job was stopped by a preemption: its Content.Waiting says so until it runs again. */
  preemptedBy?: Preemptor;
}

/** What a pass tells the engine: a running job must give way, or a Pending one waits for another job. */
export interface PreemptionHooks<J extends LinkJob> {
  /** First told for a running job: it gives way to `by` (its signal is aborted by the pass when it may be). */
  yielding(job: J, by: Preemptor): void;
  /** Sets (a Preemptor) or clears (undefined) what a preempted Pending job's Content.Waiting says. */
  waiting(job: J, by: Preemptor | undefined): void;
}

/**
 * One pass over the link jobs: each running one of lower Priority than the best runnable one gives way (its
 * signal aborted with 'preempt' if it is in its preemptible stretch, else marked to stop as it enters it);
 * one whose preemptor is gone goes on; a preempted Pending job names the job it waits for. Answers whether
 * a Pending link job may start now, and the job that every link job of lower Priority gives way to.
 */
export function preemptionPass<J extends LinkJob>(
  jobs: readonly J[],
  hooks: PreemptionHooks<J>,
): { mayStart: boolean; top: Preemptor | undefined } {
  const rows = jobs.map((j) => j.row);
  const all = () => true;
  const top = topLinkJob(rows, all);
  for (const j of jobs) {
    const { state, priority } = j.row;
    if (!mustYield(priority, top)) {
      // The job it was to give way to is gone before its preemptible stretch began: it goes on.
      if (state === 'Running' && !j.controller?.signal.aborted) j.yieldTo = undefined;
      if (state === 'Pending' && j.preemptedBy) hooks.waiting(j, undefined);
    } else if (state === 'Running') {
      if (!j.yieldTo) hooks.yielding(j, top);
      j.yieldTo ??= top;
      if (j.preemptible) j.controller?.abort('preempt');
    } else if (state === 'Pending' && j.preemptedBy && j.preemptedBy.id !== top.id) hooks.waiting(j, top);
  }
  return { mayStart: mayStartLinkJob(rows, all, top), top };
}

/** Content.Waiting of a job that gave way. */
export function preemptedText(by: Preemptor): string {
  return `preempted by job ${by.id} (priority ${by.priority}); resumes where it stopped when that job ends`;
}
