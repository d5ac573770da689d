// Admin pages: create a venue and an event, put an event on sale or in high-traffic mode, and
// watch its sales live.

import { get, post, api, session } from './api.js';
import { h, field, money, when, messageBox, render, gaCounts } from './ui.js';

const ROW_LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';

function isoFromLocal(value) {
  return value ? new Date(value).toISOString().replace(/\.\d{3}Z$/, 'Z') : undefined;
}

/// `<input type="datetime-local">`'s value for a time `days` from now, at 20:00 local.
function localIn(days) {
  const d = new Date(Date.now() + days * 86400000);
  d.setHours(20, 0, 0, 0);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

export function adminPage() {
  const s = session();
  if (!s || s.role !== 'admin') {
    render(h('h1', {}, 'Admin'), h('p', {}, 'These pages need an admin. ', h('a', { href: '#/signin' }, 'Sign in as one.')));
    return;
  }
  const msg = messageBox();
  render(h('h1', {}, 'Admin'), msg.el, venueForm(msg), eventForm(msg), manageForm(msg));
}

// ---- venues -------------------------------------------------------------------------------

let sectionSeq = 0;
function sectionFields() {
  const n = ++sectionSeq;
  const kind = field('Kind', { name: 'kind', tag: 'select', options: [['seated', 'Seated (rows of numbered seats)'], ['general', 'General admission (by quantity)']] });
  const seated = h('div', { class: 'row seated' },
    field('Rows', { name: 'rows', type: 'number', min: 1, max: 26, value: 5 }, 'Named A, B, C…'),
    field('Seats per row', { name: 'seats', type: 'number', min: 1, max: 200, value: 10 }));
  const general = h('div', { class: 'row general-fields', hidden: true },
    field('Capacity', { name: 'capacity', type: 'number', min: 1, value: 500 }));
  const box = h('fieldset', { class: 'section-fields' },
    h('legend', {}, `Section ${n}`),
    h('div', { class: 'row' },
      field('Section id', { name: 'id', required: true, pattern: '[A-Za-z0-9_]{1,32}', value: n === 1 ? 'FLOOR' : '' }, 'Letters, digits and _'),
      field('Section name', { name: 'name', required: true, value: n === 1 ? 'Floor' : '' })),
    kind, seated, general,
    h('button', { type: 'button', class: 'link', onclick: () => box.remove() }, `Remove section ${n}`));
  kind.querySelector('select').addEventListener('change', (ev) => {
    const isGeneral = ev.target.value === 'general';
    seated.hidden = isGeneral;
    general.hidden = !isGeneral;
  });
  return box;
}

function venueForm(msg) {
  const sections = h('div', {}, sectionFields());
  const result = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'panel', id: 'venue-form', 'aria-labelledby': 'venue-title', onsubmit: submit },
    h('h2', { id: 'venue-title' }, 'Create a venue'),
    field('Venue name', { name: 'name', required: true }),
    h('div', { class: 'row' }, field('City', { name: 'city', required: true }), field('Country', { name: 'country', required: true, value: 'PT', maxlength: 2, pattern: '[A-Za-z]{2}' }, 'Two letters')),
    h('div', { class: 'row' },
      field('Latitude', { name: 'lat', type: 'number', step: 'any', min: -90, max: 90, required: true, value: '38.72' }),
      field('Longitude', { name: 'lon', type: 'number', step: 'any', min: -180, max: 180, required: true, value: '-9.14' })),
    sections,
    h('div', { class: 'actions' },
      h('button', { type: 'button', onclick: () => sections.append(sectionFields()) }, 'Add a section'),
      h('button', { type: 'submit', class: 'primary' }, 'Create venue')),
    result);

  async function submit(ev) {
    ev.preventDefault();
    const d = new FormData(form);
    const body = {
      name: d.get('name').trim(),
      city: d.get('city').trim(),
      country: d.get('country').trim().toUpperCase(),
      location: { lat: Number(d.get('lat')), lon: Number(d.get('lon')) },
      sections: [...sections.querySelectorAll('fieldset')].map((fs) => {
        const v = (n) => fs.querySelector(`[name="${n}"]`).value.trim();
        if (v('kind') === 'general') return { id: v('id'), name: v('name'), kind: 'general', capacity: Number(v('capacity')) };
        const rows = [...ROW_LETTERS.slice(0, Number(v('rows')))].map((id) => ({ id, seats: Number(v('seats')) }));
        return { id: v('id'), name: v('name'), kind: 'seated', rows };
      }),
    };
    try {
      const venue = await post('/v1/venues', body);
      msg.ok(`Venue ${venue.name} created: ${venue.venue_id}.`);
      result.replaceChildren(h('p', {}, 'Created venue ', h('code', { class: 'venue-id' }, venue.venue_id), '. Its id is filled in below.'));
      const input = document.querySelector('#event-form [name="venue_id"]');
      input.value = venue.venue_id;
      input.dispatchEvent(new Event('change'));
    } catch (e) {
      msg.error(e);
    }
  }
  return form;
}

// ---- events -------------------------------------------------------------------------------

function eventForm(msg) {
  const prices = h('div', { class: 'prices' }, h('p', { class: 'muted' }, 'Enter a venue id to price its sections.'));
  const result = h('div', { 'aria-live': 'polite' });
  const venueId = field('Venue id', { name: 'venue_id', required: true });
  const form = h('form', { class: 'panel', id: 'event-form', 'aria-labelledby': 'event-title', onsubmit: submit },
    h('h2', { id: 'event-title' }, 'Create an event'),
    field('Event name', { name: 'name', required: true }),
    field('Description', { name: 'description', tag: 'textarea', rows: 2 }),
    h('div', { class: 'row' },
      field('Category', { name: 'category', required: true, value: 'concert' }),
      field('Performers', { name: 'performers' }, 'Separated by commas')),
    venueId,
    prices,
    h('div', { class: 'row' },
      field('Currency', { name: 'currency', tag: 'select', options: [['USD', 'USD'], ['EUR', 'EUR'], ['GBP', 'GBP']] }),
      field('Per-user limit', { name: 'per_user_limit', type: 'number', min: 1, max: 100 }, 'Empty: no limit')),
    h('div', { class: 'row' },
      field('Starts at', { name: 'starts_at', type: 'datetime-local', required: true, value: localIn(30) }),
      field('On sale from', { name: 'on_sale_at', type: 'datetime-local' }, 'Empty: now')),
    h('div', { class: 'check' }, h('input', { type: 'checkbox', id: 'high-traffic', name: 'high_traffic' }), h('label', { for: 'high-traffic' }, 'High traffic (buyers go through a waiting room)')),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Create event')),
    result);

  venueId.querySelector('input').addEventListener('change', async (ev) => {
    const id = ev.target.value.trim();
    if (!id) return;
    try {
      const venue = await get(`/v1/venues/${encodeURIComponent(id)}`);
      prices.replaceChildren(
        h('p', {}, `Prices at ${venue.name}, ${venue.city}:`),
        ...venue.sections.map((sec) =>
          field(`Price of ${sec.name} (${sec.id})`, { name: `price-${sec.id}`, 'data-section': sec.id, type: 'number', min: 0, step: '0.01', required: true, value: '50' })),
      );
    } catch (e) {
      msg.error(e);
    }
  });

  async function submit(ev) {
    ev.preventDefault();
    const d = new FormData(form);
    const currency = d.get('currency');
    const body = {
      name: d.get('name').trim(),
      description: d.get('description').trim(),
      category: d.get('category').trim(),
      performers: d.get('performers').split(',').map((p) => p.trim()).filter(Boolean).map((name) => ({ name })),
      venue_id: d.get('venue_id').trim(),
      starts_at: isoFromLocal(d.get('starts_at')),
      prices: [...prices.querySelectorAll('input[data-section]')].map((i) => ({
        section: i.dataset.section,
        price: { amount: Math.round(Number(i.value) * 100), currency },
      })),
      high_traffic: d.get('high_traffic') === 'on',
    };
    if (d.get('on_sale_at')) body.on_sale_at = isoFromLocal(d.get('on_sale_at'));
    if (d.get('per_user_limit')) body.per_user_limit = Number(d.get('per_user_limit'));
    try {
      const e = await post('/v1/events', body);
      msg.ok(`Event ${e.name} created.`);
      result.replaceChildren(h('p', {}, 'Created ', h('a', { href: `#/events/${encodeURIComponent(e.event_id)}`, class: 'event-link' }, e.name),
        ' · ', h('a', { href: `#/admin/events/${encodeURIComponent(e.event_id)}` }, 'watch its sales')));
      document.querySelector('#manage-form [name="event_id"]').value = e.event_id;
    } catch (err) {
      msg.error(err);
    }
  }
  return form;
}

function manageForm(msg) {
  const form = h('form', { class: 'panel', id: 'manage-form', 'aria-labelledby': 'manage-title', onsubmit: (ev) => ev.preventDefault() },
    h('h2', { id: 'manage-title' }, 'Manage an event'),
    field('Event id', { name: 'event_id', required: true }),
    h('div', { class: 'actions' },
      h('button', { type: 'button', onclick: () => patch({ on_sale_at: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z') }, 'on sale now') }, 'Put on sale now'),
      h('button', { type: 'button', onclick: () => patch({ high_traffic: true }, 'high-traffic: buyers queue') }, 'Turn on the waiting room'),
      h('button', { type: 'button', onclick: () => patch({ high_traffic: false }, 'no longer high-traffic') }, 'Turn off the waiting room'),
      h('button', { type: 'button', onclick: () => { const id = eventId(); if (id) location.hash = `#/admin/events/${encodeURIComponent(id)}`; } }, 'Watch sales')));
  const eventId = () => {
    const id = form.querySelector('[name="event_id"]').value.trim();
    if (!id) msg.error({ message: 'Enter an event id first.' });
    return id;
  };
  async function patch(body, what) {
    const id = eventId();
    if (!id) return;
    try {
      const e = await api('PATCH', `/v1/events/${encodeURIComponent(id)}`, { body });
      msg.ok(`${e.name} is ${what}.`);
    } catch (e) {
      msg.error(e);
    }
  }
  return form;
}

// ---- sales --------------------------------------------------------------------------------

/// The event's section counts, live: the seat stream's snapshot, then its changes, counted
/// here (a re-read of the event could come from a cache a moment behind the stream).
export function salesPage(eventId) {
  const enc = encodeURIComponent(eventId);
  const msg = messageBox();
  const title = h('h1', {}, 'Sales');
  const table = h('div', {});
  const live = h('p', { class: 'muted', 'aria-live': 'polite' }, 'Connecting…');
  render(title, h('p', {}, h('a', { href: `#/events/${enc}` }, 'Event page'), ' · ', h('a', { href: '#/admin' }, 'Admin')), msg.el, live, table);
  let event = null;
  let seats = new Map(); // seat id → {section, status}
  let general = new Map(); // section → {available, held, sold}
  function counts(sec) {
    if (sec.kind !== 'seated') return gaCounts(sec, general.get(sec.section));
    const c = { available: 0, held: 0, sold: 0 };
    for (const seat of seats.values()) if (seat.section === sec.section) c[seat.status] += 1;
    return seats.size ? c : sec;
  }
  function draw() {
    if (!event) return;
    title.textContent = `Sales: ${event.name}`;
    let sold = 0;
    let revenue = 0;
    const rows = event.sections.map((sec) => {
      const c = counts(sec);
      sold += c.sold;
      revenue += c.sold * sec.price.amount;
      return h('tr', { 'data-section': sec.section },
        h('th', { scope: 'row' }, sec.section), h('td', {}, money(sec.price)), h('td', { class: 'n' }, String(sec.capacity)),
        h('td', { class: 'n' }, String(c.available)), h('td', { class: 'n' }, String(c.held)), h('td', { class: 'n sold' }, String(c.sold)));
    });
    const currency = event.sections[0] ? event.sections[0].price.currency : 'USD';
    table.replaceChildren(
      h('p', {}, `${when(event.starts_at)} · ${event.venue.name} · on sale from ${when(event.on_sale_at)}${event.high_traffic ? ' · waiting room on' : ''}`),
      h('table', { class: 'sections' },
        h('caption', {}, `${sold} sold, about ${money({ amount: revenue, currency })} at current prices`),
        h('thead', {}, h('tr', {}, ['Section', 'Price', 'Capacity', 'Available', 'Held', 'Sold'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, rows)));
  }
  const reload = () => get(`/v1/events/${enc}`).then((e) => ((event = e), draw()), (e) => msg.error(e));
  reload();
  const es = new EventSource(`/v1/events/${enc}/seats/stream`);
  es.onopen = () => (live.textContent = 'Live: counts update as seats are held and sold.');
  es.onerror = () => (live.textContent = 'Reconnecting…');
  es.addEventListener('snapshot', (ev) => {
    const doc = JSON.parse(ev.data);
    seats = new Map(doc.seats.map((seat) => [seat.id, { section: seat.section, status: seat.status }]));
    general = new Map(doc.general.map((g) => [g.section, g]));
    draw();
  });
  es.addEventListener('change', (ev) => {
    const change = JSON.parse(ev.data);
    for (const { id, status } of change.seats || []) if (seats.has(id)) seats.get(id).status = status;
    if (change.general) general.set(change.general.section, change.general);
    if (change.event) reload(); // prices, times or the waiting room changed
    draw();
  });
  return () => es.close();
}
