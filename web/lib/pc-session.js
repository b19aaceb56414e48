// One peer connection at a time for a page (caller, agent, supervisor watch), kept alive:
// a watchdog replaces a connection that fails, stays "disconnected" longer than the grace
// period, is closed (polled: pc.close() fires no event) or is not "connected" 15 s after
// its offer. The replacement is a NEW RTCPeerConnection with a larger "pc" number (the
// server has no ICE restart, docs/protocol.md "offer"); the first retry is immediate, later
// ones back off from 0.5 to 5 s. Without an open socket the retry kicks the socket, and the
// page starts the next connection on its new `welcome`.

import { sendOffer, watchConnection, closePc, nextPcNumber } from "../rtc.js";

const CONNECT_TIMEOUT_MS = 15000;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 5000;

export class PcSession {
  // signal: () => the current Signal (ws.js); iceServers: () => list from the welcome;
  // ready: () => may a connection be made now (socket welcomed, media there, not ended);
  // alive: () => is recovery still wanted (not ended); setup(pc): add the transceivers in
  // protocol order; onStart(): a new pc was offered; onChange(state): its connectionState
  // changed; onAnswer(): the answer is applied; onRecover(why): a replacement is scheduled;
  // nextNumber(): the next pc number (default: grows across reloads, rtc.js); warm(): is
  // this offer a pre-warm (nothing to send yet: docs/protocol.md, "offer" `warm`).
  constructor({ role, roomId, signal, iceServers, ready, alive, setup, onStart, onChange, onAnswer, onRecover, nextNumber, warm }) {
    this.signal = signal;
    this.iceServers = iceServers;
    this.ready = ready;
    this.alive = alive || ready;
    this.setup = setup;
    this.onStart = onStart || (() => {});
    this.onChange = onChange || (() => {});
    this.onAnswered = onAnswer || (() => {});
    this.onRecover = onRecover || (() => {});
    this.nextNumber = nextNumber || (() => nextPcNumber(roomId(), role));
    this.warm = warm || (() => false);
    this.pc = null;
    this.num = 0;
    this.state = "new";
    this.recoverTimer = null;
    this.recoverDelay = 0;
    this.watchdog = null;
    this.internalRetried = false;
  }

  start() {
    if (!this.ready()) return;
    this.stopTimers();
    closePc(this.pc);
    const num = this.nextNumber();
    // window.callassistIceTransportPolicy = "relay" (a test hook, docs/testing.md): only
    // TURN candidates, as behind a network that blocks everything but the TURN server.
    const policy = window.callassistIceTransportPolicy === "relay" ? "relay" : "all";
    const pc = new RTCPeerConnection({ iceServers: this.iceServers(), iceTransportPolicy: policy });
    this.pc = pc;
    this.num = num;
    this.state = pc.connectionState;
    this.setup(pc);
    watchConnection(
      pc,
      (state) => {
        if (pc !== this.pc) return;
        this.state = state;
        if (state === "connected") {
          this.recoverDelay = 0;
          this.internalRetried = false;
          clearTimeout(this.watchdog);
        }
        this.onChange(state);
      },
      (why) => {
        if (pc === this.pc) this.recover(why);
      },
    );
    this.watchdog = setTimeout(() => {
      if (pc === this.pc && pc.connectionState !== "connected") this.recover("timeout");
    }, CONNECT_TIMEOUT_MS);
    sendOffer(pc, num, this.signal(), this.warm()).catch((err) => {
      console.error("offer failed", err);
      if (pc === this.pc) this.recover("offer_failed");
    });
    this.onStart();
  }

  async answer(msg) {
    const pc = this.pc;
    if (!pc || msg.pc !== this.num || typeof msg.sdp !== "string") return;
    try {
      await pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
      this.onAnswered();
    } catch (err) {
      console.error("answer failed", err);
      if (pc === this.pc) this.recover("answer_failed");
    }
  }

  recover(why) {
    if (!this.alive()) return;
    console.info("recovering:", why);
    clearTimeout(this.recoverTimer);
    const delay = this.recoverDelay;
    this.recoverDelay = Math.min(Math.max(delay * 2, BACKOFF_MIN_MS), BACKOFF_MAX_MS);
    this.recoverTimer = setTimeout(() => {
      const signal = this.signal();
      if (!signal || !signal.isOpen || !this.ready()) {
        if (signal) signal.kick(); // the next welcome starts the new pc
        return;
      }
      this.start();
    }, delay);
    this.onRecover(why);
  }

  // The server's `error` messages about the connection; true when handled here.
  serverError(msg) {
    if (msg.code === "sdp_failed") {
      this.recover("sdp_failed");
      return true;
    }
    if (msg.code === "internal" && msg.ref === "offer" && !this.internalRetried) {
      this.internalRetried = true; // once: a second one is shown
      this.recover("internal");
      return true;
    }
    return false;
  }

  stopTimers() {
    clearTimeout(this.recoverTimer);
    clearTimeout(this.watchdog);
  }

  close() {
    this.stopTimers();
    closePc(this.pc);
    this.pc = null;
    this.state = "new";
  }

  // The page's debug handle (window.callassist) shows pc, pcNum and pcState (docs/testing.md).
  expose(target) {
    Object.defineProperties(target, {
      pc: { get: () => this.pc, enumerable: true },
      pcNum: { get: () => this.num, enumerable: true },
      pcState: { get: () => this.state, enumerable: true },
    });
  }
}
