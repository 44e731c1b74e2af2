// The peers page: each peer with reachability, round-trip time, whether it speaks the transfers protocol
// (installed, bidirectional, disabled), the protocol extensions it lists, and what was exchanged with it.
import { get } from '../api.js';
import { h, replace, toast } from '../dom.js';
import { bytes, localTime } from '../format.js';

const STATUS_TEXT = {
  installed: 'Transfers installed',
  bidirectional: 'Bidirectional (RemoteSelf set: it can pull from this node)',
  disabled: 'No transfers',
};

function peerCard(p) {
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
  const refresh = h('button.btn', { type: 'button', onclick: () => load() }, 'Check again');
  main.append(h('div.page-head', h('h1', 'Peers'), refresh), grid);
  let alive = true;

  async function load() {
    refresh.disabled = true;
    try {
      const peers = await get('/ui/api/peers');
      if (!alive) return;
      replace(
        grid,
        peers.length
          ? peers.map(peerCard)
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
