// The routes page: each routing rule with what it matches and where it sends, its queue (instances waiting
// for their study or series to be stable), the batches and jobs in flight (linked to their job pages), what
// was sent or failed, and its last error. Read from GET /routes every few seconds.
import { get } from '../api.js';
import { h, replace, toast } from '../dom.js';
import { count, localTime, parseOrthancTime } from '../format.js';

const WHEN_TEXT = {
  StableStudy: 'each study, once stable',
  StableSeries: 'each series, once stable',
  Instance: 'each instance, at once',
};

function fact(name, label, value) {
  return h('div.fact', { dataset: { fact: name } }, h('dt', label), h('dd', value));
}

function matchText(match) {
  const entries = Object.entries(match ?? {});
  return entries.length ? entries.map(([k, v]) => h('span.chip', `${k} = ${v}`)) : 'everything';
}

function routeCard(r) {
  const jobs = r.InFlightJobs ?? [];
  const lastError = r.LastError
    ? h(
        'p.alert.warn',
        { dataset: { fact: 'last-error' } },
        `Last error ${r.LastErrorTime ? localTime(parseOrthancTime(r.LastErrorTime)) : ''}: ${r.LastError}`,
      )
    : null;
  return h(
    'article.peer',
    { dataset: { route: r.Name } },
    h('header', h('h2', r.Name), h('span.badge', r.Source === 'api' ? 'set through the API' : 'from the configuration')),
    h('p.url', `Sends ${WHEN_TEXT[r.When] ?? r.When}${r.DeleteAfterSend ? ', then deletes it here' : ''}`),
    h(
      'dl.facts',
      fact('match', 'Matches', matchText(r.Match)),
      fact('send', 'Sends to', [r.Send.join(', '), r.Alternate.length ? ` (else ${r.Alternate.join(', ')})` : '']),
      fact('queued', 'Queued', `${count(r.QueuedInstances, 'instance', 'instances')} in ${count(r.WaitingBatches, 'group', 'groups')}`),
      fact('sending', 'Sending', count(r.SendingBatches, 'batch', 'batches')),
      fact('sent', 'Sent', `${count(r.SentInstances, 'instance', 'instances')} (${count(r.DoneBatches, 'batch', 'batches')})`),
      fact('failed', 'Failed', `${count(r.FailedInstances, 'instance', 'instances')} (${count(r.FailedBatches, 'batch', 'batches')})`),
      fact('jobs', 'Jobs in flight', jobs.length ? jobs.map((id) => h('a.mono', { href: `#/jobs/${id}` }, id.slice(0, 8))) : 'none'),
    ),
    lastError,
  );
}

export function routesPage(main) {
  const grid = h('div.peers', h('p.muted', 'Reading the rules…'));
  main.append(h('div.page-head', h('h1', 'Routes')), grid);
  let alive = true;

  async function load() {
    try {
      const routes = await get('/routes');
      if (!alive) return;
      replace(
        grid,
        routes.length
          ? routes.map(routeCard)
          : h('p.muted', 'No routing rules. Add them under Routes in the configuration, or with PUT /routes/{name}.'),
      );
    } catch (e) {
      toast(`Cannot read the routes: ${e.message}`, 'error');
    }
  }

  load();
  const timer = setInterval(load, 3000);
  return () => {
    alive = false;
    clearInterval(timer);
  };
}
