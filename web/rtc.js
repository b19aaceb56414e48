// WebRTC helpers shared by both pages (see docs/protocol.md, "offer").
// The server does not trickle and has no ICE restart: a broken connection is
// replaced by a NEW RTCPeerConnection with a larger "pc" number.

const GATHER_CAP_MS = 2000;
const DISCONNECTED_GRACE_MS = 2000;

// Resolve when ICE gathering is complete, or after the cap: the offer then carries
// whatever was gathered and later candidates are trickled (see trickleLate).
export function waitIceComplete(pc, capMs = GATHER_CAP_MS) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const timer = setTimeout(done, capMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

// Create the offer, gather, send it. Candidates found after the offer was sent
// (gathering slower than the cap) are trickled so they are not lost. warm: a pre-warm.
export async function sendOffer(pc, num, signal, warm = false) {
  let offerSent = false;
  pc.addEventListener("icecandidate", (ev) => {
    if (!offerSent || pc.signalingState === "closed") return;
    signal.send({ type: "candidate", pc: num, candidate: ev.candidate ? ev.candidate.toJSON() : null });
  });
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  await waitIceComplete(pc);
  if (pc.signalingState === "closed") return false;
  const msg = { type: "offer", pc: num, sdp: pc.localDescription.sdp };
  if (warm) msg.warm = true;
  offerSent = signal.send(msg);
  return offerSent;
}

// Call onBroken once when the connection fails, or stays "disconnected" longer than
// the grace period (a short "disconnected" often heals by itself on mobile).
export function watchConnection(pc, onChange, onBroken) {
  let timer = null;
  let reported = false;
  // pc.close() (by the page, an extension or the browser) fires no event at all: poll.
  const poll = setInterval(() => {
    if (pc.signalingState === "closed" || pc.connectionState === "closed") report("closed");
  }, 500);
  const report = (why) => {
    clearInterval(poll);
    if (reported) return;
    reported = true;
    onBroken(why);
  };
  pc.addEventListener("connectionstatechange", () => {
    const st = pc.connectionState;
    clearTimeout(timer);
    timer = null;
    if (st === "failed") report("failed");
    else if (st === "disconnected") timer = setTimeout(() => report("disconnected"), DISCONNECTED_GRACE_MS);
    onChange(st);
  });
}

export function closePc(pc) {
  if (!pc) return;
  try {
    pc.close();
  } catch {
    /* already closed */
  }
}

// Attach a track to a <video> and start it; autoplay alone is not reliable after
// srcObject changes on some mobile browsers.
export function showTrack(video, track) {
  if (!track) {
    video.srcObject = null;
    return;
  }
  const current = video.srcObject;
  if (current && current.getTracks().length === 1 && current.getTracks()[0] === track) return;
  video.srcObject = new MediaStream([track]);
  const p = video.play();
  if (p && p.catch) p.catch(() => {});
}

// The "pc" number must grow even across page reloads: the server treats a number it
// has already seen from this participant as a renegotiation. Remember the last one
// per room (localStorage, so another tab of the same browser also continues).
export function nextPcNumber(roomId, role) {
  const key = "callassist.pc." + role + "." + roomId;
  let last = 0;
  try {
    last = parseInt(localStorage.getItem(key) || "0", 10) || 0;
  } catch {
    /* storage blocked */
  }
  const next = last + 1;
  try {
    localStorage.setItem(key, String(next));
  } catch {
    /* storage blocked: numbers restart at 1 after a reload */
  }
  return next;
}

export function forgetPcNumber(roomId, role) {
  try {
    localStorage.removeItem("callassist.pc." + role + "." + roomId);
  } catch {
    /* ignore */
  }
}

// Video codecs (docs/compatibility.md, "H264 when VP8 is missing"). The server forwards
// without transcoding and negotiates VP8 and H264 on every leg (media.codec first), so a
// page only has to offer what it can send: a browser that lists no VP8 offers H264 alone.
const HELPERS = ["video/rtx", "video/red", "video/ulpfec"];

function videoCaps(kind) {
  try {
    const caps = kind && typeof kind.getCapabilities === "function" && kind.getCapabilities("video");
    return (caps && caps.codecs) || [];
  } catch {
    return [];
  }
}

// Can this browser send `mime` ("video/vp8", "video/h264")? Unknown (no getCapabilities,
// older Safari): true, the browser's own offer decides.
export function canSend(mime) {
  const caps = videoCaps(window.RTCRtpSender);
  return !caps.length || caps.some((c) => c.mimeType.toLowerCase() === mime);
}

// Offer only `mime` (and its retransmission/FEC helpers) on this transceiver; false when
// the browser cannot (no setCodecPreferences, or no such codec).
export function onlyCodec(transceiver, mime) {
  if (typeof transceiver.setCodecPreferences !== "function") return false;
  // Chromium checks the list against the receiver's capabilities, the spec against the
  // sender's for a sendonly transceiver: try one, then the other.
  for (const kind of [window.RTCRtpReceiver, window.RTCRtpSender]) {
    const caps = videoCaps(kind);
    const main = caps.filter((c) => c.mimeType.toLowerCase() === mime);
    if (!main.length) continue;
    try {
      transceiver.setCodecPreferences([...main, ...caps.filter((c) => HELPERS.includes(c.mimeType.toLowerCase()))]);
      return true;
    } catch (err) {
      console.warn("setCodecPreferences", mime, err && err.name);
    }
  }
  return false;
}
