// The peers page: each peer with reachability, round-trip time, whether it speaks the transfers protocol
// (installed, bidirectional, disabled), the protocol extensions it lists, its rate limit and the one its
// transfers meet, and what was exchanged with it; above them, the node's rate limit in force and its schedule.
import { get } from '../api.js';
import { h, replace, toast } from '../dom.js';
import { bytes, localTime } from '../format.js';

const STATUS_TEXT = {
  installed: 'Transfers installed',
  bidirectional: 'Bidirectional (RemoteSelf set: it can pull from this node)',
  disabled: 'No transfers',
};

/** "20 Mbit/s", or "no limit" for 0 / null (as in the configuration). */
function mbps(n) {
  return typeof n === 'number' && n > 0 ? `${n} Mbit/s` : 'no limit';
}

/** A peer's own RateLimit and the limit its transfers meet now (its own and the node's, the lower). */
function rateFact(limits) {
  if (!limits) return null;
  const own = limits.RateLimit;
  const text =
    own === null
      ? `none of its own; ${limits.InForce === null ? 'no limit' : `${mbps(limits.InForce)}, the node's`}`
      : `${mbps(own)}${limits.InForce !== own ? ` (in force: ${mbps(limits.InForce)}, the node's)` : ''}`;
  return h('div.fact', { dataset: { fact: 'rate-limit' } }, h('dt', 'Rate limit'), h('dd', text));
}

/** The node's limit in force now, where it comes from, and the schedule with the entry in force marked. */
function bandwidthView(b) {
  const from =
    b.Source === 'RateSchedule'
      ? `from Transfers.RateSchedule (${b.Schedule.filter((e) => e.Active).map((e) => `${e.Days} ${e.From}–${e.To}`)[0] ?? ''})`
      : 'from Transfers.RateLimit';
  return h(
    'section.bandwidth',
    { dataset: { bandwidth: 'node', source: b.Source, limit: String(b.RateLimit) } },
    h('h2', 'Bandwidth'),
    h(
      'p',
      { dataset: { fact: 'node-limit' } },
      h('strong', `This node: ${mbps(b.RateLimit)}`),
      ` now, ${from}; node time ${b.Day} ${b.LocalTime.replace('T', ' ')}.`,
    ),
    b.Schedule.length
      ? h(
          'table.schedule',
          h('thead', h('tr', h('th', 'Days'), h('th', 'From'), h('th', 'To'), h('th', 'Rate limit'))),
          h(
            'tbody',
            b.Schedule.map((e) =>
              h(
                'tr',
                { class: e.Active ? 'active' : '', dataset: { active: String(e.Active) } },
                h('td', e.Days),
                h('td', e.From),
                h('td', e.To),
                h('td', mbps(e.RateLimit)),
              ),
            ),
          ),
        )
      : null,
    b.Schedule.length ? h('p.muted.small', `Outside these hours: ${mbps(b.BaseRateLimit)} (Transfers.RateLimit).`) : null,
  );
}

function peerCard(p, limits) {
  const s = p.Stats ?? {};
  return h(
    'article.peer',
    { dataset: { peer: p.Name, status: p.Status, reachable: String(p.Reachable) } },
    h(
      'header',
      h('span.dot', { class: `dot ${p.Reachable ? 'on' : 'off'}`, title: p.Reachable ? 'Reachable' : 'Unreachable' }),
      h('h2', p.Name),
      h('span.badge', { class: `badge status-${p.Status}` }, p.Status),
    ),
    h('p.url.mono', p.Url ?? ''),
    h(
      'dl.facts',
      h('div.fact', { dataset: { fact: 'reachable' } }, h('dt', 'Reachable'), h('dd', p.Reachable ? 'yes' : 'no')),
      h(
        'div.fact',
        { dataset: { fact: 'rtt' } },
        h('dt', 'Round trip'),
        h('dd', p.RttMs !== null && p.RttMs !== undefined ? `${Math.round(p.RttMs)} ms` : '–'),
      ),
      h('div.fact', { dataset: { fact: 'status' } }, h('dt', 'Transfers'), h('dd', STATUS_TEXT[p.Status] ?? p.Status)),
      h(
        'div.fact',
        { dataset: { fact: 'extensions' } },
        h('dt', 'Extensions'),
        h('dd', p.Extensions?.length ? p.Extensions.map((e) => h('span.chip', e)) : 'none'),
      ),
      rateFact(limits),
      h('div.fact', h('dt', 'Sent'), h('dd', bytes(s.bytesSent ?? 0))),
      h('div.fact', h('dt', 'Received'), h('dd', bytes(s.bytesReceived ?? 0))),
      h('div.fact', h('dt', 'Calls'), h('dd', `${s.requests ?? 0} (${s.failures ?? 0} failed)`)),
      p.RemoteSelf ? h('div.fact', h('dt', 'RemoteSelf'), h('dd', p.RemoteSelf)) : null,
    ),
    p.Error ? h('p.alert.warn', p.Error) : null,
    s.lastError
      ? h('p.muted.small', `Last failure ${s.lastFailureAt ? localTime(Date.parse(s.lastFailureAt)) : ''}: ${s.lastError}`)
      : null,
  );
}

export function peersPage(main) {
  const grid = h('div.peers', h('p.muted', 'Asking each peer…'));
  const policy = h('div.policy');
  const refresh = h('button.btn', { type: 'button', onclick: () => load() }, 'Check again');
  main.append(h('div.page-head', h('h1', 'Peers'), refresh), policy, grid);
  let alive = true;

  async function load() {
    refresh.disabled = true;
    try {
      // The policy answers at once; the peers only once each has been asked.
      const bandwidth = get('/ui/api/bandwidth').catch(() => null);
      const peers = await get('/ui/api/peers');
      const b = await bandwidth;
      if (!alive) return;
      replace(policy, b ? bandwidthView(b) : []);
      const limits = new Map((b?.Peers ?? []).map((l) => [l.Name, l]));
      replace(
        grid,
        peers.length
          ? peers.map((p) => peerCard(p, limits.get(p.Name)))
          : h('p.muted', 'No peers. Add them under OrthancPeers in the configuration, or with PUT /peers/{name}.'),
      );
    } catch (e) {
      toast(`Cannot read the peers: ${e.message}`, 'error');
    } finally {
      refresh.disabled = false;
    }
  }

  load();
  const timer = setInterval(load, 30_000);
  return () => {
    alive = false;
    clearInterval(timer);
  };
}
