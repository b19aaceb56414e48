"""The route table for OpenAPI, part 2: the supervisor (ops console, reports, silent
watch), the data-protection officer and the administrator. Part 1 and the rules:
server/http/openapi_routes.py.
"""

from __future__ import annotations

from server.http.openapi_spec import (
    ADMIN,
    AGENT_OWN,
    ANY_OBJ,
    ANYONE,
    BOOL,
    DPO,
    INT,
    NUM,
    STR,
    SUPERVISOR,
    TIME,
    WEBSOCKET,
    Query,
    Route,
    arr,
    binary,
    enum,
    obj,
    ok,
    opt,
    page,
    ref,
)

REPORT = obj(
    session_id=STR, reference=STR, agent=opt(STR), phone_masked=STR, device_type=opt(STR),
    notice_version=opt(STR), state=STR, end_reason=opt(STR),
    timeline=arr(obj(event=enum("created", "link_sent", "opened", "accepted", "connected",
                                "media_ended", "ended"), at=TIME)),
    durations_s=obj(to_open=opt(NUM), to_accept=opt(NUM), to_connect=opt(NUM),
                    media=opt(NUM), total=opt(NUM)),
    connected=BOOL, snapshots=arr(ANY_OBJ), recording=opt(ANY_OBJ),
    holders=arr(obj(("agent", "from"), **{"agent": opt(STR), "from": TIME, "until": opt(TIME)})),
)  # fmt: skip
OPS_SNAPSHOT = obj(
    type=enum("snapshot"), at=TIME,
    totals=obj(("rooms",), rooms=INT, rooms_active=INT, rooms_waiting=INT, participants=INT,
               in_kbps=NUM, out_kbps=NUM, cpu_percent=opt(NUM), memory_bytes=INT,
               event_loop_lag_ms=NUM),
    today=ANY_OBJ, webhooks=ANY_OBJ, recording=ANY_OBJ,
    warnings=arr(obj(("code",), code=STR)),
    rooms=arr({"type": "object", "description": "one live room: masked number, "
               "participants, per-track numbers, warnings (docs/ops.md)"}),
)  # fmt: skip
DELIVERY = obj(
    event_id=STR, type=STR, session_id=STR, receiver="the receiver URL's origin",
    status=enum("pending", "dead"), created_at=TIME, attempts=INT,
    next_attempt_at=opt(TIME), last_error=opt(STR),
)  # fmt: skip
PHONE_BODY = {"phone": "the subject's number (E.164 or local); never in a URL",
              "reason": "optional, e.g. the request's ticket (at most 200 characters)"}  # fmt: skip
MIN_10_CHARS = {"type": "string", "minLength": 10}
DPO_ERRORS = ((400, "`bad_phone`, `bad_reason` or `bad_request`"),)

SUPERVISION = (
    Route("GET", "/api/sessions/{session_id}/report", "The post-session report (masked number)",
          {"agent": "own", "supervisor": "yes"}, ok("the report", obj(report=REPORT)),
          "ops", errors=((404, "`not_found`: no such session (or not the agent's)"),)),
    Route("GET", "/api/ops/snapshot", "Live rooms and totals, masked numbers", SUPERVISOR,
          ok("the newest snapshot", OPS_SNAPSHOT), "ops"),
    Route("GET", "/api/ops/stream", "The same snapshots as server-sent events", SUPERVISOR,
          binary("`event: snapshot` with the snapshot as `data`, about once a second",
                 "text/event-stream"), "ops"),
    Route("POST", "/api/ops/rooms/{room_id}/end", "End a live room with a reason", SUPERVISOR,
          ok("ended (`false`: it had already ended)", obj(ended=BOOL, room=STR)), "ops",
          body=obj(reason={"type": "string", "maxLength": 500},
                   code={"type": "string", "enum": ["caller_request", "abuse", "technical",
                                                    "duplicate", "other"]}),
          errors=((400, "`bad_reason`"), (404, "`not_found`: no such live room")),
          description="Audited `ops.room_end` with the code (default `other`); the free-text "
                      "reason is kept with the session (`end_note`, phone numbers masked), "
                      "not in the audit log."),
    Route("GET", "/ws/watch/{room_id}", "Silent watch of a live room", SUPERVISOR, WEBSOCKET,
          "signalling", errors=((400, "`version_unsupported`"), (410, "`room_ended`")),
          description="Receive-only; audited `media.watch`."),
    Route("GET", "/ws/join/{room_id}", "Join a live room visibly", SUPERVISOR, WEBSOCKET,
          "signalling", errors=((400, "`version_unsupported`"), (410, "`room_ended`")),
          description="The caller's page names the joiner first; audited `media.join`. A "
                      "room with rooms.max_participants people: `error` `room_full` on the "
                      "socket, then it closes."),
    Route("GET", "/ws/expert/{room_id}", "Join a live room as an invited expert",
          AGENT_OWN, WEBSOCKET, "signalling",
          errors=((400, "`version_unsupported`"), (403, "`forbidden`: no staff link of "
                  "this room was redeemed by you"), (410, "`room_ended`")),
          description="As `/ws/join`, role `expert`; audited `media.join`."),
    Route("POST", "/api/sessions/{session_id}/staff-link", "A one-time link for an expert",
          AGENT_OWN, ok("the link (15 minutes, single use)", obj(link=STR, expires_at=TIME)),
          "sessions", errors=((404, "`not_found`"), (410, "`room_ended`")),
          description="Only the token's hash is stored; audited `team.link_create`."),
    Route("POST", "/api/staff-links/redeem", "Use a staff link up (after the staff login)",
          {"agent": "yes", "supervisor": "yes"}, ok("its room", obj(room=STR)), "sessions",
          body=obj(("token",), token=STR),
          errors=((400, "`bad_token`"), (410, "`link_invalid`: used or expired")),
          description="Audited `team.link_use`; the user may then join `/ws/expert/{room}`."),
    Route("POST", "/api/sessions/{session_id}/hand-over", "Hand the session to someone else",
          AGENT_OWN, ok("the new holder", obj(holder=STR)), "sessions",
          body=obj((), participant=STR, username=STR),
          errors=((400, "`bad_target`"), (404, "`not_found`"), (410, "`room_ended`")),
          description="To a joined staff participant or an agent account; audited "
                      "`session.hand_over`; written to the session's holders."),
    Route("GET", "/x/{token}", "An expert's one-time staff link: the join page", ANYONE,
          page("web/join.html: staff login, then the link is redeemed"), "sessions"),
)  # fmt: skip

PRIVACY = (
    Route("POST", "/api/dpo/search", "A number's sessions", DPO, ok("the subject", obj(
              phone=STR, do_not_record=BOOL, sessions=arr(ref("SubjectSession")))), "dpo",
          body=obj(("phone",), **PHONE_BODY), errors=DPO_ERRORS,
          description="Audited `subject.search`."),
    Route("POST", "/api/dpo/export", "Everything about a number, decrypted, as one archive",
          DPO, binary("a ZIP: records, media, manifest", "application/zip"), "dpo",
          body=obj(("phone",), **PHONE_BODY),
          errors=(*DPO_ERRORS, (503, "`keys_unavailable`")),
          description="Audited `subject.export`, and `recording.export` per file."),
    Route("POST", "/api/dpo/erase", "Erase a number's sessions, recordings and photos", DPO,
          ok("what was deleted", obj(erased=obj(sessions=INT, recordings=INT, objects=INT))),
          "dpo", body=obj(("phone", "confirm"), confirm="the same number again",
                          **PHONE_BODY),
          errors=((400, "`bad_phone`, `bad_reason`, `not_confirmed` or `bad_request`"),
                  (409, "`session_live`: a session of this number is still open")),
          description="Audited `subject.erase`."),
    Route("POST", "/api/dpo/objection", "Set or clear the do-not-record flag of a number", DPO,
          ok("the flag", obj(phone=STR, do_not_record=BOOL)), "dpo",
          body=obj(("phone", "do_not_record"), do_not_record=BOOL, **PHONE_BODY),
          errors=DPO_ERRORS, description="Audited `subject.objection`."),
    Route("POST", "/api/dpo/sessions/{session_id}/rectify",
          "Correct a session's number or reference", DPO,
          ok("the corrected session", obj(session=ref("Session"), changed=arr(STR))), "dpo",
          body=obj(("reason",), phone=STR, reference=STR, reason="why (required)"),
          errors=((400, "`bad_phone`, `bad_reference`, `bad_reason`, `nothing_to_change`"),
                  (404, "`not_found`")),
          description="Audited `session.rectify`."),
    Route("GET", "/api/dpo/audit", "The audit log (newest first) and its verification", DPO,
          ok("records", obj(
              records=arr(obj(seq=INT, at=TIME, actor=STR, role=STR, action=STR, object=STR,
                              reason=STR, result=STR, hash=STR)),
              next_before=opt(INT),
              verify=obj(ok=BOOL, count=INT, head=opt(STR), problem=opt(STR),
                         pruned_through=opt(INT), from_seq=INT, rows_read=INT))), "dpo",
          query=(Query("limit", "1-500, default 100", {"type": "integer"}),
                 Query("before", "records with a smaller seq (the previous page's "
                       "`next_before`)", {"type": "integer"})),
          errors=((400, "`bad_request`: limit and before are numbers"),),
          description="Audited `audit.view`."),
)  # fmt: skip

ADMINISTRATION = (
    Route("GET", "/api/admin/users", "Accounts", ADMIN,
          ok("accounts", obj(users=arr(ref("User")))), "admin"),
    Route("POST", "/api/admin/users", "Create an account", ADMIN,
          ok("created", obj(user=ref("User")), 201), "admin",
          body=obj(username="1-64 printable characters", password=MIN_10_CHARS,
                   role=enum("agent", "supervisor", "dpo", "admin")),
          errors=((400, "`bad_username`, `bad_role`, `bad_password` or `bad_request`"),
                  (409, "`user_exists`")),
          description="Audited `user.create`."),
    Route("POST", "/api/admin/users/{username}", "Disable/enable, change role or password",
          ADMIN, ok("the account", obj(user=ref("User"))), "admin",
          body=obj((), disabled=BOOL, role=enum("agent", "supervisor", "dpo", "admin"),
                   password=STR),
          errors=((400, "`bad_role`, `bad_password`, `own_account`, `nothing_to_change` or "
                   "`bad_request`"), (404, "`not_found`")),
          description="Audited `user.update`; ends the account's logins."),
    Route("GET", "/api/admin/status", "Configuration status (no secrets, no personal data)",
          ADMIN, ok("status", obj(
              environment=STR, public_url=STR, database=ANY_OBJ, recording=ANY_OBJ,
              retention=ANY_OBJ, sms=ANY_OBJ, webhooks=ANY_OBJ, live_rooms=INT,
              event_loop=STR, audit=obj(ok=BOOL, records=INT, problem=opt(STR)),
              at=TIME)), "admin"),
    Route("GET", "/api/admin/config", "The effective configuration, secrets masked", ADMIN,
          ok("every key by section; secrets only as set or not", obj(
              sections=arr(obj(name=STR, keys=arr(obj(
                  key=STR, value={"description": "as configured, or masked (•••)"},
                  masked=BOOL)))),
              secrets=arr(obj(name=STR, set=BOOL)), at=TIME)), "admin",
          description="A URL's password and query values are masked; a receiver URL "
                      "(webhooks.urls, sms.http_url) shows its origin only."),
    Route("GET", "/api/admin/nodes", "The cluster's nodes (or the single node)", ADMIN,
          ok("nodes", obj(cluster=BOOL, node_id=STR, rooms=INT, nodes=arr(obj(
              node_id=STR, internal_url=STR, rooms=INT, max_rooms=INT, cpu_percent=NUM,
              loop_lag_ms=NUM, draining=BOOL, drain_requested=opt(STR), this=BOOL,
              headroom=NUM)))), "admin",
          errors=((503, "`cluster_unavailable`: Redis did not answer"),)),
    Route("POST", "/api/admin/nodes/{node_id}/drain", "Drain a node, or undo it", ADMIN,
          ok("the flag is set (read at the node's next heartbeat)",
             obj(node_id=STR, drain_requested=BOOL)), "admin",
          body=obj(("drain",), drain=BOOL),
          errors=((400, "`bad_request`"), (404, "`not_found`: no such node (drain only)"),
                  (409, "`no_cluster`: cluster.router is local"),
                  (503, "`cluster_unavailable`")),
          description="Audited `node.drain` (reason `drain` or `undo`); the same flag as "
                      "`callassist node drain`."),
    Route("GET", "/api/admin/webhooks", "Webhook deliveries: pending and dead letters", ADMIN,
          ok("the outbox", obj(
              enabled=BOOL, receivers=arr(STR), counts=obj(pending=INT, dead=INT),
              pending=arr(DELIVERY), dead=arr(DELIVERY), limit=INT)),
          "admin", description="Audited `webhooks.view`; receivers by origin only."),
    Route("POST", "/api/admin/webhooks/{event_id}/replay", "Send a dead letter again", ADMIN,
          ok("pending again, with its original id", obj(event_id=STR, replayed=INT)),
          "admin",
          errors=((400, "`bad_event_id`"), (404, "`not_found`: not in the outbox"),
                  (409, "`not_dead`: already pending again; nothing changed")),
          description="Audited `webhooks.replay`; only rows still dead change, so a "
                      "repeated replay sends nothing twice."),
)  # fmt: skip

ROUTES: tuple[Route, ...] = (*SUPERVISION, *PRIVACY, *ADMINISTRATION)
