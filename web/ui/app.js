// The dashboard's shell: the page router (#/transfers, #/jobs/{id}, #/peers, #/routes, #/store), the live job list
// fed by Server-Sent Events (polling when they cannot be had), and the node's rate in the header.
import { replace } from './dom.js';
import { rate } from './format.js';
import { jobPage } from './pages/job.js';
import { peersPage } from './pages/peers.js';
import { routesPage } from './pages/routes.js';
import { storePage } from './pages/store.js';
import { transfersPage } from './pages/transfers.js';
import { emit, refreshJobs, refreshOverview, setJob, setJobs, state } from './state.js';

function showRate(t) {
  document.getElementById('live-rate').textContent = `wire ↑ ${rate(t.sent)}  ↓ ${rate(t.received)}`;
}

function setConnected(on) {
  state.connected = on;
  const dot = document.getElementById('live-dot');
  dot.classList.toggle('on', on);
  dot.title = on ? 'Live: updates arrive as they happen' : 'Not live: polling every few seconds';
}

let pollTimer;

function startPolling() {
  if (pollTimer) return;
  setConnected(false);
  pollTimer = setInterval(() => {
    refreshJobs();
    refreshOverview().then(() => state.overview?.Throughput && showRate(state.overview.Throughput));
  }, 2000);
}

function stopPolling() {
  clearInterval(pollTimer);
  pollTimer = undefined;
}

function connectEvents() {
  if (typeof EventSource === 'undefined') return startPolling();
  const es = new EventSource('api/events');
  let failures = 0;
  es.addEventListener('open', () => {
    failures = 0;
    stopPolling();
    setConnected(true);
  });
  es.addEventListener('error', () => {
    setConnected(false);
    // The browser reconnects by itself; after a few failures in a row, poll meanwhile.
    if (++failures >= 3) startPolling();
  });
  es.addEventListener('jobs', (e) => setJobs(JSON.parse(e.data)));
  es.addEventListener('job', (e) => {
    const job = JSON.parse(e.data);
    setJob(job);
    emit('job', job);
  });
  es.addEventListener('removed', (e) => {
    state.jobs.delete(JSON.parse(e.data).ID);
    emit('jobs');
  });
  es.addEventListener('throughput', (e) => {
    const t = JSON.parse(e.data);
    state.throughput.push(t);
    if (state.throughput.length > 300) state.throughput.shift();
    showRate(t);
    emit('throughput', t);
  });
}

// ---- router ----------------------------------------------------------------------------------------

const PAGES = [
  { re: /^#\/transfers$/, page: 'transfers', mount: transfersPage },
  { re: /^#\/jobs\/([0-9a-f-]+)$/, page: 'transfers', mount: jobPage },
  { re: /^#\/peers$/, page: 'peers', mount: peersPage },
  { re: /^#\/routes$/, page: 'routes', mount: routesPage },
  { re: /^#\/store$/, page: 'store', mount: storePage },
];

let unmount;

function route() {
  const hash = location.hash || '#/transfers';
  const found = PAGES.find((p) => p.re.test(hash));
  if (!found) {
    location.replace('#/transfers');
    return;
  }
  const params = found.re.exec(hash).slice(1);
  for (const a of document.querySelectorAll('.tabs a')) a.classList.toggle('active', a.dataset.page === found.page);
  unmount?.();
  const main = document.getElementById('main');
  replace(main);
  unmount = found.mount(main, ...params) ?? undefined;
  main.focus({ preventScroll: true });
}

window.addEventListener('hashchange', route);
await refreshOverview();
if (state.overview?.Throughput) showRate(state.overview.Throughput);
await refreshJobs();
connectEvents();
// Jobs of other systems and jobs dropped from the history are seen by a full read now and then.
setInterval(refreshJobs, 15_000);
setInterval(refreshOverview, 10_000);
route();
