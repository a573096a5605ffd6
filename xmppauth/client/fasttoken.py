"""The reference client's XEP-0484 FAST token file: JSON with the token, its expiry, the mechanism and the
``<user-agent id/>`` it is bound to; written with mode 0600, deleted when the server refuses the token."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class FastToken:
    token: str
    expiry: str  # XEP-0082 date-time, as the server sent it
    mechanism: str
    user_agent_id: str
    jid: str

    def expired(self, now: datetime | None = None) -> bool:
        try:
            moment = datetime.fromisoformat(self.expiry.replace("Z", "+00:00"))
        except ValueError:
            return False  # the server decides
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment <= (now or datetime.now(UTC))


class TokenFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> FastToken | None:
        """The stored token, or None when there is no file or it is unreadable."""
        try:
            data = json.loads(self.path.read_text())
            return FastToken(
                token=str(data["token"]),
                expiry=str(data.get("expiry", "")),
                mechanism=str(data.get("mechanism", "HT-SHA-256-NONE")),
                user_agent_id=str(data["user_agent_id"]),
                jid=str(data.get("jid", "")),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, token: FastToken) -> None:
        """Write the file 0600 from the start (never readable by others, not even briefly)."""
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(asdict(token), out, indent=1)
        os.replace(tmp, self.path)

    def delete(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
