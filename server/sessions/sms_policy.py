"""Who may be sent an SMS, and how often (docs/security.md, "SMS"); pure, no I/O.

SMS pumping: a stolen or careless agent account can make the gateway send to premium-rate
or exotic destinations and resend without end. So a destination must be in an allowed
country and of an allowed number type (libphonenumber's classification), one session gets
at most `sms.max_per_session` sends and one agent `sms.max_per_agent_per_hour`.
"""

from __future__ import annotations

from collections import defaultdict, deque

import phonenumbers
from aiohttp import web
from phonenumbers import PhoneNumberType as T

# Config names of number types (sms.allowed_types) -> libphonenumber's.
TYPES = {
    "mobile": T.MOBILE,
    "fixed_line_or_mobile": T.FIXED_LINE_OR_MOBILE,
    "fixed_line": T.FIXED_LINE,
    "voip": T.VOIP,
    "personal_number": T.PERSONAL_NUMBER,
    "pager": T.PAGER,
    "uan": T.UAN,
    "toll_free": T.TOLL_FREE,
    "premium_rate": T.PREMIUM_RATE,
    "shared_cost": T.SHARED_COST,
}
TYPE_NAMES = {v: k for k, v in TYPES.items()}

def refusal(e164: str, countries: list[str], types: list[str]) -> str | None:
    """Why an SMS may not go to `e164` (None when it may)."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return "not a phone number"
    region = phonenumbers.region_code_for_number(number) or "001"
    if region not in countries:
        where = "international-network (+882, +883, ...)" if region == "001" else region
        return f"SMS to {where} numbers are not allowed (sms.allowed_countries)"
    kind = phonenumbers.number_type(number)
    if kind not in {TYPES[t] for t in types}:
        name = TYPE_NAMES.get(kind, "unknown")
        return f"SMS to {name.replace('_', '-')} numbers are not allowed (sms.allowed_types)"
    return None


class SendBudget:
    """Sends per session (for its life) and per agent (sliding hour)."""

    def __init__(self, per_session: int, per_agent_hour: int) -> None:
        self.per_session = per_session
        self.per_agent_hour = per_agent_hour
        self._sessions: dict[str, int] = defaultdict(int)
        self._agents: dict[int, deque[float]] = defaultdict(deque)

    def take(self, session_id: str, agent_id: int, now: float) -> str | None:
        """Count one send; return why not (and count nothing) when over a cap."""
        if self._sessions[session_id] >= self.per_session:
            return self.why(1)
        sent = self._agents[agent_id]
        while sent and sent[0] <= now - 3600:
            sent.popleft()
        if len(sent) >= self.per_agent_hour:
            return self.why(2)
        self._sessions[session_id] += 1
        sent.append(now)
        return None

    def why(self, cap: int) -> str:
        """1: the session's cap, 2: the agent's."""
        if cap == 1:
            return f"this session's link was sent {self.per_session} times already"
        return f"at most {self.per_agent_hour} SMS per agent per hour; try again later"

    async def check(self, session_id: str, agent_id: int, now: float) -> str | None:
        """`take`, as the API calls it (a cluster's budget is in Redis:
        server/cluster/limits.py, SharedSendBudget)."""
        return self.take(session_id, agent_id, now)


# This feature's application key (docs/architecture.md); set up by server/sessions/api.py.
SMS_BUDGET = web.AppKey("sms_budget", SendBudget)
