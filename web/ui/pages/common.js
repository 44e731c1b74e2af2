// Pieces shared by the pages: state badges, progress bars, the job controls and their buttons.
import { jobAction } from '../api.js';
import { h, toast } from '../dom.js';
import { refreshJobs } from '../state.js';

export function stateBadge(stateName) {
  return h('span.badge', { class: `badge state-${String(stateName).toLowerCase()}` }, stateName);
}

/** A bar showing `percent` (0..100). */
export function progressBar(percent, stateName) {
  const fill = h('span.fill');
  fill.style.width = `${Math.max(0, Math.min(100, percent || 0))}%`;
  return h(
    'span.bar',
    {
      class: `bar state-${String(stateName ?? '').toLowerCase()}`,
      role: 'progressbar',
      'aria-valuemin': 0,
      'aria-valuemax': 100,
      'aria-valuenow': percent || 0,
    },
    fill,
  );
}

const ACTIONS = {
  pause: { label: 'Pause', when: ['Pending', 'Running'], done: 'paused' },
  resume: { label: 'Resume', when: ['Paused'], done: 'resumed' },
  cancel: { label: 'Cancel', when: ['Pending', 'Running', 'Paused'], done: 'canceled' },
  resubmit: { label: 'Resubmit', when: ['Failure'], done: 'resubmitted' },
};

/** The buttons that make sense for a job in its state. */
export function jobButtons(job) {
  return h(
    'span.actions',
    Object.entries(ACTIONS)
      .filter(([, a]) => a.when.includes(job.State))
      .map(([name, a]) =>
        h(
          'button',
          {
            type: 'button',
            class: `btn small ${name === 'cancel' ? 'danger' : ''}`,
            dataset: { action: name, job: job.ID },
            onclick: async (e) => {
              e.preventDefault();
              e.stopPropagation();
              const btn = e.currentTarget;
              if (name === 'cancel' && !confirm('Cancel this transfer? What was sent so far is discarded.')) return;
              btn.disabled = true;
              try {
                await jobAction(job.ID, name);
                toast(`Job ${job.ID.slice(0, 8)} ${a.done}.`);
              } catch (err) {
                toast(`Could not ${name} the job: ${err.message}`, 'error');
              } finally {
                btn.disabled = false;
                refreshJobs();
              }
            },
          },
          a.label,
        ),
      ),
  );
}

/** "Push to b" / "Pull from a". */
export function jobTitle(job) {
  const peer = job.Content?.Peer ?? '?';
  if (job.Type === 'PushTransfer') return `Push to ${peer}`;
  if (job.Type === 'PullTransfer') return `Pull from ${peer}`;
  // A send in pull mode: the peer pulls, this node follows the peer's job.
  if (job.Type === 'RemotePullTransfer') return `Send to ${peer} (pulled by ${peer})`;
  return job.Type ?? 'Job';
}
