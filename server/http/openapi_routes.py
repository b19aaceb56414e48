"""The route table for OpenAPI, part 1: pages, health, login, and everything the agent and
the caller call (sessions, recording, photos, toolkit, signalling). Part 2 (supervisor,
DPO, admin) is server/http/openapi_routes_staff.py. One `Route` per (method, path) that
create_app registers: tests/test_openapi.py fails for a route missing here, listed here
but gone, or whose roles differ from docs/security.md's matrix.
"""

from __future__ import annotations

from server.http.openapi_spec import (
    AGENT,
    AGENT_OWN,
    ANY_OBJ,
    ANYONE,
    BOOL,
    CALLER,
    INT,
    STAFF,
    STR,
    TIME,
    WEBSOCKET,
    Body,
    Query,
    Reply,
    Route,
    arr,
    binary,
    enum,
    obj,
    ok,
    opt,
    page,
    redirect,
    ref,
)

LANG_TEXTS = obj(lv=STR, en=STR, ru=STR)
IMAGE = Body("image/jpeg", "a JPEG, PNG or WebP image (the raw bytes)")
LINK_INVALID = Reply(410, "link no longer valid (or never was): the neutral page",
                     media="text/html")  # fmt: skip
WS_ERRORS = ((400, "`version_unsupported`: offer the subprotocol `callassist.v1`"),
             (410, "`room_ended`: the room has ended or does not exist"))  # fmt: skip

PAGES = (
    Route("GET", "/", "Redirect to the agent console", ANYONE, redirect(302, "to `/agent`"),
          "pages"),
    Route("GET", "/agent", "The agent console page (it asks for a login)", ANYONE,
          page("web/agent.html"), "pages"),
    Route("GET", "/ops", "The ops console page (its data: supervisors)", ANYONE,
          page("web/ops.html"), "pages"),
    Route("GET", "/dpo", "The data-protection officer's page (its data: dpo)", ANYONE,
          page("web/dpo.html"), "pages"),
    Route("GET", "/admin", "The administrator's page (its data: admin)", ANYONE,
          page("web/admin.html"), "pages"),
    Route("GET", "/c", "The caller page, for the browser that opened the one-time link",
          CALLER, page("web/caller.html"), "caller", errors=(LINK_INVALID,)),
    Route("GET", "/j/{token}", "The link page of a one-time link (uses nothing up)",
          ANYONE, page("web/link-open.html: the caller taps to continue"), "caller",
          errors=(LINK_INVALID,),
          description="GET and HEAD (link previews) change nothing; reused, expired, "
          "revoked, made-up and rate-limited links all get the same 410 page."),
    Route("POST", "/j/{token}", "Open a one-time link: the caller's tap on the link page",
          ANYONE, redirect(303, "to `/c`, with the caller's device cookie"), "caller",
          errors=(LINK_INVALID, (403, "`origin_not_allowed`: not from the link page")),
          description="Uses the link up (once); the browser that holds the cookie may tap "
          "again. Needs an Origin of this service."),
    Route("GET", "/healthz", "Liveness", ANYONE, ok("the process answers",
          obj(status=enum("ok"))), "health"),
    Route("GET", "/readyz", "Readiness: the database answers, the data directory is writable",
          ANYONE, ok("ready", obj(status=enum("ready"), checks=ANY_OBJ)), "health",
          errors=(Reply(503, "not ready", obj(status=enum("not_ready"),
                                              reason="e.g. `database: TimeoutError`",
                                              checks=ANY_OBJ)),)),
    Route("GET", "/metrics", "Prometheus metrics (docs/ops.md lists them; no personal data); "
          "only with `Authorization: Bearer <metrics token>`, no login opens it",
          {}, binary("Prometheus text format", "text/plain"), "health"),
    Route("GET", "/api/openapi.json", "This API description", ANYONE,
          ok("OpenAPI 3.1", ANY_OBJ), "health"),
    Route("GET", "/api/caller/notice", "The service notice and privacy summary for callers",
          ANYONE, ok("the notice in one language", obj(
              title=STR, sections=arr(ANY_OBJ), reminder=STR,
              version="the notice version the caller accepts", lang=enum("lv", "en", "ru"),
              operator=STR, contact=STR)), "caller",
          query=(Query("lang", "lv (default), en or ru", enum("lv", "en", "ru")),)),
)  # fmt: skip

AUTH = (
    Route("GET", "/api/login/options", "How staff log in here", ANYONE,
          ok("`local`: the password login is on (auth.local_login); `sso`: single sign-on "
             "is configured (its link: `GET /auth/oidc/login?next=/agent`, docs/security.md)",
             obj(local=BOOL, sso=BOOL)), "auth"),
    Route("POST", "/api/login", "Log in (sets the login cookie)", ANYONE,
          ok("logged in; `csrf` goes in the X-CSRF-Token header",
             obj(user=obj(name=STR, role=STR), csrf=STR)), "auth",
          body=obj(username=STR, password=STR),
          errors=(400, (401, "`bad_credentials`: wrong user name or password"),
                  (403, "`origin_not_allowed`; `local_login_disabled` (auth.local_login = "
                        "false: single sign-on only)"), 429)),
    Route("POST", "/api/logout", "Log out (ends this login)", STAFF,
          Reply(204, "logged out"), "auth",
          errors=(Reply(200, "logged out, a single sign-on account: navigate to `redirect`, "
                             "the provider's logout (RP-initiated), which comes back to /agent",
                        obj(redirect=STR)),)),
    Route("GET", "/api/me", "The logged-in user and the CSRF token", STAFF,
          ok("the user", obj(user=obj(name=STR, role=STR), csrf=STR,
                             default_country_code="for numbers typed without one")), "auth"),
)  # fmt: skip

SESSION_REPLY = obj(session=ref("Session"))
SESSIONS = (
    Route("POST", "/api/sessions", "Start a support session and issue its one-time link",
          AGENT, ok("created", obj(("session", "link", "qr_svg", "expires_at"),
                                   session=ref("Session"), link=STR, qr_svg=STR,
                                   expires_at=TIME, sms=ANY_OBJ), 201), "sessions",
          body=obj(("phone",), phone="E.164, or local with the default country code",
                   reference={"type": "string", "maxLength": 128}),
          errors=((400, "`bad_phone`, `bad_reference` or `bad_request`"),)),
    Route("GET", "/api/sessions", "The agent's own recent sessions", AGENT,
          ok("sessions", obj(sessions=arr(ref("Session")))), "sessions"),
    Route("GET", "/api/sessions/{session_id}", "One session", AGENT_OWN,
          ok("the session", SESSION_REPLY), "sessions"),
    Route("POST", "/api/sessions/{session_id}/link",
          "Issue a new link (revokes the old one, opened or not; same session)",
          AGENT_OWN, ok("the new link", ref("Link")), "sessions",
          errors=((409, "`room_ended`: the session has ended"),)),
    Route("POST", "/api/sessions/{session_id}/sms", "Send the current link by SMS", AGENT_OWN,
          ok("sent", obj(sms=obj(status=enum("sent"), to="masked number"))), "sessions",
          body=obj(("link",), link="the session's current link (nothing else can be sent)",
                   lang=enum("lv", "en", "ru")),
          errors=((400, "`bad_link` or `bad_request`"),
                  (502, "`sms_failed`: the SMS gateway failed (message says why)"))),
    Route("POST", "/api/sessions/{session_id}/end", "End the session", AGENT_OWN,
          ok("ended", SESSION_REPLY), "sessions"),
)  # fmt: skip

RECORDING = (
    Route("POST", "/api/sessions/{session_id}/recording", "Start or stop recording",
          AGENT_OWN, ok("the recording state", obj(recording=ref("RecordingState"))),
          "recording", body=obj(action=enum("start", "stop")),
          errors=((400, "`bad_action`"),
                  (409, "`room_ended`, `recording_disabled`, `recording_required` or "
                   "`do_not_record`"),
                  (503, "`storage_unavailable` or `shutting_down`"))),
    Route("GET", "/api/sessions/{session_id}/recordings",
          "The session's recordings and photos (metadata)", AGENT_OWN,
          ok("recordings", obj(mode=enum("off", "on_demand", "always"),
                               recordings=arr(ref("Recording")))), "recording"),
    Route("POST", "/api/sessions/{session_id}/snapshot", "Ask the caller's phone for a still",
          AGENT_OWN, ok("asked; the photo arrives as a `photo` message",
                        obj(snapshot=obj(id=STR)), 202), "recording",
          errors=((409, "`room_ended` or `camera_not_live`"), (429, "`too_many_snapshots`"))),
    Route("GET", "/api/sessions/{session_id}/photos", "The session's photos", AGENT_OWN,
          ok("photos", obj(photos=arr(ref("Photo")))), "recording"),
    Route("GET", "/api/sessions/{session_id}/photos/{photo_id}",
          "One photo, decrypted (audited `photo.view`)", AGENT_OWN,
          binary("the photo", "image/jpeg"), "recording",
          errors=((500, "`photo_unreadable`: it cannot be decrypted"),)),
    Route("POST", "/api/sessions/{session_id}/inspect",
          "Read codes and text from one of the session's photos (audited `inspect.read`, "
          "without what was read; nothing read is stored)", AGENT_OWN,
          ok("what was read, boxes in the photo's pixels", obj(
              photo=STR, width=INT, height=INT, faces=INT, findings=arr(obj(
                  source=enum("code", "text"), format="`QR Code`, `EAN-13`, … or `line`",
                  text="what was read (a Wi-Fi QR code: `Wi-Fi: <SSID>`, never its password)",
                  box=arr(INT), labels=arr(obj(
                      label=enum("mac", "imei", "iccid", "wifi", "url", "serial"),
                      value=STR)))))), "recording",
          body=obj(photo="a photo id from `GET /api/sessions/{id}/photos`"),
          errors=((400, "`bad_request`"), (404, "`not_found`: no such session or photo"),
                  (422, "`not_an_image`, `ocr_failed` or `ocr_unavailable`"),
                  (500, "`photo_unreadable`"), (503, "`inspect_busy`"),
                  (504, "`inspect_timeout`"))),
    Route("POST", "/api/sessions/{session_id}/inspect/reference",
          "Add one value read from a still to the session's reference (audited "
          "`session.reference`)", AGENT_OWN, ok("the reference now", obj(reference=STR)),
          "recording", body=obj(value="1-64 characters, e.g. a MAC the agent read"),
          errors=((400, "`bad_value`"), (404, "`not_found`: no such session of yours"),
                  (409, "`reference_full`: it would pass 128 characters"))),
    Route("POST", "/api/caller/photos", "The caller sends a photo, or the asked-for snapshot",
          CALLER, ok("stored", obj(photo=obj(id=STR, kind=enum("snapshot", "upload"),
                                             taken_at=TIME, width=opt(INT),
                                             height=opt(INT))), 201), "recording",
          body=IMAGE, query=(Query("snapshot", "the id of the `snapshot` message answered"),),
          errors=(400, (401, "`not_authenticated`: no caller cookie"),
                  (403, "`origin_not_allowed` or `notice_not_accepted`"),
                  (409, "`snapshot_unknown`"), (410, "`room_ended`"),
                  (413, "`too_large` or `image_too_large`"),
                  (415, "`unsupported_image` or `not_an_image`"), (429, "`too_many_photos`"),
                  (503, "`storage_unavailable`"))),
)  # fmt: skip

NO_LIVE = (404, "`not_found`: no such live session of yours")
TOOLKIT = (
    Route("POST", "/api/sessions/{session_id}/blobs", "Upload a freeze frame or an image to push",
          AGENT_OWN, ok("stored for the live room", obj(blob=ref("Blob")), 201), "toolkit",
          body=IMAGE, query=(Query("kind", "frame or image", enum("frame", "image"), True),),
          errors=(400, NO_LIVE, 413, (415, "`bad_image`"))),
    Route("POST", "/api/sessions/{session_id}/freeze/snapshot",
          "Save the annotated still as a snapshot", AGENT_OWN,
          ok("stored", obj(photo=ref("Photo")), 201), "toolkit",
          body=Body("image/jpeg", "the JPEG the page composed"),
          errors=(400, NO_LIVE, 413, 415, (429, "`too_many_photos`"),
                  (501, "`snapshots_unavailable`"), (503, "`storage_unavailable`"))),
    Route("GET", "/api/sessions/{session_id}/chat", "The chat kept in the session record",
          AGENT_OWN, ok("messages (none unless `toolkit.keep_chat`)", obj(
              kept=BOOL, messages=arr(obj(n=INT, **{"from": enum("agent", "caller")},
                                          text=STR, at=TIME)))), "toolkit"),
    Route("POST", "/api/caller/blobs", "The caller's photo-burst still", CALLER,
          ok("stored for the live room", obj(blob=ref("Blob")), 201), "toolkit", body=IMAGE,
          query=(Query("kind", "still", enum("still"), True),),
          errors=(400, (401, "`not_authenticated`: no caller cookie"),
                  (403, "`origin_not_allowed` or `notice_not_accepted`"), 413,
                  (415, "`bad_image`"))),
    Route("GET", "/api/rooms/{room_id}/blobs/{blob_id}",
          "A pushed or frozen image of a live room (its agent and caller)",
          {"caller": "yes", "agent": "own"}, binary("the image", "image/*"), "toolkit",
          errors=((404, "`not_found` (also for anyone else)"),)),
    Route("GET", "/api/tutorials", "The tutorial library", STAFF,
          ok("tutorials", obj(tutorials=arr(obj(id=STR, title=LANG_TEXTS, steps=INT)))),
          "toolkit"),
    Route("GET", "/api/tutorials/{tutorial_id}", "One tutorial (staff, or a caller in a room)",
          {"caller": "yes", **STAFF}, ok("the tutorial", obj(
              id=STR, title=LANG_TEXTS, steps=arr(obj(image=opt(STR), text=LANG_TEXTS)))),
          "toolkit", errors=((404, "`not_found` (also for anyone else)"),)),
    Route("GET", "/api/tutorials/{tutorial_id}/{name}", "A tutorial's image",
          {"caller": "yes", **STAFF}, binary("the image", "image/*"), "toolkit",
          errors=((404, "`not_found` (also for anyone else)"),)),
)  # fmt: skip

RECEIPT = obj(
    session_id=STR, phone_masked=STR, operator=STR, started_at=TIME, ended_at=opt(TIME),
    ended=BOOL, notice_version=opt(STR), notice_accepted_at=opt(TIME), device_type=opt(STR),
    snapshots=INT, uploads=INT, faces_blurred=INT,
    recording=obj(recorded=BOOL, count=INT, seconds=INT),
    kept_until=obj(record=TIME, recordings=opt(TIME), photos=opt(TIME)),
    contact="whom to ask for access or erasure",
)  # fmt: skip
PRIVACY = (
    Route("GET", "/api/caller/receipt", "The caller's privacy receipt: what this session "
          "captured and until when it is kept", CALLER, ok("the receipt", obj(receipt=RECEIPT)),
          "caller", errors=((401, "`not_authenticated`: no caller cookie"),),
          description="During and after the session, as long as the device cookie lives."),
)  # fmt: skip

SIGNALLING = (
    Route("GET", "/ws/agent/{room_id}", "The agent's signalling and live media",
          AGENT_OWN, WEBSOCKET, "signalling",
          errors=(*WS_ERRORS, (403, "`forbidden` (not your room) or `origin_not_allowed`")),
          description="Audited `media.view`."),
    Route("GET", "/ws/caller", "The caller's signalling", CALLER, WEBSOCKET, "signalling",
          errors=(*WS_ERRORS, (401, "`not_authenticated`: no caller cookie"),
                  (403, "`origin_not_allowed`"))),
)  # fmt: skip

ROUTES: tuple[Route, ...] = (*PAGES, *AUTH, *SESSIONS, *RECORDING, *TOOLKIT, *PRIVACY, *SIGNALLING)
