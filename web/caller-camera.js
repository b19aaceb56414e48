// Caller page: turning the camera on (never before the notice is accepted), and why it
// failed: denied, missing, in an in-app browser, insecure page, other (docs/testing.md,
// `camera-error`). caller.js owns the state; this module only fills st.starting,
// st.cameraError, st.canForce and hands a working track to useTrack.

const CAMERA_CONSTRAINTS = {
  video: { facingMode: { ideal: "environment" }, width: { ideal: 1280 }, height: { ideal: 720 } },
  audio: false,
};
import { inAppBrowser } from "./inapp.js";

function isInApp() {
  return !!inAppBrowser(navigator.userAgent);
}

// The camera alone is no use for a call without a peer connection.
export function hasWebrtc() {
  return typeof window.RTCPeerConnection === "function";
}

function reasonOf(err) {
  const name = err && err.name;
  if (isInApp()) return "in_app_browser";
  if (name === "NotAllowedError" || name === "SecurityError" || name === "PermissionDeniedError") return "denied";
  if (name === "NotFoundError" || name === "DevicesNotFoundError" || name === "OverconstrainedError") return "missing";
  return "other";
}

// The help text for a camera error: for "denied", how to allow it in this browser.
export function helpKey(reason) {
  if (reason !== "denied") return `c.err.${reason}.help`;
  const ua = navigator.userAgent;
  if (/iPhone|iPad|iPod/.test(ua) || (/Macintosh/.test(ua) && navigator.maxTouchPoints > 1)) return "c.err.denied.ios";
  if (/Android/.test(ua)) return "c.err.denied.android";
  return "c.err.denied.other";
}

// force: the caller tapped "Try anyway" in an in-app browser. quiet: the page tries by
// itself (no tap), so a failure is not the caller's error: the button stays, no message.
export async function startCamera(st, force, { render, useTrack, quiet = false }) {
  if (!st.accepted || st.starting || st.ended) return; // never before the notice is accepted
  const fail = (reason, canForce = false) => {
    st.starting = false;
    if (!quiet) {
      st.cameraError = reason;
      st.canForce = canForce;
    }
    render();
  };
  const getCamera = (constraints) => {
    st.gumCalls += 1;
    return navigator.mediaDevices.getUserMedia(constraints);
  };
  st.cameraError = null;
  st.canForce = false;
  if (!window.isSecureContext) return fail("insecure");
  if (!hasWebrtc()) return fail("no_webrtc");
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return fail(isInApp() ? "in_app_browser" : "other");
  // In-app browsers often cannot use the camera: explain first, let the caller try anyway.
  if (isInApp() && !force) return fail("in_app_browser", true);
  st.starting = true;
  render();
  let stream;
  try {
    stream = await getCamera(CAMERA_CONSTRAINTS);
  } catch (err) {
    if (err && (err.name === "OverconstrainedError" || err.name === "ConstraintNotSatisfiedError")) {
      try {
        stream = await getCamera({ video: true, audio: false });
      } catch (err2) {
        return fail(reasonOf(err2));
      }
    } else {
      return fail(reasonOf(err));
    }
  }
  st.starting = false;
  if (st.ended || st.fatal) {
    stream.getTracks().forEach((tr) => tr.stop());
    return;
  }
  useTrack(stream.getVideoTracks()[0]);
}
