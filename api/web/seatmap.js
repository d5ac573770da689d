// The seat map in SVG: one block per seated section, a row per line, a focusable button per
// seat whose accessible name says where it is, what it costs and whether it can be taken.

import { s, money } from './ui.js';

const SEAT_PX = 22;
const PITCH_PX = 28;
const LABEL_PX = 34;
const TITLE_PX = 26;
const SECTION_GAP_PX = 18;
const STAGE_PX = 30;

/// `seats`: the map's seats (`{id, section, row, number, status, price}`); `choose(id)` is
/// called when a seat is activated; `look(id)` says whether it is `selected` or `mine`.
export function seatMap(seats, { choose, look }) {
  const bySection = new Map();
  for (const seat of seats) {
    if (!bySection.has(seat.section)) bySection.set(seat.section, new Map());
    const rows = bySection.get(seat.section);
    if (!rows.has(seat.row)) rows.set(seat.row, []);
    rows.get(seat.row).push(seat);
  }
  let widest = 0;
  for (const rows of bySection.values()) for (const row of rows.values()) widest = Math.max(widest, row.length);
  const width = LABEL_PX * 2 + widest * PITCH_PX;
  const svg = s('svg', { class: 'seatmap', role: 'group', 'aria-label': 'Seat map' });
  const nodes = new Map();
  let y = 0;
  svg.append(
    s('rect', { class: 'stage', x: LABEL_PX, y, width: width - 2 * LABEL_PX, height: STAGE_PX - 8, rx: 4 }),
    s('text', { class: 'stage-label', x: width / 2, y: y + 15, 'text-anchor': 'middle', 'aria-hidden': 'true' }, 'Stage'),
  );
  y += STAGE_PX;
  for (const [section, rows] of bySection) {
    const group = s('g', { role: 'group', 'aria-label': `Section ${section}` });
    group.append(s('text', { class: 'section-label', x: LABEL_PX, y: y + 18, 'aria-hidden': 'true' }, section));
    y += TITLE_PX;
    for (const [row, rowSeats] of rows) {
      rowSeats.sort((a, b) => a.number - b.number);
      const left = LABEL_PX + ((widest - rowSeats.length) * PITCH_PX) / 2;
      group.append(s('text', { class: 'row-label', x: left - 8, y: y + 16, 'text-anchor': 'end', 'aria-hidden': 'true' }, row));
      rowSeats.forEach((seat, i) => {
        const node = s('rect', {
          class: 'seat',
          x: left + i * PITCH_PX,
          y,
          width: SEAT_PX,
          height: SEAT_PX,
          rx: 5,
          role: 'button',
          tabindex: 0,
          'data-seat': seat.id,
        });
        node.addEventListener('click', () => choose(seat.id));
        node.addEventListener('keydown', (ev) => {
          if (ev.key === 'Enter' || ev.key === ' ' || ev.key === 'Spacebar') {
            ev.preventDefault();
            choose(seat.id);
          }
        });
        nodes.set(seat.id, { node, seat });
        group.append(node);
      });
      y += PITCH_PX;
    }
    svg.append(group);
    y += SECTION_GAP_PX;
  }
  svg.setAttribute('viewBox', `0 0 ${width} ${y}`);
  svg.setAttribute('width', width);
  svg.setAttribute('height', y);

  function paint(id) {
    const entry = nodes.get(id);
    if (!entry) return;
    const { node, seat } = entry;
    const mark = look(id);
    const state = mark || seat.status;
    const words = { available: 'available', held: 'held', sold: 'sold', selected: 'selected', mine: 'held by you' }[state];
    node.setAttribute('class', `seat ${state}`);
    node.setAttribute('aria-label', `Row ${seat.row} seat ${seat.number} (${seat.section}), ${words}, ${money(seat.price)}`);
    node.setAttribute('aria-pressed', mark === 'selected' ? 'true' : 'false');
    node.setAttribute('aria-disabled', seat.status === 'available' || mark ? 'false' : 'true');
    let title = node.querySelector('title');
    if (!title) node.append((title = s('title')));
    title.textContent = node.getAttribute('aria-label');
  }
  for (const id of nodes.keys()) paint(id);

  return {
    el: svg,
    seat: (id) => nodes.get(id)?.seat,
    /// A status from the stream (or a snapshot); repaints the seat.
    set(id, status) {
      const entry = nodes.get(id);
      if (!entry) return false;
      entry.seat.status = status;
      paint(id);
      return true;
    },
    paint,
    paintAll() {
      for (const id of nodes.keys()) paint(id);
    },
    counts(section) {
      const c = { available: 0, held: 0, sold: 0 };
      for (const { seat } of nodes.values()) if (seat.section === section) c[seat.status] += 1;
      return c;
    },
  };
}
