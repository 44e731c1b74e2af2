// One job: what it moves and where, live progress, its rate over time (one point a second, kept by the
// node while the job runs), buckets done, retries, the rate limit it meets, why it waits (a job of higher
// Priority it gave way to, linked), and what went wrong in plain words.
import { get } from '../api.js';
import { TimeChart } from '../chart.js';
import { h, replace } from '../dom.js';
import { bytes, count, dicomDate, duration, localTime, parseOrthancTime, personName, plainError, rate, waitingText } from '../format.js';
import { aboutOf, jobRate, refreshJobs, sizeText, state, subscribe, wireRate } from '../state.js';
import { jobButtons, jobTitle, progressBar, stateBadge } from './common.js';
import { secondsLeft } from './transfers.js';

/** Rate points (bytes/s) from the history's byte estimates, smoothed over 3 seconds. */
export function ratePoints(points) {
  const out = [];
  for (let i = 1; i < points.length; i++) {
    const a = points[Math.max(0, i - 3)];
    const b = points[i];
    const secs = (b.t - a.t) / 1000;
    if (secs > 0) out.push({ t: b.t, v: Math.max(0, (b.bytes - a.bytes) / secs) });
  }
  return out;
}

/** " at 14:02:11" for a retry's Orthanc timestamp, or nothing when it cannot be read. */
function retryAt(time) {
  const t = parseOrthancTime(time);
  return Number.isFinite(t) ? ` at ${localTime(t)}` : '';
}

function fact(label, value, key) {
  return h('div.fact', { dataset: { fact: key ?? label.toLowerCase().replace(/\W+/g, '-') } }, h('dt', label), h('dd', value ?? '–'));
}

function resourcesList(resources) {
  if (!Array.isArray(resources) || resources.length === 0) return '–';
  return h(
    'ul.resources',
    resources.map((r) => h('li', h('span.level', r.Level), ' ', h('span.mono', r.ID))),
  );
}

function rateChart(canvas) {
  return new TimeChart(canvas, {
    format: (v) => rate(v),
    minMax: 1024 * 1024,
    binary: true,
    series: [
      { label: 'rate', color: '--accent', points: [] },
      { label: 'average', color: '--accent-2', points: [] },
    ],
  });
}

/** The facts of the summary panel: what the job moves, where, how fast, and since when. */
function jobFacts(job) {
  const c = job.Content ?? {};
  const created = parseOrthancTime(job.CreationTime);
  const completed = parseOrthancTime(job.CompletionTime);
  const left = secondsLeft(job);
  const about = aboutOf(job);
  const finished = job.State === 'Success' || job.State === 'Failure';
  return h(
    'dl.facts',
    fact('Patient', about ? (about.PatientName ? personName(about.PatientName) : (about.PatientID ?? '–')) : '–', 'patient'),
    fact('Study', about?.StudyDescription ?? '–', 'study'),
    fact('Study date', about?.StudyDate ? dicomDate(about.StudyDate) : '–', 'study-date'),
    fact('Size', sizeText(job, bytes)),
    fact('Instances', c.TotalInstances ?? '–'),
    fact('Buckets', c.TotalBuckets !== undefined ? `${c.CompletedHttpQueries ?? 0} / ${c.TotalBuckets} done` : '–', 'buckets'),
    // The same figures as the job's row: data = DICOM bytes per second, wire = bytes on the network.
    fact('Data rate now', job.State === 'Running' ? rate(jobRate(job)) : '–', 'data-rate'),
    fact('Wire rate now', job.State === 'Running' ? rate(wireRate(job)) : '–', 'wire-rate'),
    fact('Wire rate (average)', c.NetworkSpeedKBs !== undefined ? rate(c.NetworkSpeedKBs * 1024) : '–', 'average-rate'),
    fact('Time left', Number.isFinite(left) ? duration(left) : '–'),
    finished ? fact('Took', duration(job.EffectiveRuntime), 'took') : fact('Running for', duration(job.EffectiveRuntime)),
    fact('Retries', String(c.Retries ?? 0), 'retries'),
    c.SkippedInstances !== undefined
      ? fact(
          'Already at the destination',
          c.SkippedInstances > 0
            ? `${count(c.SkippedInstances, 'instance', 'instances')} (${bytes(c.SkippedBytes ?? 0)}) not sent again`
            : 'none',
          'skipped',
        )
      : null,
    fact('Compression', c.Compression ?? '–'),
    fact('Peer', c.Peer ?? '–'),
    // The bandwidth policy's limit for this transfer (the peer's RateLimit and the node's), kept current.
    c.RateLimit !== undefined || TRANSFER_TYPES.has(job.Type)
      ? fact('Rate limit', typeof c.RateLimit === 'number' ? `${c.RateLimit} Mbit/s` : 'none', 'rate-limit')
      : null,
    c.Route ? fact('Routing rule', h('a', { href: '#/routes' }, String(c.Route)), 'route') : null,
    fact('Priority', String(job.Priority ?? 0)),
    fact('Created', localTime(created)),
    Number.isFinite(completed) ? fact('Finished', localTime(completed)) : null,
    c.RemoteJobURL ? fact("Peer's job", h('span.mono', String(c.RemoteJobURL)), 'remote-job') : null,
    c.RemoteControl ? fact('Passed on to the peer', String(c.RemoteControl), 'remote-control') : null,
    Array.isArray(c.PeerExtensions)
      ? fact('Extensions used', c.PeerExtensions.length ? c.PeerExtensions.join(', ') : 'none (plain protocol)', 'extensions')
      : null,
    fact('ID', h('span.mono', job.ID), 'id'),
  );
}

/** Job types that move data over a peer's link (the bandwidth policy applies to them). */
const TRANSFER_TYPES = new Set(['PushTransfer', 'PullTransfer']);

/** The waiting notice; a job that gave way to one of higher Priority links to that job. */
function waitingView(waiting) {
  const m = /^preempted by job ([0-9a-f-]+)(.*)$/s.exec(waiting);
  if (!m) return h('p.alert.warn', { dataset: { waiting: 'job' } }, `Waiting: ${waiting}`);
  return h(
    'p.alert.warn',
    { dataset: { waiting: 'job', preemptedBy: m[1] } },
    'Waiting: preempted by ',
    h('a', { href: `#/jobs/${m[1]}` }, `job ${m[1]}`),
    m[2],
  );
}

/** The summary panel's content: waiting notice, progress, facts, last retry, resources. */
function summaryView(job) {
  const c = job.Content ?? {};
  const waiting = waitingText(job);
  return [
    waiting ? waitingView(waiting) : null,
    h('div.big-progress', progressBar(job.Progress, job.State), h('span.pct', `${job.Progress ?? 0}%`)),
    jobFacts(job),
    c.LastRetryCause
      ? h('p.alert.warn', { dataset: { retry: 'last' } }, `Last retry${retryAt(c.LastRetryTime)}: ${c.LastRetryCause}`)
      : null,
    h('h3', 'Resources'),
    resourcesList(c.Resources),
  ];
}

/** What went wrong, in plain words, or null. */
function errorView(job) {
  const err = plainError(job);
  return err
    ? h(
        'div.alert.error',
        { role: 'alert', dataset: { error: 'job' } },
        h('strong', err.sentence),
        err.details ? h('p', err.details) : null,
        h('p.muted', err.code),
      )
    : null;
}

export function jobPage(main, id) {
  const head = h('div.page-head');
  const summary = h('section.panel');
  const errorBox = h('div');
  const canvas = h('canvas.chart', { 'aria-label': 'Rate of this job over time' });
  const chart = rateChart(canvas);
  const raw = h('pre.raw');
  main.append(
    h('p.crumbs', h('a', { href: '#/transfers' }, '← Transfers')),
    head,
    errorBox,
    summary,
    h('section.panel', h('h2', 'Rate', h('span.legend', h('i.sent'), 'data, now', h('i.received'), 'wire, average')), canvas),
    h('details.panel', h('summary', 'Job JSON'), raw),
  );

  let history = [];
  let lastState;

  function render() {
    const job = state.jobs.get(id);
    if (!job) {
      replace(head, h('h1', 'Job not found'));
      replace(summary, h('p.muted', `No job ${id} on this node (finished jobs are kept only up to JobsHistorySize).`));
      return;
    }
    if (lastState !== job.State) {
      replace(head, h('h1', jobTitle(job), ' ', stateBadge(job.State)), jobButtons(job));
      lastState = job.State;
    }
    replace(summary, ...summaryView(job));
    replace(errorBox, errorView(job));
    raw.textContent = JSON.stringify(job, null, 2);
  }

  function renderChart() {
    const job = state.jobs.get(id);
    const pts = ratePoints(history);
    chart.series[0].points = pts;
    chart.series[1].points = history.map((p) => ({ t: p.t, v: p.speedKBs * 1024 }));
    chart.empty =
      job && job.State !== 'Running' && pts.length === 0
        ? 'No rate history: the job did not run for two seconds in a row while this node was up.'
        : 'Waiting for data…';
    chart.draw();
  }

  async function loadHistory() {
    try {
      history = (await get(`/ui/api/jobs/${id}/history`)).Points ?? [];
      renderChart();
    } catch {
      // The job is gone, or the node is not reachable now: the chart keeps what it had.
    }
  }

  if (!state.jobs.has(id)) refreshJobs();
  render();
  loadHistory();
  const unsub = subscribe((kind, data) => {
    if (kind === 'jobs' || ((kind === 'job' || kind === 'about') && (data?.ID ?? data) === id)) render();
  });
  // The history grows by one point a second while the job runs.
  const timer = setInterval(() => {
    const job = state.jobs.get(id);
    render();
    if (job?.State === 'Running') loadHistory();
  }, 1000);
  return () => {
    unsub();
    clearInterval(timer);
    chart.dispose();
  };
}
