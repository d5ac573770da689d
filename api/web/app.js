// The client's entry: routes by hash (#/events/ID), so the server serves only a few files.
// Each page is a function that renders into <main> and returns what stops its streams and timers.

import { session } from './api.js';
import { render, h } from './ui.js';
import { homePage } from './browse.js';
import { eventPage } from './event.js';
import { myPage, orderPage, signInPage } from './account.js';
import { adminPage, salesPage } from './admin.js';

const ROUTES = [
  [/^#?\/?$/, homePage],
  [/^#\/search$/, homePage],
  [/^#\/events\/([^/?]+)$/, eventPage],
  [/^#\/orders\/([^/?]+)$/, orderPage],
  [/^#\/me$/, myPage],
  [/^#\/signin$/, signInPage],
  [/^#\/admin$/, adminPage],
  [/^#\/admin\/events\/([^/?]+)$/, salesPage],
];

let stopPage = null;

function route() {
  if (stopPage) {
    try {
      stopPage();
    } catch {
      /* a page that fails to stop must not keep the next one from starting */
    }
    stopPage = null;
  }
  updateNav();
  const [path, search = ''] = location.hash.split('?');
  const params = new URLSearchParams(search);
  for (const [pattern, page] of ROUTES) {
    const m = path.match(pattern);
    if (m) {
      const ids = m.slice(1).map(decodeURIComponent);
      const stop = page(...ids, params);
      stopPage = typeof stop === 'function' ? stop : null;
      document.getElementById('main').focus({ preventScroll: true });
      return;
    }
  }
  render(h('h1', {}, 'Not found'), h('p', {}, 'No page here. ', h('a', { href: '#/' }, 'See the events.')));
}

export function updateNav() {
  const s = session();
  document.getElementById('nav-admin').hidden = !(s && s.role === 'admin');
  const link = document.getElementById('nav-signin');
  link.textContent = s ? `${s.user} (${s.role})` : 'Sign in';
  link.setAttribute('aria-label', s ? `Signed in as ${s.user}, ${s.role}: account` : 'Sign in');
}

window.addEventListener('hashchange', route);
window.addEventListener('boxoffice:session', updateNav);
route();
