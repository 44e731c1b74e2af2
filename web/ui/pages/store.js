// The store page: patients, their studies and series, searched by patient name or ID, study date and
// modality, each with "Send to…" (a peer, push or pull, compression).
import { get, post } from '../api.js';
import { h, replace, toast } from '../dom.js';
import { count, dicomDate, personName } from '../format.js';
import { refreshJobs } from '../state.js';

let peersCache;

async function peerList() {
  peersCache ??= get('/peers?expand').catch((e) => {
    peersCache = undefined;
    throw e;
  });
  return peersCache;
}

/** The "Send to…" dialog for one resource. */
async function openSend(level, id, label) {
  let peers;
  try {
    peers = await peerList();
  } catch (e) {
    toast(`Cannot read the peers: ${e.message}`, 'error');
    return;
  }
  const names = Object.keys(peers).sort();
  if (names.length === 0) {
    toast('No peer to send to: add one under OrthancPeers in the configuration.', 'error');
    return;
  }
  const peerSel = h(
    'select',
    { name: 'peer', id: 'send-peer' },
    names.map((n) => h('option', { value: n }, n)),
  );
  const push = h('input', { type: 'radio', name: 'mode', value: 'push', id: 'mode-push', checked: true });
  const pull = h('input', { type: 'radio', name: 'mode', value: 'pull', id: 'mode-pull' });
  const pullNote = h('small.muted');
  const comp = h(
    'select',
    { name: 'compression', id: 'send-compression' },
    h('option', { value: 'gzip' }, 'gzip (smaller on the wire)'),
    h('option', { value: 'none' }, 'none (for data that does not compress)'),
  );
  const sync = () => {
    const hasRemoteSelf = peers[peerSel.value]?.RemoteSelf !== undefined;
    pull.disabled = !hasRemoteSelf;
    if (!hasRemoteSelf && pull.checked) push.checked = true;
    pullNote.textContent = hasRemoteSelf
      ? `The peer fetches the data from this node (it knows it as "${peers[peerSel.value].RemoteSelf}"): works when only the peer can ` +
        `open connections.`
      : "Pull needs RemoteSelf in the peer's definition (the name the peer gives this node).";
  };
  peerSel.addEventListener('change', sync);
  const submit = h('button.btn.primary', { type: 'submit', value: 'send' }, 'Send');
  const dlg = h(
    'dialog.send',
    h(
      'form',
      { method: 'dialog' },
      h('h2', `Send ${level.toLowerCase()}`),
      h('p.muted', label),
      h('label', { for: 'send-peer' }, 'Peer'),
      peerSel,
      h(
        'fieldset',
        h('legend', 'Mode'),
        h('label.inline', push, ' Push (this node sends)'),
        h('label.inline', pull, ' Pull (the peer fetches)'),
        pullNote,
      ),
      h('label', { for: 'send-compression' }, 'Compression'),
      comp,
      h('div.dialog-buttons', h('button.btn', { type: 'submit', value: 'cancel', formnovalidate: true }, 'Cancel'), submit),
    ),
  );
  sync();
  document.body.append(dlg);
  dlg.addEventListener('close', async () => {
    dlg.remove();
    if (dlg.returnValue !== 'send') return;
    const body = {
      Resources: [{ Level: level, ID: id }],
      Peer: peerSel.value,
      Compression: comp.value,
      Mode: pull.checked ? 'pull' : 'push',
    };
    try {
      const r = await post('/ui/api/send', body);
      if (r.RemoteJob) toast(`Peer ${r.Peer} is pulling it (its job ${String(r.RemoteJob).slice(0, 8)}).`);
      else toast('Transfer started. ', 'ok', h('a', { href: `#/jobs/${r.ID}` }, 'Follow it'));
      refreshJobs();
    } catch (e) {
      toast(`Could not send: ${e.message}`, 'error');
    }
  });
  dlg.showModal();
}

function sendButton(level, id, label) {
  return h(
    'button.btn.small',
    { type: 'button', dataset: { send: level, id }, onclick: () => openSend(level, id, label), 'aria-label': `Send ${label}` },
    'Send to…',
  );
}

function seriesRow(se) {
  const label = `${se.Modality || '?'} ${se.SeriesDescription || 'series'} (${count(se.Instances, 'instance', 'instances')})`;
  return h(
    'li.series',
    { dataset: { series: se.ID } },
    h('span.modality', se.Modality || '?'),
    h('span.desc', se.SeriesDescription || '(no description)', se.SeriesNumber ? h('small.muted', ` #${se.SeriesNumber}`) : null),
    h('span.count', `${se.Instances} inst.`),
    sendButton('Series', se.ID, label),
  );
}

function studyBlock(st) {
  const label = `${dicomDate(st.StudyDate)} ${st.StudyDescription || 'study'} of ${personName(st.PatientName)}`;
  return h(
    'div.study',
    { dataset: { study: st.ID } },
    h(
      'div.study-head',
      h('span.date', dicomDate(st.StudyDate)),
      h('span.desc', st.StudyDescription || '(no description)'),
      h(
        'span.mods',
        st.Modalities.map((m) => h('span.chip', m)),
      ),
      h('span.count', `${st.Instances} inst.`),
      sendButton('Study', st.ID, label),
    ),
    st.AccessionNumber ? h('small.muted', `Accession ${st.AccessionNumber}`) : null,
    h('ul.series-list', st.Series.map(seriesRow)),
  );
}

function patientBlocks(studies) {
  const byPatient = new Map();
  for (const st of studies) {
    const p = byPatient.get(st.ParentPatient) ?? {
      id: st.ParentPatient,
      name: st.PatientName,
      pid: st.PatientID,
      birth: st.PatientBirthDate,
      studies: [],
    };
    p.studies.push(st);
    byPatient.set(st.ParentPatient, p);
  }
  return [...byPatient.values()].map((p) =>
    h(
      'section.panel.patient',
      { dataset: { patient: p.id } },
      h(
        'div.patient-head',
        h('h2', personName(p.name)),
        h('span.muted', `ID ${p.pid || '–'}`, p.birth ? ` · born ${dicomDate(p.birth)}` : ''),
        sendButton('Patient', p.id, `patient ${personName(p.name)}`),
      ),
      p.studies.map(studyBlock),
    ),
  );
}

export function storePage(main) {
  const text = h('input', { type: 'search', name: 'q', id: 'q', placeholder: 'Patient name or ID', autocomplete: 'off' });
  const from = h('input', { type: 'date', name: 'from', id: 'from', 'aria-label': 'From date' });
  const to = h('input', { type: 'date', name: 'to', id: 'to', 'aria-label': 'To date' });
  const modality = h(
    'select',
    { name: 'modality', id: 'modality', 'aria-label': 'Modality' },
    h('option', { value: '' }, 'Any modality'),
    ['CT', 'MR', 'US', 'CR', 'DX', 'MG', 'PT', 'NM', 'XA', 'OT', 'SR'].map((m) => h('option', { value: m }, m)),
  );
  const results = h('div.results', h('p.muted', 'Searching…'));
  const form = h(
    'form.search',
    {
      role: 'search',
      onsubmit: (e) => {
        e.preventDefault();
        search();
      },
    },
    text,
    h('label.dates', 'From ', from, ' to ', to),
    modality,
    h('button.btn.primary', { type: 'submit' }, 'Search'),
  );
  main.append(h('div.page-head', h('h1', 'Store')), form, results);
  let seq = 0;

  /** "Studies 51–100 of 230" with Previous and Next, for an answer of /ui/api/studies. */
  function pager(a) {
    const last = a.Offset + a.Studies.length;
    const count = `${a.Total}${a.Capped ? '+' : ''}`;
    const label =
      a.Total === 1 ? '1 study' : a.Studies.length === a.Total ? `${count} studies` : `Studies ${a.Offset + 1}–${last} of ${count}`;
    const prev = h(
      'button.btn.small',
      { type: 'button', 'aria-label': 'Previous page', disabled: a.Offset === 0, onclick: () => search(Math.max(0, a.Offset - a.Limit)) },
      '‹ Previous',
    );
    const next = h(
      'button.btn.small',
      { type: 'button', 'aria-label': 'Next page', disabled: last >= a.Total, onclick: () => search(last) },
      'Next ›',
    );
    return h('div.pager', h('span.muted.small.count', label), a.Total > a.Studies.length ? [prev, next] : null);
  }

  async function search(offset = 0) {
    const q = new URLSearchParams();
    if (text.value.trim()) q.set('q', text.value.trim());
    if (from.value) q.set('from', from.value);
    if (to.value) q.set('to', to.value);
    if (modality.value) q.set('modality', modality.value);
    if (offset > 0) q.set('offset', String(offset));
    const mine = ++seq;
    try {
      const a = await get(`/ui/api/studies?${q}`);
      if (mine !== seq) return;
      replace(results, a.Total > 0 ? [pager(a), ...patientBlocks(a.Studies)] : h('p.muted', 'Nothing matches.'));
    } catch (e) {
      replace(results, h('p.alert.warn', e.message));
    }
  }

  let typing;
  text.addEventListener('input', () => {
    clearTimeout(typing);
    typing = setTimeout(() => search(), 300);
  });
  for (const el of [from, to, modality]) el.addEventListener('change', () => search());
  peersCache = undefined;
  search();
  return () => clearTimeout(typing);
}
