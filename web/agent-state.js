// Agent console: the page's state, shared by agent.js (login, sessions), agent-card.js (the
// session card) and agent-media.js (socket, peer connection, screen sharing).
// window.callassist is this object (docs/testing.md, "Hooks for tests").

export const STEPS = ["link_sent", "opened", "accepted", "live", "ended"];
// How far along the steps each caller status is (index into STEPS of the last done step).
export const STATUS_RANK = {
  link_sent: 0, opened: 1, accepted: 2, connecting: 2,
  live: 3, paused: 3, reconnecting: 3, left: 2, ended: 4,
};

export const st = {
  me: null,
  csrf: null,
  defaultCountryCode: "+371",
  session: null, // REST session object of the open session
  link: null, // {link, qr_svg, expires_at} when known (only right after creating it)
  room: null, // last room object from the WebSocket
  maxRank: 0,
  signal: null,
  wsReady: false,
  everConnected: false,
  iceServers: [],
  screenSender: null,
  screenTrack: null,
  ended: false,
  endReason: null,
  qrUrl: null,
  linkAfterOpen: false, // a new link was issued after the caller opened one: show it
  callerLinkDown: false, // the caller's own fresh report says its connection is down (netq 0)
  noFrames: null, // {s, state}: the caller's camera is "live" but no frame decoded here for s seconds
  noFrameYet: false, // the caller is live but this pc has decoded no frame yet
  screenCodec: null, // "video/h264": our screen goes out in H264 alone (the caller has no VP8)
  // pc, pcNum, pcState: the current peer connection (agent-media.js)
};
window.callassist = st; // debug handle for tests (st.pc is the current RTCPeerConnection)
