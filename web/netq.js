// A 0–5 link quality score from RTCPeerConnection.getStats(): round-trip time, packet
// loss, jitter and frame rate of the video this page sends ("out") or receives ("in").
// 0 = no connection; 5 = nothing to complain about.

export class Quality {
  constructor(dir) {
    this.dir = dir;
    this.prev = null;
  }

  // expectVideo: false while the other side paused its video (fps says nothing then).
  async sample(pc, expectVideo = true) {
    if (!pc || pc.connectionState !== "connected") {
      this.prev = null;
      return { score: 0 };
    }
    const out = this.dir === "out";
    let rtt = null;
    let jitter = null;
    let fps = null;
    let lost = 0;
    let pkts = 0;
    let bytes = 0;
    (await pc.getStats()).forEach((r) => {
      if (r.type === "candidate-pair" && r.nominated && r.currentRoundTripTime != null) rtt = r.currentRoundTripTime * 1000;
      if (r.kind !== "video") return;
      if (r.type === (out ? "outbound-rtp" : "inbound-rtp")) {
        fps = Math.max(fps || 0, r.framesPerSecond || 0);
        bytes += (out ? r.bytesSent : r.bytesReceived) || 0;
        pkts += (out ? r.packetsSent : r.packetsReceived + (r.packetsLost || 0)) || 0;
        if (!out) {
          lost += r.packetsLost || 0;
          if (r.jitter != null) jitter = r.jitter * 1000;
        }
      } else if (out && r.type === "remote-inbound-rtp") {
        lost += r.packetsLost || 0;
        if (r.jitter != null) jitter = r.jitter * 1000;
        if (rtt == null && r.roundTripTime != null) rtt = r.roundTripTime * 1000;
      }
    });
    const now = performance.now();
    const p = this.prev;
    this.prev = { now, lost, pkts, bytes };
    let loss = null;
    let kbps = null;
    if (p && now > p.now) {
      const dp = pkts - p.pkts;
      loss = dp > 0 ? Math.max(0, Math.min(100, ((lost - p.lost) / dp) * 100)) : null;
      kbps = Math.max(0, ((bytes - p.bytes) * 8) / (now - p.now));
    }
    let s = 5;
    if (rtt != null) s -= rtt > 600 ? 3 : rtt > 300 ? 2 : rtt > 150 ? 1 : 0;
    if (loss != null) s -= loss > 10 ? 3 : loss > 5 ? 2 : loss > 2 ? 1 : 0;
    if (jitter != null && jitter > 50) s -= 1;
    if (expectVideo && fps != null) s -= fps < 3 ? 3 : fps < 8 ? 2 : fps < 15 ? 1 : 0;
    const r1 = (v) => (v == null ? undefined : Math.round(v * 10) / 10);
    return { score: Math.max(1, Math.min(5, s)), rtt: r1(rtt), loss: r1(loss), fps: r1(fps), kbps: r1(kbps) };
  }
}

// Fill a `.tk-netq` element: five bars, data-score, a tooltip with the numbers.
export function showQuality(node, q, label) {
  node.hidden = false;
  node.dataset.score = String(q.score);
  const parts = [label + ": " + q.score + "/5"];
  if (q.rtt != null) parts.push(Math.round(q.rtt) + " ms");
  if (q.loss != null) parts.push(q.loss + " %");
  if (q.fps != null) parts.push(Math.round(q.fps) + " fps");
  node.title = parts.join(" · ");
  node.setAttribute("aria-label", parts[0]);
}
