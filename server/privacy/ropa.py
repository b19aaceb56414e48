"""`callassist ropa`: the record of processing activities (GDPR Art. 30) as Markdown, built
from the running configuration so it cannot drift from what the service really does."""

from __future__ import annotations

from server.core.config import Config


def days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def _access_log_line(clients: str) -> str:
    what = {
        "none": "no IP address and no User-Agent",
        "masked": "the client's network only (IPv4 /24, IPv6 /48) and the browser's product "
        "name (no version, no device)",
        "full": "the client's full IP address and User-Agent",
    }[clients]
    return (
        "Each HTTP request: time, method, path (one-time link tokens removed), status, size, "
        f"duration; of the client: {what} (`http.access_log_clients` = `{clients}`). Log "
        "lines mask phone numbers and hold no link tokens or secrets."
    )


def ropa_markdown(cfg: Config) -> str:
    s, r = cfg.session, cfg.retention
    # The periods the sweeper really applies (server/privacy/retention.py): media never
    # outlive their session record.
    rec_days, media_days = (
        min(r.recordings_days, r.sessions_days),
        min(r.media_days, r.sessions_days),
    )
    chat = cfg.toolkit.keep_chat
    recipients = [
        f"the support agents of {s.operator_name} (the caller's own session only)",
        "supervisors (live rooms, masked phone numbers; no media downloads)",
        "the data-protection officer (access, rectification, erasure requests)",
    ]
    if cfg.sms.sender == "http":
        recipients.append(f"the SMS gateway at {cfg.sms.http_url} (phone number and the link)")
    if cfg.webhooks.urls:
        recipients.append(
            "the operator's ticketing/CRM systems via signed webhooks "
            f"({len(cfg.webhooks.urls)} receiver(s): session times, masked phone number)"
        )
    lines = [
        "# Record of processing activities — visual support during a phone call",
        "",
        f"**Controller:** {s.operator_name}, contact for personal data: {s.privacy_contact}",
        "",
        "## Purpose",
        "Helping a caller who is on the phone with support by letting the agent see what the "
        "caller chooses to show with the phone's camera or photos, and by showing the caller "
        "the agent's screen. The caller starts sharing only after accepting the service notice "
        f"(version {s.notice_version}); a link serves one call only.",
        "",
        "## Data subjects",
        "Callers who open a one-time support link; the operator's staff using the console.",
        "",
        "## Categories of personal data",
        "- phone number of the caller",
        "- device type (operating system, browser, device class)",
        "- time and duration of use (link sent, opened, notice accepted, media start and end)",
        "- images and video the caller submits (live camera, recordings, snapshots, photos)",
        "- chat messages between the caller and the agent (`toolkit.keep_chat` is on)"
        if chat
        else "- chat messages are not stored (they live only as long as the call)",
        "- how the session ended, and the reason a supervisor typed when ending it from the "
        "ops console (phone numbers in it masked; kept with the session, never in the audit "
        "log)",
        "- the caller's device cookie and the one-time link (stored only as hashes)",
        "- the do-not-record flag of a phone number that objected (stored as a keyed hash)",
        "- for staff: account name, role, logins (login and expiry time), audit records of "
        "their actions",
        "",
        "No IP addresses are stored in the database (used only in memory for rate limiting); "
        "phone numbers are masked in logs, metrics and operations views.",
        "",
        "## What the server log holds",
        _access_log_line(cfg.http.access_log_clients),
        "",
        "## Recipients",
        *[f"- {x}" for x in recipients],
        "",
        "## Transfers",
        "None outside the EU/EEA. Object storage must be in an allowed EU/EEA region; the "
        "service refuses to start otherwise.",
        "",
        "## Retention (deleted automatically by the retention sweeper)",
        "A caller's data is counted from the end of the session (a session cut off by a server "
        "stop ends at the next start); media never outlive their session record.",
        "",
        f"- session records: {days(r.sessions_days)} after the session ended",
        f"- recordings: {days(rec_days)}",
        f"- snapshots and uploaded photos: {days(media_days)}",
        *([f"- chat messages: {days(r.sessions_days)}, with the session record"] if chat else []),
        "- device cookies and links: 1 day (unopened links stop working after "
        f"{s.link_ttl_s // 60} minutes)",
        f"- staff logins: {days(r.logins_days)} after the login expired",
        f"- audit records (no phone numbers in clear): {days(r.audit_days)} after they were "
        "written",
        "- staff accounts: as long as the account exists (an administrator disables it)",
        "- do-not-record flags: until the objection is withdrawn",
        "",
        "## Security measures",
        "- media encrypted in transit (DTLS-SRTP), pages and API over TLS",
        "- recordings and images encrypted before storage (AES-256-GCM, a fresh data key per "
        "recording wrapped by a versioned master key; erasure destroys the key)",
        "- faces found in snapshots and photos are blurred before they are stored "
        "(`privacy.redact_faces`)" if cfg.privacy.redact_faces else
        "- faces in snapshots and photos are stored as taken (`privacy.redact_faces` is off)",
        "- codes and text an agent reads from a still are not stored, unless the agent adds a "
        "value to the session's reference; the read is audited without its content",
        "- one-time link tokens and session cookies stored only as hashes; passwords hashed "
        "with Argon2id; no default accounts or secrets",
        "- least privilege per role; every view, export and erasure of personal data in a "
        "hash-chained audit log",
        "- strict Content-Security-Policy, origin checks, CSRF tokens, rate limits",
        "",
        "## Rights of the data subject",
        "Access, rectification, erasure and objection by phone number through "
        f"{s.privacy_contact}; the data-protection officer exports (one archive: records, "
        "decrypted media, manifest with hashes) or erases everything held about one number "
        "(erasure destroys the recordings' keys too), corrects a session's number or "
        "reference, and can flag a number do-not-record, after which it is never recorded. "
        "At the end of each session the caller's page shows a privacy receipt: what was "
        "kept, until when, and whom to ask.",
        "",
    ]
    return "\n".join(lines)
