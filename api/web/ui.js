// Small DOM helpers shared by every page: elements, money, times, errors in words.

/// An element: `h('a', {href: '#/'}, 'Home')`. Attributes starting with `on` are listeners;
/// `class`, `for`, boolean and ARIA attributes are set as given; children are nodes or text.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/// `{amount: 5000, currency: "USD"}` as "50 USD" (or "50.25 USD").
export function money(m) {
  if (!m) return '';
  const units = m.amount / 100;
  const text = Number.isInteger(units) ? String(units) : units.toFixed(2);
  return `${text} ${m.currency}`;
}

export function when(rfc3339) {
  if (!rfc3339) return '';
  const d = new Date(rfc3339);
  return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

/// A seat id `SECTION-ROW-NUMBER` in words.
export function seatName(id) {
  const parts = String(id).split('-');
  if (parts.length < 3) return String(id);
  const number = parts.pop();
  const row = parts.pop();
  return `${parts.join('-')} row ${row} seat ${number}`;
}

/// An API error (or any error) in words: the problem's title and detail, and for
/// `seats_unavailable` which seats.
export function problemText(e) {
  const p = (e && e.problem) || {};
  const title = p.title || (e && e.message) || 'Something went wrong';
  let text = p.detail && p.detail !== title ? `${title}: ${p.detail}` : title;
  if (!/[.!?]$/.test(text)) text += '.';
  if (Array.isArray(p.unavailable) && p.unavailable.length) {
    text += ` Not available: ${p.unavailable.map(seatName).join(', ')}.`;
  }
  if (p.status === 401 || (e && e.status === 401)) text += ' Sign in again.';
  return text;
}

/// A region that shows one message at a time, read out by screen readers.
export function messageBox() {
  const el = h('div', { class: 'msg', role: 'status', 'aria-live': 'polite', hidden: true });
  return {
    el,
    error(e) {
      el.className = 'msg error';
      el.setAttribute('role', 'alert');
      el.textContent = problemText(e);
      el.hidden = false;
    },
    ok(text) {
      el.className = 'msg ok';
      el.setAttribute('role', 'status');
      el.textContent = text;
      el.hidden = false;
    },
    clear() {
      el.hidden = true;
      el.textContent = '';
    },
  };
}

/// A labelled input: `field('Name', {name: 'name', required: true})`.
export function field(label, attrs = {}, hint) {
  const id = attrs.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  const tag = attrs.tag || 'input';
  const input = h(tag, { ...attrs, tag: undefined, id, 'aria-describedby': hint ? `${id}-hint` : undefined });
  if (tag === 'select' && attrs.options) {
    input.removeAttribute('options');
    for (const [value, text] of attrs.options) input.append(h('option', { value }, text));
  }
  return h(
    'div',
    { class: 'field' },
    h('label', { for: id }, label),
    input,
    hint ? h('small', { id: `${id}-hint`, class: 'muted' }, hint) : null,
  );
}

/// Seconds left until `until` as "m:ss".
export function countdownText(until) {
  const left = Math.max(0, Math.round((new Date(until).getTime() - Date.now()) / 1000));
  return `${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')}`;
}

/// Replaces the contents of `<main>` and moves focus there, for screen readers and keyboards.
export function render(...children) {
  const main = document.getElementById('main');
  main.replaceChildren(...children.flat());
  return main;
}

/// General-admission counts: the stream's where it has them (a snapshot gives `available`
/// only, a change all three), else the event's.
export function gaCounts(sec, g = {}) {
  return { available: g.available ?? sec.available, held: g.held ?? sec.held, sold: g.sold ?? sec.sold };
}
