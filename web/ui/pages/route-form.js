// The form that writes one routing rule through PUT /routes/{name}: every field of a rule, destinations picked
// from the node's peers and modalities, and the node's refusal shown beside it with what was typed kept.
import { get, put } from '../api.js';
import { h, replace } from '../dom.js';

const WHEN = [
  ['StableStudy', 'Each study, once stable (StableAge)'],
  ['StableSeries', 'Each series, once stable (StableAge)'],
  ['Instance', 'Each instance, at once'],
];

/** The rule names the node takes (the same rule as peer names): checked here to name the field at fault. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Main tags offered as suggestions for the Match rows (any main tag may be typed). */
const MAIN_TAGS = [
  'PatientName',
  'PatientID',
  'PatientBirthDate',
  'PatientSex',
  'StudyDescription',
  'StudyDate',
  'AccessionNumber',
  'StudyID',
  'StudyInstanceUID',
  'ReferringPhysicianName',
  'InstitutionName',
  'Modality',
  'SeriesDescription',
  'SeriesNumber',
  'SeriesInstanceUID',
  'BodyPartExamined',
  'ProtocolName',
  'StationName',
  'Manufacturer',
  'SOPInstanceUID',
];

/** The node's destinations by name: transfers peers (GET /peers) and DICOM modalities (GET /modalities). */
export async function destinationList() {
  const [peers, modalities] = await Promise.all([get('/peers'), get('/modalities')]);
  return [...peers.map((name) => ({ name, kind: 'transfers peer' })), ...modalities.map((name) => ({ name, kind: 'DICOM modality' }))];
}

/** A labelled control; `hint` is read by screen readers with the field. */
function field(id, label, control, hint) {
  control.id = id;
  if (hint) control.setAttribute('aria-describedby', `${id}-hint`);
  return h('div.field', h('label', { for: id }, label), control, hint ? h('small.muted', { id: `${id}-hint` }, hint) : null);
}

function select(options, value) {
  return h(
    'select',
    options.map(([v, text]) => h('option', { value: v, selected: v === value }, text)),
  );
}

/** The Match rows other than Origin and CallingAet (which have fields of their own): tag, pattern, remove. */
function matchEditor(match) {
  const rows = h('div.match-rows');
  let n = 0;
  const addButton = h('button.btn.small', { type: 'button', dataset: { action: 'add-match' } }, 'Add a tag');
  const add = (tag = '', pattern = '') => {
    const i = n++;
    const tagIn = h('input', { type: 'text', id: `rule-match-tag-${i}`, value: tag, list: 'rule-main-tags', autocomplete: 'off' });
    const patIn = h('input', { type: 'text', id: `rule-match-pattern-${i}`, value: pattern, autocomplete: 'off' });
    const row = h(
      'div.match-row',
      h('label', { for: tagIn.id }, 'Tag'),
      tagIn,
      h('label', { for: patIn.id }, 'Pattern'),
      patIn,
      h(
        'button.btn.small',
        {
          type: 'button',
          'aria-label': `Remove the tag row ${i + 1}`,
          onclick: () => {
            row.remove();
            addButton.focus();
          },
        },
        'Remove',
      ),
    );
    rows.append(row);
    return tagIn;
  };
  addButton.addEventListener('click', () => add().focus());
  for (const [k, v] of Object.entries(match)) if (k !== 'Origin' && k !== 'CallingAet') add(k, v);
  const datalist = h(
    'datalist#rule-main-tags',
    MAIN_TAGS.map((t) => h('option', { value: t })),
  );
  const element = h(
    'fieldset.match',
    { dataset: { field: 'Match' } },
    h('legend', 'Match: main DICOM tags, with * and ? (none: every instance)'),
    rows,
    addButton,
    datalist,
  );
  return { element, rows, addButton };
}

/** Checkboxes of the destinations; a chosen name the node does not know (any more) is shown too. */
function checklist(key, legend, destinations, chosen) {
  const known = new Set(destinations.map((d) => d.name));
  const items = [...destinations, ...chosen.filter((n) => !known.has(n)).map((name) => ({ name, kind: 'not configured here' }))];
  return h(
    'fieldset.checklist',
    { id: `rule-${key.toLowerCase()}`, dataset: { field: key } },
    h('legend', legend),
    items.length
      ? items.map((d) =>
          h(
            'label.inline',
            h('input', { type: 'checkbox', name: key, value: d.name, checked: chosen.includes(d.name) }),
            ` ${d.name} `,
            h('small.muted', `(${d.kind})`),
          ),
        )
      : h('p.muted.small', 'No destinations: add peers (OrthancPeers) or modalities (DicomModalities) first.'),
  );
}

/** Every control of the form, filled from `rule` (a new rule's defaults when absent). */
function controls(rule, destinations) {
  const m = rule.Match ?? {};
  const originList = h(
    'datalist#rule-origins',
    ['dicom', 'rest', 'peer:*', ...destinations.filter((d) => d.kind === 'transfers peer').map((d) => `peer:${d.name}`)].map((o) =>
      h('option', { value: o }),
    ),
  );
  return {
    name: h('input', { type: 'text', value: rule.Name ?? '', autocomplete: 'off', required: true, readonly: rule.Name !== undefined }),
    when: select(WHEN, rule.When ?? 'StableStudy'),
    match: matchEditor(m),
    origin: h('input', { type: 'text', value: m.Origin ?? '', list: 'rule-origins', autocomplete: 'off' }),
    originList,
    aet: h('input', { type: 'text', value: m.CallingAet ?? '', autocomplete: 'off' }),
    send: checklist('Send', 'Send to', destinations, rule.Send ?? []),
    alternate: checklist('Alternate', 'Else to (Alternate, when a destination fails for good)', destinations, rule.Alternate ?? []),
    compression: select(
      [
        ['gzip', 'gzip (smaller on the wire)'],
        ['none', 'none (for data that does not compress)'],
      ],
      rule.Compression ?? 'gzip',
    ),
    priority: h('input', { type: 'number', step: 1, value: String(rule.Priority ?? 0) }),
    deleteAfter: h('input', { type: 'checkbox', id: 'rule-delete-after-send', checked: rule.DeleteAfterSend === true }),
    commitment: h('input', { type: 'checkbox', id: 'rule-storage-commitment', checked: rule.StorageCommitment !== false }),
  };
}

/** The rule as the form says it; a problem the node cannot name (a pattern without its tag) is thrown. */
function readRule(c) {
  const match = {};
  for (const row of c.match.rows.querySelectorAll('.match-row')) {
    const [tag, pattern] = row.querySelectorAll('input');
    if (tag.value.trim() === '' && pattern.value === '') continue;
    if (tag.value.trim() === '') throw Object.assign(new Error('Match: a pattern has no tag'), { target: tag });
    match[tag.value.trim()] = pattern.value;
  }
  if (c.origin.value.trim() !== '') match.Origin = c.origin.value.trim();
  if (c.aet.value.trim() !== '') match.CallingAet = c.aet.value.trim();
  const checked = (fs) => [...fs.querySelectorAll('input:checked')].map((i) => i.value);
  const priority = c.priority.value.trim();
  return {
    When: c.when.value,
    Match: match,
    Send: checked(c.send),
    Alternate: checked(c.alternate),
    Compression: c.compression.value,
    // Not a whole number: sent as typed, so that the node's answer names the field.
    Priority: /^-?\d+$/.test(priority) ? Number(priority) : priority,
    DeleteAfterSend: c.deleteAfter.checked,
    StorageCommitment: c.commitment.checked,
  };
}

/** The control that an error of the node names (its Details), or undefined. */
function fieldOf(text, c) {
  const dest = /"([^"]+)" is (?:neither|both)/.exec(text);
  if (dest) {
    const boxes = [...c.send.querySelectorAll('input'), ...c.alternate.querySelectorAll('input')];
    return boxes.find((b) => b.checked && b.value === dest[1]);
  }
  const path = /^routing rule: ([A-Za-z.]+)/.exec(text)?.[1] ?? '';
  // Origin is checked with the whole Match: its message reads "Match: Origin: ...".
  if (path === 'Match.Origin' || text.startsWith('routing rule: Match: Origin:')) return c.origin;
  if (path === 'Match.CallingAet') return c.aet;
  if (path.startsWith('Match')) return c.match.rows.querySelector('input') ?? c.match.addButton;
  const byKey = {
    Name: c.name,
    When: c.when,
    Send: c.send.querySelector('input'),
    Alternate: c.alternate.querySelector('input'),
    Compression: c.compression,
    Priority: c.priority,
    DeleteAfterSend: c.deleteAfter,
    StorageCommitment: c.commitment,
  };
  return byKey[path];
}

/** The form's title, where the rule comes from, the error box and every field, in reading order. */
function fields(c, rule, errorBox) {
  const editing = rule !== undefined;
  return [
    h('h2.rule-title#rule-form-title', editing ? `Edit the rule ${rule.Name}` : 'New routing rule'),
    editing && rule.Source === 'file'
      ? h(
          'p.alert.warn',
          { dataset: { source: 'file' } },
          'This rule comes from the configuration file. Saving stores your version through the API: it then replaces ' +
            "the file's rule of the same name, also after a restart.",
        )
      : null,
    editing && rule.Source === 'api' ? h('p.muted.small', { dataset: { source: 'api' } }, 'Set through the API.') : null,
    errorBox,
    h(
      'div.rule-grid',
      field('rule-name', 'Name', c.name, editing ? 'A rule keeps its name: delete it and create another to rename it.' : undefined),
      field('rule-when', 'When', c.when),
      field('rule-origin', 'Origin', c.origin, 'dicom, rest, peer:NAME or peer:* (empty: any)'),
      field('rule-calling-aet', 'Calling AET', c.aet, 'DICOM arrivals only, with * and ? (empty: any)'),
      field('rule-compression', 'Compression', c.compression),
      field('rule-priority', 'Priority', c.priority, 'Of the jobs the rule makes'),
    ),
    c.originList,
    c.match.element,
    h('div.rule-grid', c.send, c.alternate),
    h('label.inline', c.deleteAfter, ' Delete here once every destination confirmed (DeleteAfterSend)'),
    h('label.inline', c.commitment, ' Ask DICOM modalities for storage commitment where they allow it (StorageCommitment)'),
  ];
}

/**
 * The editor of one rule: `rule` (as GET /routes answers it) to edit, or undefined for a new one; `taken` the
 * names in use (a new rule may not replace one by mistake). Calls `onSaved(rule)` with the node's answer.
 */
export function ruleForm({ rule, destinations, taken, onSaved, onCancel }) {
  const editing = rule !== undefined;
  const c = controls(rule ?? {}, destinations);
  const errorBox = h('div.alert.error', { id: 'rule-error', role: 'alert', tabindex: -1, hidden: true, dataset: { error: 'rule' } });
  const save = h('button.btn.primary', { type: 'submit' }, editing ? 'Save' : 'Create');

  function showError(message, details, target) {
    replace(errorBox, h('strong', message), details ? h('p', { dataset: { details: '' } }, details) : null);
    errorBox.hidden = false;
    const at = target ?? errorBox;
    if (at !== errorBox) {
      at.setAttribute('aria-invalid', 'true');
      at.setAttribute('aria-errormessage', errorBox.id);
    }
    at.focus();
  }

  async function submit(e) {
    e.preventDefault();
    errorBox.hidden = true;
    for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
    const name = c.name.value.trim();
    if (!NAME.test(name)) {
      return showError('Check the name', 'Name: 1 to 64 letters, digits, "-", "_" or "." (starting with a letter or digit)', c.name);
    }
    if (!editing && taken.has(name)) return showError('Check the name', `Name: a rule "${name}" exists; edit it instead`, c.name);
    let body;
    try {
      body = readRule(c);
    } catch (err) {
      return showError('Check the match', err.message, err.target);
    }
    save.disabled = true;
    try {
      onSaved(await put(`/routes/${encodeURIComponent(name)}`, body));
    } catch (err) {
      const b = err.body && typeof err.body === 'object' ? err.body : {};
      const details = b.Details ?? err.message;
      showError(`The node refused the rule: ${b.Message ?? err.message}`, details, fieldOf(details, c));
    } finally {
      save.disabled = false;
    }
  }

  const form = h(
    'form.rule-form',
    {
      novalidate: true,
      'aria-labelledby': 'rule-form-title',
      onsubmit: submit,
      // Escape leaves the form as Cancel does, except in a field with suggestions, where Escape closes them.
      onkeydown: (e) => {
        if (e.key === 'Escape' && !e.defaultPrevented && !e.target.list) onCancel();
      },
    },
    fields(c, rule, errorBox),
    h('div.dialog-buttons', h('button.btn', { type: 'button', dataset: { action: 'cancel' }, onclick: onCancel }, 'Cancel'), save),
  );
  return { element: h('section.panel.rule-editor', form), focus: () => (editing ? c.when : c.name).focus() };
}
