// Building the page without HTML strings: h('tag.class', {attributes}, ...children). Text is always set as
// text, so nothing a peer or a DICOM file says can become markup.

/**
 * Makes an element. `spec` is a tag name with optional .classes and #id; `attrs` sets attributes, `on*`
 * functions become listeners, `dataset` and `style` objects are applied as such; children are nodes,
 * strings or numbers (as text), arrays of these, or null/undefined/false (skipped).
 */
export function h(spec, attrs, ...children) {
  const m = /^([a-z0-9-]+)?((?:[.#][^.#]+)*)$/i.exec(spec);
  const el = document.createElement(m?.[1] || 'div');
  for (const part of (m?.[2] ?? '').match(/[.#][^.#]+/g) ?? []) {
    if (part[0] === '.') el.classList.add(part.slice(1));
    else el.id = part.slice(1);
  }
  // The second argument is attributes only when it is a plain object; anything else is a child.
  if (attrs !== undefined && attrs !== null && (typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = undefined;
  }
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'style') Object.assign(el.style, v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

/** Replaces the children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Shows a short message at the bottom of the window; `kind` is 'ok' or 'error'. */
export function toast(message, kind = 'ok', extra) {
  const box = document.getElementById('toasts');
  if (!box) return;
  const t = h('div.toast', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, message, extra ? [' ', extra] : null);
  box.append(t);
  // A few at most: the oldest goes first.
  while (box.children.length > 3) box.firstElementChild?.remove();
  setTimeout(() => t.remove(), kind === 'error' ? 9000 : 4000);
}
