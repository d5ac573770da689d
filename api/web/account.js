// Sign-in, one order (with its payment awaited), and the signed-in user's orders and tickets.

import { get, post, session, signIn, signOut, devTokensEnabled, eventOnce, query } from './api.js';
import { h, field, money, when, messageBox, render, seatName } from './ui.js';

const ORDER_POLL_MS = 2000;
const PAGE_ITEMS = 50;

const changed = () => window.dispatchEvent(new Event('boxoffice:session'));

export function signInPage() {
  const msg = messageBox();
  const s = session();
  const current = s
    ? h(
        'div',
        { class: 'panel' },
        h('p', {}, `Signed in as ${s.user} (${s.role}).`),
        h('button', { type: 'button', onclick: () => { signOut(); changed(); signInPage(); } }, 'Sign out'),
      )
    : null;
  const dev = h('form', { class: 'panel', hidden: true, onsubmit: devSubmit, 'aria-labelledby': 'dev-title' },
    h('h2', { id: 'dev-title' }, 'Development sign-in'),
    h('p', { class: 'muted' }, 'This server gives out development tokens: choose any user id.'),
    field('User id', { name: 'user_id', required: true, value: 'alice', autocomplete: 'username' }),
    field('Role', { name: 'role', tag: 'select', options: [['user', 'Buyer (user)'], ['admin', 'Admin'], ['scanner', 'Scanner']] }),
    h('button', { type: 'submit', class: 'primary' }, 'Sign in'),
  );
  const paste = h('form', { class: 'panel', onsubmit: pasteSubmit, 'aria-labelledby': 'paste-title' },
    h('h2', { id: 'paste-title' }, 'Sign in with a token'),
    field('Bearer token', { name: 'token', tag: 'textarea', rows: 3, required: true, spellcheck: 'false' }, 'A JWT from your identity provider; it is kept for this browser tab only.'),
    h('button', { type: 'submit' }, 'Use this token'),
  );
  render(h('h1', {}, 'Sign in'), current, msg.el, dev, paste);
  devTokensEnabled().then((on) => (dev.hidden = !on));

  async function devSubmit(ev) {
    ev.preventDefault();
    const data = new FormData(dev);
    try {
      const { token } = await post('/v1/auth/dev-token', { user_id: data.get('user_id').trim(), role: data.get('role') }, { auth: false });
      done(token);
    } catch (e) {
      msg.error(e);
    }
  }
  function pasteSubmit(ev) {
    ev.preventDefault();
    try {
      done(new FormData(paste).get('token').trim());
    } catch (e) {
      msg.error(e);
    }
  }
  function done(token) {
    signIn(token);
    changed();
    const s2 = session();
    location.hash = s2.role === 'admin' ? '#/admin' : '#/';
  }
}

function needSignIn(heading) {
  render(h('h1', {}, heading), h('p', {}, h('a', { href: '#/signin' }, 'Sign in'), ' to see this page.'));
}

/// Every page of a list (bounded: a few pages are plenty for one buyer).
async function all(path, pagesMax = 5) {
  const items = [];
  let cursor = null;
  for (let i = 0; i < pagesMax; i++) {
    const page = await get(`${path}${query({ limit: PAGE_ITEMS, cursor })}`);
    items.push(...page.items);
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return items;
}

function eventName(eventId) {
  const el = h('a', { href: `#/events/${encodeURIComponent(eventId)}` }, eventId);
  eventOnce(eventId).then((e) => e && (el.textContent = e.name));
  return el;
}

export function orderPage(orderId) {
  if (!session()) return needSignIn('Order');
  const msg = messageBox();
  const body = h('div', {});
  const tickets = h('div', {});
  render(h('h1', {}, 'Order'), msg.el, body, tickets);
  let timer = null;
  async function load() {
    let order;
    try {
      order = await get(`/v1/orders/${encodeURIComponent(orderId)}`);
    } catch (e) {
      return msg.error(e);
    }
    body.replaceChildren(orderCard(order, { onChange: load, msg }));
    if (order.status === 'pending_payment') {
      msg.ok('Awaiting the payment provider: this page updates when the payment is settled.');
      if (!timer) timer = setInterval(load, ORDER_POLL_MS);
      return;
    }
    clearInterval(timer);
    timer = null;
    if (order.status === 'confirmed') {
      msg.ok('Order confirmed: your tickets are below.');
      const mine = (await all('/v1/me/tickets').catch((e) => (msg.error(e), []))).filter((t) => t.order_id === order.order_id);
      tickets.replaceChildren(h('h2', {}, 'Tickets'), ticketList(mine.length ? mine : order.tickets, msg, load));
    } else {
      tickets.replaceChildren();
      if (order.status === 'payment_failed') msg.error({ problem: { title: 'Payment failed', detail: 'The seats were released.' } });
    }
  }
  load();
  return () => clearInterval(timer);
}

function orderCard(order, { onChange, msg }) {
  const cancel = async () => {
    if (!confirm('Cancel this order and refund it? Its seats go back on sale.')) return;
    try {
      await post(`/v1/orders/${encodeURIComponent(order.order_id)}/cancel`, undefined);
      msg.ok('Order cancelled and refunded.');
      onChange();
    } catch (e) {
      msg.error(e);
    }
  };
  return h(
    'article',
    { class: `card order ${order.status}`, 'data-order-id': order.order_id },
    h('h3', {}, eventName(order.event_id)),
    h('p', {}, h('span', { class: `status ${order.status}` }, order.status.replace('_', ' ')), ' · ', money(order.total), ' · ', when(order.created_at)),
    h('p', { class: 'muted' }, `Order ${order.order_id}: ${order.tickets.map((t) => (t.seat ? seatName(t.seat) : t.section)).join(', ')}`),
    h('p', {}, h('a', { href: `#/orders/${encodeURIComponent(order.order_id)}` }, 'Details'), ' ',
      order.status === 'confirmed' ? h('button', { type: 'button', class: 'danger', onclick: cancel }, 'Cancel order') : null),
  );
}

function ticketList(list, msg, onChange) {
  if (!list.length) return h('p', { class: 'empty' }, 'No tickets yet.');
  return h('ul', { class: 'tickets' }, list.map((t) => h('li', {}, ticketCard(t, msg, onChange))));
}

function ticketCard(t, msg, onChange) {
  const where = t.seat ? seatName(t.seat) : `${t.section} (general admission)`;
  const qr = t.qr_svg
    ? h('img', { class: 'qr', alt: `QR code of the ticket for ${where}`, src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(t.qr_svg)}`, width: 180, height: 180 })
    : h('p', { class: 'muted' }, 'No code: see My tickets.');
  const to = `to-${t.ticket_id.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  const transfer = h(
    'form',
    { class: 'transfer', onsubmit: async (ev) => {
      ev.preventDefault();
      const toUser = new FormData(ev.target).get('to_user').trim();
      try {
        await post(`/v1/tickets/${encodeURIComponent(t.ticket_id)}/transfer`, { to_user: toUser });
        msg.ok(`Transferred to ${toUser}: your copy of the code no longer works.`);
        onChange();
      } catch (e) {
        msg.error(e);
      }
    } },
    h('label', { for: to }, 'Transfer to user'),
    h('input', { id: to, name: 'to_user', required: true, autocomplete: 'off' }),
    h('button', { type: 'submit' }, 'Transfer'),
  );
  return h(
    'article',
    { class: `ticket ${t.status}`, 'data-ticket-id': t.ticket_id },
    qr,
    h('div', {},
      h('h3', {}, where),
      h('p', {}, eventName(t.event_id)),
      h('p', {}, h('span', { class: `status ${t.status}` }, t.status.replace('_', ' ')), t.admitted_at ? ` at ${when(t.admitted_at)}` : ''),
      t.status === 'valid' && t.code ? transfer : null,
    ),
  );
}

export function myPage() {
  const s = session();
  if (!s) return needSignIn('My tickets');
  const msg = messageBox();
  const orders = h('div', { class: 'orders' }, h('p', { class: 'muted' }, 'Loading…'));
  const tickets = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  render(h('h1', {}, `My tickets and orders`), msg.el, h('h2', {}, 'Tickets'), tickets, h('h2', {}, 'Orders'), orders);
  async function load() {
    try {
      const [os, ts] = await Promise.all([all('/v1/me/orders'), all('/v1/me/tickets')]);
      tickets.replaceChildren(ticketList(ts, msg, load));
      orders.replaceChildren(...(os.length ? os.map((o) => orderCard(o, { onChange: load, msg })) : [h('p', { class: 'empty' }, 'No orders yet.')]));
    } catch (e) {
      msg.error(e);
    }
  }
  load();
}
