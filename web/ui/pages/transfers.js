// The transfers page: counts by state, the node's rate over the last minutes, and every job with live
// progress, rate, time left, size and its controls.
import { TimeChart } from '../chart.js';
import { h, replace } from '../dom.js';
import { aboutText, bytes, duration, parseOrthancTime, plainError, rate, waitingText } from '../format.js';
import { aboutOf, jobRate, sizeText, state, subscribe, totalBytes, wireRate } from '../state.js';
import { jobButtons, jobTitle, progressBar, stateBadge } from './common.js';

const FILTERS = {
  all: () => true,
  active: (j) => ['Pending', 'Running', 'Paused'].includes(j.State),
  finished: (j) => ['Success', 'Failure'].includes(j.State),
};

/** Seconds left: from the job's own estimate, else from the live rate. */
export function secondsLeft(job) {
  if (job.State !== 'Running') return NaN;
  const eta = parseOrthancTime(job.EstimatedTimeOfArrival);
  if (Number.isFinite(eta)) return Math.max(0, (eta - Date.now()) / 1000);
  const r = jobRate(job);
  const total = totalBytes(job) ?? 0;
  return r > 0 && total > 0 ? (total * (1 - (job.Progress ?? 0) / 100)) / r : NaN;
}

/** "12 instances" from the job's Content, or '' before the job has counted them. */
export function instancesText(job) {
  const n = job.Content?.TotalInstances;
  return typeof n === 'number' ? `${n} ${n === 1 ? 'instance' : 'instances'}` : '';
}

/** Why a job is not moving, for its row: the wait of a running job, the reason of a failed one. */
export function noteOf(job) {
  const w = waitingText(job);
  if (w) return { kind: 'waiting', text: `Waiting: ${w}` };
  const e = plainError(job);
  // Details that only repeat the error's name (a cancel) add nothing to the sentence.
  if (e) return { kind: 'failed', text: e.details && e.details !== job.ErrorDescription ? `${e.sentence} ${e.details}` : e.sentence };
  return undefined;
}

/** A job's row; `update(job)` refreshes its figures in place while its state is the same. */
function jobRow(job) {
  const fill = progressBar(job.Progress, job.State);
  const pct = h('span.pct');
  const about = h('span.job-about');
  const size = h('span', { title: 'Size' });
  const count = h('span', { dataset: { figure: 'instances' } });
  const data = h('span', { title: 'Data rate: DICOM bytes moved per second (before compression)', dataset: { figure: 'data-rate' } });
  const wire = h('span', { title: 'Wire rate: bytes on the network per second (compressed when gzip)', dataset: { figure: 'wire-rate' } });
  const left = h('span', { title: 'Time left', dataset: { figure: 'time' } });
  const note = h('span.job-note');
  const li = h(
    'li.job',
    { dataset: { jobId: job.ID, state: job.State } },
    h(
      'a.job-main',
      { href: `#/jobs/${job.ID}` },
      h('span.job-line', h('span.job-title', jobTitle(job)), h('span.job-id.mono', job.ID.slice(0, 8)), stateBadge(job.State)),
      about,
    ),
    h('span.job-progress', fill, pct),
    h('span.job-figures', size, count, data, wire, left),
    jobButtons(job),
    note,
  );
  const update = (j) => {
    const p = Math.max(0, Math.min(100, j.Progress ?? 0));
    fill.firstChild.style.width = `${p}%`;
    fill.setAttribute('aria-valuenow', String(p));
    pct.textContent = `${p}%`;
    about.textContent = aboutText(aboutOf(j));
    size.textContent = sizeText(j, bytes);
    count.textContent = instancesText(j);
    const running = j.State === 'Running';
    data.textContent = running ? `data ${rate(jobRate(j))}` : '';
    wire.textContent = running ? `wire ${rate(wireRate(j))}` : '';
    const s = secondsLeft(j);
    if (Number.isFinite(s)) left.textContent = `${duration(s)} left`;
    else if (j.State === 'Success' || j.State === 'Failure') left.textContent = `took ${duration(j.EffectiveRuntime)}`;
    else left.textContent = '';
    const n = noteOf(j);
    note.textContent = n ? n.text : '';
    note.dataset.note = n ? n.kind : '';
    note.hidden = !n;
  };
  update(job);
  return { li, state: job.State, title: jobTitle(job), update };
}

/** The cards counting the jobs by state. */
function countCards(jobs) {
  const by = (s) => jobs.filter((j) => j.State === s).length;
  return [
    ['Running', by('Running')],
    ['Pending', by('Pending')],
    ['Paused', by('Paused')],
    ['Succeeded', by('Success')],
    ['Failed', by('Failure')],
  ].map(([label, n]) => h('div.card', { dataset: { count: label.toLowerCase() } }, h('span.n', n), h('span.label', label)));
}

function nodeRateChart(canvas) {
  return new TimeChart(canvas, {
    format: (v) => rate(v),
    minMax: 1024 * 1024,
    binary: true,
    series: [
      { label: 'sent', color: '--accent', points: [] },
      { label: 'received', color: '--accent-2', points: [] },
    ],
  });
}

export function transfersPage(main) {
  let filter = 'all';
  const rows = new Map();
  const counts = h('div.cards');
  const list = h('ul.jobs', { 'aria-live': 'polite' });
  const canvas = h('canvas.chart.small', { 'aria-label': 'Transfer rate of the node over the last minutes' });
  const chart = nodeRateChart(canvas);
  const filterBar = h(
    'div.segmented',
    { role: 'group', 'aria-label': 'Show' },
    Object.keys(FILTERS).map((f) =>
      h(
        'button',
        {
          type: 'button',
          class: f === filter ? 'on' : '',
          dataset: { filter: f },
          onclick: () => {
            filter = f;
            render();
          },
        },
        f[0].toUpperCase() + f.slice(1),
      ),
    ),
  );

  main.append(
    h('div.page-head', h('h1', 'Transfers'), filterBar),
    counts,
    h(
      'section.panel',
      h(
        'h2',
        'Node wire rate',
        h('span.legend', { title: 'Bytes on the network, all jobs' }, h('i.sent'), 'sent', h('i.received'), 'received'),
      ),
      canvas,
    ),
    h('section.panel', list),
  );

  function render() {
    for (const b of filterBar.querySelectorAll('button')) b.classList.toggle('on', b.dataset.filter === filter);
    const jobs = [...state.jobs.values()].sort((a, b) => String(b.CreationTime ?? '').localeCompare(String(a.CreationTime ?? '')));
    replace(counts, countCards(jobs));
    const shown = jobs.filter(FILTERS[filter]);
    if (shown.length === 0) {
      rows.clear();
      replace(list, h('li.empty', 'No transfers yet. Start one from the Store page.'));
      return;
    }
    const want = shown.map((j) => {
      let r = rows.get(j.ID);
      // A row is rebuilt only when the job changes state (its buttons change); else updated in place.
      if (!r || r.state !== j.State || r.title !== jobTitle(j)) {
        r = jobRow(j);
        rows.set(j.ID, r);
      } else r.update(j);
      return r.li;
    });
    for (const id of [...rows.keys()]) if (!shown.some((j) => j.ID === id)) rows.delete(id);
    const same = want.length === list.children.length && want.every((li, i) => list.children[i] === li);
    if (!same) replace(list, want);
  }

  function renderChart() {
    chart.series[0].points = state.throughput.map((p) => ({ t: p.t, v: p.sent }));
    chart.series[1].points = state.throughput.map((p) => ({ t: p.t, v: p.received }));
    chart.draw();
  }

  render();
  renderChart();
  // Rows are rebuilt at most a few times a second, however many events arrive.
  let pending = false;
  const unsub = subscribe((kind) => {
    if (kind === 'throughput') return renderChart();
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      render();
    });
  });
  const tick = setInterval(render, 1000);
  return () => {
    unsub();
    clearInterval(tick);
    chart.dispose();
  };
}
