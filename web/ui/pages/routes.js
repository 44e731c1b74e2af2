// The routes page: each routing rule with what it matches and where it sends, its queue (instances waiting
// for their study or series to be stable), the batches and jobs in flight (linked to their job pages), what
// was sent or failed, and its last error. Read from GET /routes every few seconds. Rules are created, edited
// (route-form.js) and deleted here through PUT and DELETE /routes/{name}.
import { del, get } from '../api.js';
import { h, replace, toast } from '../dom.js';
import { count, localTime, parseOrthancTime } from '../format.js';
import { destinationList, ruleForm } from './route-form.js';

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

function routeCard(r, actions) {
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
    h(
      'header',
      h('h2', r.Name),
      h('span.badge', { dataset: { source: r.Source } }, r.Source === 'api' ? 'set through the API' : 'from the configuration'),
      h(
        'span.actions',
        h(
          'button.btn.small',
          { type: 'button', dataset: { action: 'edit' }, 'aria-label': `Edit ${r.Name}`, onclick: () => actions.edit(r) },
          'Edit',
        ),
        h(
          'button.btn.small.danger',
          { type: 'button', dataset: { action: 'delete' }, 'aria-label': `Delete ${r.Name}`, onclick: () => actions.remove(r) },
          'Delete',
        ),
      ),
    ),
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

/** Asks, then deletes the rule; a rule of the file stays deleted across restarts (the API's word wins). */
async function deleteRule(r) {
  const fromFile =
    r.Source === 'file' ? ' It comes from the configuration file: it stays deleted after a restart, even though the file lists it.' : '';
  if (!confirm(`Delete the routing rule "${r.Name}"? What it queued is not sent.${fromFile}`)) return false;
  try {
    await del(`/routes/${encodeURIComponent(r.Name)}`);
    toast(`Rule ${r.Name} deleted.`);
    return true;
  } catch (e) {
    toast(`Could not delete the rule ${r.Name}: ${e.message}`, 'error');
    return false;
  }
}

/** The button of a card that had the focus, to give it back after the cards are drawn again. */
function focusedAction(grid) {
  const el = document.activeElement;
  if (!el || !grid.contains(el)) return undefined;
  return { route: el.closest('[data-route]')?.dataset.route, action: el.dataset.action };
}

export function routesPage(main) {
  const grid = h('div.peers', h('p.muted', 'Reading the rules…'));
  const editor = h('div');
  const newButton = h(
    'button.btn.primary',
    { type: 'button', dataset: { action: 'new' }, onclick: () => openEditor(undefined) },
    'New rule',
  );
  main.append(h('div.page-head', h('h1', 'Routes'), newButton), editor, grid);
  let alive = true;
  let routes = [];
  let drawn = '';

  function closeEditor(focusOn) {
    replace(editor);
    (focusOn ?? newButton).focus();
  }

  async function openEditor(rule) {
    let destinations;
    try {
      destinations = await destinationList();
    } catch (e) {
      toast(`Cannot read the peers and modalities: ${e.message}`, 'error');
      return;
    }
    if (!alive) return;
    const form = ruleForm({
      rule,
      destinations,
      taken: new Set(routes.map((r) => r.Name)),
      onSaved: async (saved) => {
        toast(`Rule ${saved.Name} saved.`);
        await load();
        closeEditor(grid.querySelector(`[data-route="${CSS.escape(saved.Name)}"] [data-action="edit"]`));
      },
      onCancel: () => closeEditor(rule ? grid.querySelector(`[data-route="${CSS.escape(rule.Name)}"] [data-action="edit"]`) : undefined),
    });
    replace(editor, form.element);
    form.element.scrollIntoView({ block: 'nearest' });
    form.focus();
  }

  const actions = {
    edit: (r) => openEditor(r),
    remove: async (r) => {
      if (await deleteRule(r)) await load();
    },
  };

  async function load() {
    try {
      const list = await get('/routes');
      if (!alive) return;
      routes = list;
      // Drawn again only when something changed, so that a button keeps the keyboard's focus.
      const text = JSON.stringify(list);
      if (text === drawn) return;
      drawn = text;
      const had = focusedAction(grid);
      replace(
        grid,
        list.length
          ? list.map((r) => routeCard(r, actions))
          : h('p.muted', 'No routing rules. Create one with "New rule", or list them under Routes in the configuration.'),
      );
      if (had?.route) grid.querySelector(`[data-route="${CSS.escape(had.route)}"] [data-action="${had.action}"]`)?.focus();
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
