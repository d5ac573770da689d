// Upcoming events and search: words, dates, city, category, near me.

import { get, query } from './api.js';
import { h, field, money, when, messageBox, render } from './ui.js';

const SEARCH_FIELDS = ['q', 'from', 'to', 'city', 'category', 'near', 'radius_km'];
const RADIUS_KM_DEFAULT = 50;
const PAGE_ITEMS = 20;

export function homePage(params) {
  const msg = messageBox();
  const results = h('div', { class: 'results', 'aria-live': 'polite' });
  const value = (k) => params.get(k) || '';
  const near = h('input', { type: 'hidden', name: 'near', value: value('near') });
  const nearStatus = h('span', { class: 'muted', id: 'near-status' }, value('near') ? `Near ${value('near')}` : '');
  const form = h(
    'form',
    { class: 'search', role: 'search', 'aria-label': 'Search events', onsubmit: submit },
    field('Words', { name: 'q', type: 'search', value: value('q'), placeholder: 'artist, venue, city…' }),
    h(
      'div',
      { class: 'row' },
      field('From', { name: 'from', type: 'date', value: value('from') }),
      field('To', { name: 'to', type: 'date', value: value('to') }),
    ),
    h(
      'div',
      { class: 'row' },
      field('City', { name: 'city', value: value('city') }),
      field('Category', { name: 'category', value: value('category'), placeholder: 'concert, sports…' }),
    ),
    h(
      'div',
      { class: 'row' },
      field('Radius (km)', { name: 'radius_km', type: 'number', min: 1, max: 20000, value: value('radius_km') || RADIUS_KM_DEFAULT }),
      h('div', { class: 'field' }, h('span', { class: 'label' }, 'Location'), h('button', { type: 'button', onclick: locate }, 'Near me'), nearStatus),
    ),
    near,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Search'), h('a', { href: '#/', class: 'button' }, 'Clear')),
  );

  function submit(ev) {
    ev.preventDefault();
    const data = new FormData(form);
    const chosen = {};
    for (const k of SEARCH_FIELDS) chosen[k] = (data.get(k) || '').trim();
    if (!chosen.near) delete chosen.radius_km;
    const q = query(chosen);
    location.hash = q ? `#/search${q}` : '#/';
  }

  function locate() {
    if (!navigator.geolocation) {
      msg.error({ message: 'This browser cannot tell where you are.' });
      return;
    }
    nearStatus.textContent = 'Locating…';
    navigator.geolocation.getCurrentPosition(
      (pos) => {
        near.value = `${pos.coords.latitude.toFixed(4)},${pos.coords.longitude.toFixed(4)}`;
        nearStatus.textContent = `Near ${near.value}`;
        form.requestSubmit();
      },
      (err) => {
        nearStatus.textContent = '';
        msg.error({ message: `Your location is not available: ${err.message}` });
      },
      { timeout: 10000 },
    );
  }

  const searching = SEARCH_FIELDS.some((k) => params.get(k));
  render(h('h1', {}, searching ? 'Search results' : 'Upcoming events'), form, msg.el, results);
  load(searching, params, results, msg);
}

async function load(searching, params, results, msg) {
  results.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  const day = (d, end) => (d ? `${d}T${end ? '23:59:59' : '00:00:00'}Z` : '');
  const base = searching
    ? `/v1/search${query({
        q: params.get('q'),
        from: day(params.get('from')),
        to: day(params.get('to'), true),
        city: params.get('city'),
        category: params.get('category'),
        near: params.get('near'),
        radius_km: params.get('near') ? params.get('radius_km') || RADIUS_KM_DEFAULT : '',
        limit: PAGE_ITEMS,
      })}`
    : `/v1/events${query({ limit: PAGE_ITEMS })}`;
  const list = h('ul', { class: 'cards' });
  results.replaceChildren(list);
  let cursor = null;
  const more = h('button', { type: 'button', hidden: true, onclick: () => page() }, 'More events');
  results.append(more);
  async function page() {
    try {
      const sep = base.includes('?') ? '&' : '?';
      const body = await get(cursor ? `${base}${sep}cursor=${encodeURIComponent(cursor)}` : base);
      for (const item of body.items) list.append(card(item));
      if (!list.children.length) list.replaceWith(h('p', { class: 'empty' }, searching ? 'No event matches.' : 'No upcoming events.'));
      cursor = body.next_cursor;
      more.hidden = !cursor || body.items.length < PAGE_ITEMS;
    } catch (e) {
      msg.error(e);
    }
  }
  await page();
}

function card(e) {
  const range = e.price_range
    ? e.price_range.min.amount === e.price_range.max.amount
      ? money(e.price_range.min)
      : `${money(e.price_range.min)} – ${money(e.price_range.max)}`
    : '';
  return h(
    'li',
    { class: 'card', 'data-event-id': e.event_id },
    h('h2', {}, h('a', { href: `#/events/${encodeURIComponent(e.event_id)}` }, e.name)),
    h('p', {}, when(e.starts_at), ' · ', e.venue ? `${e.venue.name}, ${e.venue.city}` : ''),
    h(
      'p',
      { class: 'muted' },
      e.category ? h('span', { class: 'tag' }, e.category) : null,
      ' ',
      range,
      ' · ',
      e.available > 0 ? `${e.available} available` : 'Sold out',
    ),
  );
}
