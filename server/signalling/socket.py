"""The signalling WebSocket's transport limits (docs/protocol.md, "Transport").

aiohttp's own knobs do not mean what the protocol page promises, so the translation lives
here, once:
- `max_msg_size` refuses a message of exactly the limit (its reader checks `>=`), so a
  64 KiB limit is passed as 64 KiB + 1;
- `heartbeat=h` pings every h seconds and drops a client that has not answered within
  h/2, so a silent client goes after 1.5 h (the documented drop time is `DROP_FACTOR` x
  `signalling.heartbeat_s`);
- aiohttp closes an oversized message with 1009 from inside `receive()`, before our loop
  sees it: `SignallingSocket.close` sends the `too_large` error first, so the client
  learns why.
"""

from __future__ import annotations

import contextlib
import json
import logging

from aiohttp import WSCloseCode, web

from server.core.config import SignallingConfig
from server.signalling import messages as P

log = logging.getLogger(__name__)

# aiohttp drops a client that has not answered a ping within heartbeat / 2.
DROP_FACTOR = 1.5


def drop_after_s(sig: SignallingConfig) -> float:
    """Seconds of silence after which the server closes a socket (documented: 30 s)."""
    return sig.heartbeat_s * DROP_FACTOR


def aiohttp_max_msg_size(limit: int) -> int:
    """aiohttp refuses a message whose size is >= its `max_msg_size`; ours allows = limit."""
    return limit + 1


class SignallingSocket(web.WebSocketResponse):
    """A WebSocketResponse that says `too_large` before aiohttp's 1009 close."""

    def __init__(self, sig: SignallingConfig) -> None:
        super().__init__(
            protocols=(P.SUBPROTOCOL,),
            heartbeat=sig.heartbeat_s,
            max_msg_size=aiohttp_max_msg_size(sig.max_message_bytes),
        )
        self._limit = sig.max_message_bytes
        self.too_large = False

    async def close(
        self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True
    ) -> bool:
        if code == WSCloseCode.MESSAGE_TOO_BIG and not self.too_large and not self.closed:
            self.too_large = True
            err = P.error(P.TOO_LARGE, f"a message may have at most {self._limit} bytes; closing")
            # The client may be gone already: then the close below is all that is left.
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.send_str(json.dumps(err, separators=(",", ":")))
        return await super().close(code=code, message=message, drain=drain)
