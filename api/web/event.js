// An event: details, live section counts, the waiting room of high-traffic events, the seat map
// (live from the seat stream), general-admission quantities, the hold with its countdown, and
// checkout.

import { get, post, api, session, newKey } from './api.js';
import { h, money, when, messageBox, render, seatName, countdownText, problemText, gaCounts } from './ui.js';
import { seatMap } from './seatmap.js';

const QUEUE_POLL_MS = 1000;
const HOLD_TICK_MS = 1000;
const store = (kind, eventId) => `boxoffice.${kind}.${eventId}`;

export function eventPage(eventId) {
  const enc = encodeURIComponent(eventId);
  const msg = messageBox();
  const title = h('h1', {}, 'Event');
  const details = h('div', { class: 'details' });
  const counts = h('div', { class: 'counts' });
  const room = h('section', { class: 'panel room', hidden: true, 'aria-labelledby': 'room-title' });
  const mapPanel = h('section', { class: 'panel', hidden: true, 'aria-labelledby': 'map-title' });
  const holdPanel = h('section', { class: 'panel hold', hidden: true, 'aria-labelledby': 'hold-title', 'aria-live': 'polite' });
  render(title, details, msg.el, holdPanel, room, mapPanel, counts);

  const st = { event: null, map: null, general: new Map(), selected: new Set(), hold: null, stream: null, timers: [] };
  const stop = () => {
    if (st.stream) st.stream.close();
    st.timers.forEach(clearInterval);
  };
  const every = (ms, fn) => st.timers.push(setInterval(fn, ms));
  const live = h('span', { class: 'live', 'aria-live': 'polite' }, '');

  async function start() {
    try {
      st.event = await get(`/v1/events/${enc}`);
    } catch (e) {
      title.textContent = 'Event not found';
      msg.error(e);
      return;
    }
    showDetails();
    await restoreHold();
    if (st.event.high_traffic && !sessionStorage.getItem(store('access', eventId)) && !(st.hold && st.hold.status === 'active')) {
      waitingRoom();
    } else {
      showMap();
    }
  }

  function showDetails() {
    const e = st.event;
    document.title = `${e.name} · Boxoffice`;
    title.textContent = e.name;
    details.replaceChildren(
      h('p', { class: 'when' }, when(e.starts_at), ' · ', e.venue ? `${e.venue.name}, ${e.venue.city}` : ''),
      e.description ? h('p', {}, e.description) : null,
      h(
        'p',
        { class: 'muted' },
        e.category ? h('span', { class: 'tag' }, e.category) : null,
        (e.performers || []).length ? ` With ${e.performers.map((p) => p.name).join(', ')}.` : '',
        e.per_user_limit ? ` Up to ${e.per_user_limit} tickets per buyer.` : '',
        new Date(e.on_sale_at) > new Date() ? ` On sale from ${when(e.on_sale_at)}.` : '',
        e.high_traffic ? ' High demand: a waiting room lets buyers in turn by turn.' : '',
      ),
    );
    showCounts();
  }

  function showCounts() {
    const rows = (st.event.sections || []).map((sec) => {
      const c = sec.kind === 'seated' && st.map ? st.map.counts(sec.section) : gaCounts(sec, st.general.get(sec.section));
      return h(
        'tr',
        { 'data-section': sec.section },
        h('th', { scope: 'row' }, sec.section),
        h('td', {}, sec.kind === 'seated' ? 'Seated' : 'General admission'),
        h('td', {}, money(sec.price)),
        h('td', { class: 'n' }, String(c.available)),
        h('td', { class: 'n' }, String(c.held)),
        h('td', { class: 'n' }, String(c.sold)),
      );
    });
    counts.replaceChildren(
      h(
        'table',
        { class: 'sections' },
        h('caption', {}, 'Sections ', live),
        h('thead', {}, h('tr', {}, ['Section', 'Kind', 'Price', 'Available', 'Held', 'Sold'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, rows),
      ),
    );
  }

  // ---- the waiting room --------------------------------------------------------------------

  async function waitingRoom() {
    room.hidden = false;
    const status = h('p', { class: 'big', role: 'status' }, '');
    room.replaceChildren(h('h2', { id: 'room-title' }, 'Waiting room'), status);
    if (!session()) {
      status.replaceChildren('This sale has a waiting room. ', h('a', { href: '#/signin' }, 'Sign in'), ' to take your place.');
      return;
    }
    const show = (q) => {
      if (q.status === 'before_sale') {
        const others = Math.max(0, q.position - 1);
        status.textContent = `You have a place. The sale opens ${when(st.event.on_sale_at)}; ${others} other buyer${others === 1 ? ' is' : 's are'} waiting, and the order is drawn at the opening.`;
      } else {
        const wait = q.estimated_wait_s > 0 ? `about ${q.estimated_wait_s} s` : 'any moment now';
        status.textContent = `You are number ${q.position} in line. Estimated wait: ${wait}.`;
      }
      status.setAttribute('data-position', q.position);
    };
    let token = sessionStorage.getItem(store('queue', eventId));
    const admitted = (q) => {
      sessionStorage.setItem(store('access', eventId), q.access_token);
      sessionStorage.removeItem(store('queue', eventId));
      status.textContent = 'You are in: pick your seats.';
      st.timers.forEach(clearInterval);
      st.timers = [];
      room.hidden = true;
      showMap();
    };
    const settle = async (q) => {
      if (q.admitted && q.access_token) return admitted(q), true;
      if (q.status === 'sold_out') return (status.textContent = 'Sold out: every ticket of this event is sold.'), true;
      if (q.status === 'closed') return (status.textContent = 'The event has started: the sale is closed.'), true;
      if (q.status === 'expired') return join(); // admitted, but the pass ran out: a new place
      show(q);
      return false;
    };
    const join = async () => {
      const q = await post(`/v1/events/${enc}/queue`, undefined);
      token = q.queue_token;
      sessionStorage.setItem(store('queue', eventId), token);
      return settle(q);
    };
    try {
      if (await (token ? poll() : join())) return;
    } catch (e) {
      if (e.code !== 'queue_required') return msg.error(e);
      token = null; // a token from an earlier sale or key: take a new place
      try {
        if (await join()) return;
      } catch (e2) {
        return msg.error(e2);
      }
    }
    async function poll() {
      const q = await get(`/v1/events/${enc}/queue`, { headers: { 'X-Queue-Token': token } });
      return settle(q);
    }
    every(QUEUE_POLL_MS, async () => {
      try {
        await poll();
      } catch (e) {
        msg.error(e);
      }
    });
  }

  // ---- the seat map and general admission --------------------------------------------------

  async function showMap() {
    mapPanel.hidden = false;
    const heading = h('h2', { id: 'map-title' }, 'Choose your seats');
    const selection = h('div', { class: 'selection', 'aria-live': 'polite' });
    const mapBox = h('div', { class: 'map-scroll' });
    const general = h('div', { class: 'general' });
    const legend = h(
      'ul',
      { class: 'legend', 'aria-label': 'Legend' },
      ['available', 'selected', 'mine', 'held', 'sold'].map((k) =>
        h('li', {}, h('span', { class: `swatch ${k}`, 'aria-hidden': 'true' }), { mine: 'held by you' }[k] || k),
      ),
    );
    mapPanel.replaceChildren(heading, legend, mapBox, selection, general);
    let seats;
    try {
      seats = await get(`/v1/events/${enc}/seats`);
    } catch (e) {
      return msg.error(e);
    }
    const draw = (doc) => {
      st.map = seatMap(doc.seats, {
        choose: (id) => toggle(id),
        look: (id) => (st.selected.has(id) ? 'selected' : st.hold && st.hold.status === 'active' && st.hold.seats.includes(id) ? 'mine' : null),
      });
      mapBox.replaceChildren(doc.seats.length ? st.map.el : h('p', { class: 'muted' }, 'No seated sections.'));
      st.general = new Map(doc.general.map((g) => [g.section, g]));
      drawGeneral();
      showCounts();
    };
    draw(seats);

    function toggle(id) {
      const seat = st.map.seat(id);
      if (!seat) return;
      if (st.selected.has(id)) st.selected.delete(id);
      else if (seat.status === 'available') st.selected.add(id);
      else return msg.ok(`${seatName(id)} is ${seat.status === 'sold' ? 'sold' : 'held'}: pick another.`);
      msg.clear();
      st.map.paint(id);
      drawSelection();
    }

    function drawSelection() {
      const ids = [...st.selected];
      if (!ids.length) return selection.replaceChildren(h('p', { class: 'muted' }, 'Select seats on the map (click, or Tab to a seat and press Enter or Space).'));
      const total = ids.reduce((sum, id) => sum + st.map.seat(id).price.amount, 0);
      const currency = st.map.seat(ids[0]).price.currency;
      selection.replaceChildren(
        h('p', {}, `Selected: ${ids.map(seatName).join(', ')} — ${money({ amount: total, currency })}`),
        h('button', { type: 'button', class: 'primary', id: 'hold-seats', onclick: () => hold({ seats: ids }) }, `Hold ${ids.length} seat${ids.length > 1 ? 's' : ''}`),
        ' ',
        h('button', { type: 'button', onclick: () => { const was = [...st.selected]; st.selected.clear(); was.forEach((i) => st.map.paint(i)); drawSelection(); } }, 'Clear selection'),
      );
    }
    drawSelection();

    function drawGeneral() {
      const sections = (st.event.sections || []).filter((sec) => sec.kind === 'general');
      general.replaceChildren(
        ...(sections.length ? [h('h3', {}, 'General admission')] : []),
        ...sections.map((sec) => {
          const g = st.general.get(sec.section) || sec;
          const id = `qty-${sec.section}`;
          const max = Math.max(1, Math.min(g.available, st.event.per_user_limit || 10));
          const qty = h('input', { id, type: 'number', min: 1, max, value: 1, inputmode: 'numeric' });
          return h(
            'form',
            { class: 'ga', onsubmit: (ev) => { ev.preventDefault(); hold({ section: sec.section, quantity: Number(qty.value) }); } },
            h('label', { for: id }, `${sec.section}: ${money(g.price || sec.price)} each, ${g.available} available. Tickets`),
            qty,
            h('button', { type: 'submit', disabled: g.available < 1 }, g.available < 1 ? 'Sold out' : 'Hold'),
          );
        }),
      );
    }

    // The stream: a snapshot first, then changes; EventSource reconnects with Last-Event-ID.
    const es = new EventSource(`/v1/events/${enc}/seats/stream`);
    st.stream = es;
    es.onopen = () => (live.textContent = '· live');
    es.onerror = (ev) => {
      live.textContent = '· reconnecting…';
      if (ev.data) msg.error({ problem: JSON.parse(ev.data) });
    };
    es.addEventListener('snapshot', (ev) => {
      const doc = JSON.parse(ev.data);
      for (const seat of doc.seats) st.map.set(seat.id, seat.status);
      st.general = new Map(doc.general.map((g) => [g.section, g]));
      drawGeneral();
      showCounts();
    });
    es.addEventListener('change', (ev) => {
      const change = JSON.parse(ev.data);
      if (change.seats) {
        for (const { id, status } of change.seats) {
          st.map.set(id, status);
          if (status !== 'available' && st.selected.has(id) && !(st.hold && st.hold.seats.includes(id))) {
            st.selected.delete(id);
            st.map.paint(id);
            msg.ok(`${seatName(id)} was just taken by someone else.`);
            drawSelection();
          }
        }
      }
      if (change.general) {
        const g = st.general.get(change.general.section) || {};
        st.general.set(change.general.section, { ...g, ...change.general });
        drawGeneral();
      }
      if (change.event) {
        get(`/v1/events/${enc}`).then((e) => ((st.event = e), showDetails())).catch(() => {});
      }
      showCounts();
    });
    st.redrawSelection = drawSelection;
  }

  // ---- holds and checkout ------------------------------------------------------------------

  async function hold(body) {
    if (!session()) {
      msg.error({ message: 'Sign in to hold seats.' });
      location.hash = '#/signin';
      return;
    }
    const access = sessionStorage.getItem(store('access', eventId));
    const headers = access ? { 'X-Queue-Access': access } : {};
    try {
      const held = await post(`/v1/events/${enc}/holds`, body, { headers });
      sessionStorage.setItem(store('hold', eventId), held.hold_id);
      st.selected.clear();
      setHold(held);
      msg.ok('Held for you: check out before the time runs out.');
      if (st.redrawSelection) st.redrawSelection();
    } catch (e) {
      msg.error(e);
      if (e.code === 'queue_required') {
        sessionStorage.removeItem(store('access', eventId));
        mapPanel.hidden = true;
        waitingRoom();
      }
      for (const id of (e.problem && e.problem.unavailable) || []) {
        st.selected.delete(id);
        if (st.map) st.map.set(id, 'held');
      }
      if (st.redrawSelection) st.redrawSelection();
    }
  }

  async function restoreHold() {
    const id = sessionStorage.getItem(store('hold', eventId));
    if (!id || !session()) return;
    try {
      const held = await get(`/v1/holds/${encodeURIComponent(id)}`);
      if (held.status === 'active') setHold(held);
      else sessionStorage.removeItem(store('hold', eventId));
    } catch {
      sessionStorage.removeItem(store('hold', eventId));
    }
  }

  function setHold(held) {
    const before = st.hold ? st.hold.seats : [];
    st.hold = held;
    if (st.map) [...before, ...held.seats].forEach((id) => st.map.paint(id));
    if (held.status !== 'active') {
      holdPanel.hidden = true;
      sessionStorage.removeItem(store('hold', eventId));
      return;
    }
    const what = held.seats.length ? held.seats.map(seatName).join(', ') : `${held.quantity} × ${held.section} (general admission)`;
    const clock = h('strong', { class: 'countdown', role: 'timer', 'aria-live': 'off' }, countdownText(held.expires_at));
    const pay = (method) => checkout(method);
    holdPanel.replaceChildren(
      h('h2', { id: 'hold-title' }, 'Your hold'),
      h('p', { class: 'held-seats' }, what),
      h('p', {}, 'Total ', h('strong', {}, money(held.total)), '. Expires in ', clock, ` (at ${when(held.expires_at)}).`),
      h(
        'div',
        { class: 'actions' },
        h('button', { type: 'button', class: 'primary', onclick: () => pay('sandbox_ok') }, 'Pay (sandbox: approved)'),
        h('button', { type: 'button', onclick: () => pay('sandbox_decline') }, 'Pay (sandbox: declined)'),
        h('button', { type: 'button', onclick: () => pay('stripe') }, 'Pay with Stripe'),
        h('button', { type: 'button', class: 'danger', onclick: release }, 'Release hold'),
      ),
    );
    holdPanel.hidden = false;
    const tick = setInterval(() => {
      clock.textContent = countdownText(held.expires_at);
      if (new Date(held.expires_at) <= new Date()) {
        clearInterval(tick);
        msg.error({ message: 'Your hold expired and its seats are on sale again.' });
        setHold({ ...held, status: 'expired' });
      }
    }, HOLD_TICK_MS);
    st.timers.push(tick);
    held.tick = tick;
  }

  async function release() {
    const held = st.hold;
    try {
      await api('DELETE', `/v1/holds/${encodeURIComponent(held.hold_id)}`);
      clearInterval(held.tick);
      setHold({ ...held, status: 'released' });
      msg.ok('Released: the seats are on sale again.');
    } catch (e) {
      msg.error(e);
    }
  }

  async function checkout(method) {
    const held = st.hold;
    const key = held.checkoutKey || (held.checkoutKey = newKey());
    const body = { payment_method: method };
    // Stripe's hosted page sends the buyer back to the order's page, which follows the order
    // until Stripe's webhook settles it. The server puts the order's id in place of {ORDER_ID}.
    if (method === 'stripe') body.return_url = `${location.origin}/#/orders/{ORDER_ID}`;
    try {
      const answer = await post(`/v1/holds/${encodeURIComponent(held.hold_id)}/checkout`, body, { key: `${key}-${method}` });
      const order = answer.order_id ? answer : answer.order;
      clearInterval(held.tick);
      sessionStorage.removeItem(store('hold', eventId));
      if (order.status === 'payment_failed') {
        setHold({ ...held, status: 'released' });
        msg.error({ problem: { title: 'Payment declined', detail: 'The payment provider refused the payment; the seats were released.' } });
        return;
      }
      const page = answer.payment && answer.payment.url;
      if (page && order.status === 'pending_payment') {
        msg.ok('Taking you to the payment page…');
        location.assign(page);
        return;
      }
      location.hash = `#/orders/${encodeURIComponent(order.order_id)}`;
    } catch (e) {
      msg.error(e);
      if (e.code === 'hold_expired' || e.code === 'hold_not_active') setHold({ ...held, status: 'expired' });
    }
  }

  start().catch((e) => msg.error({ message: problemText(e) }));
  return stop;
}
