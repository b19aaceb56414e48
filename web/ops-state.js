// Ops console: the page's state, shared by ops.js (stream, totals), ops-rooms.js (room
// cards) and ops-watch.js (silent watch). window.callassistOps is this object (docs/ops.md).

export const state = {
  me: null,
  source: null,
  retryTimer: null,
  snapshot: null,
  cards: new Map(),
  watch: null,
};
window.callassistOps = state; // for tests and debugging
