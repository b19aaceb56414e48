"""A recorder's keys and spool for a bench: temporary, local, nothing leaves the machine
(LocalStorage stands in for S3: a bench measures the recorder, not the network)."""

from __future__ import annotations

import os
from pathlib import Path

from recorder.keys import MasterKeyring
from recorder.spool import Spool
from recorder.storage import LocalStorage


def memory_keyring() -> MasterKeyring:
    # In memory: a bench measures encryption, not key files.
    return MasterKeyring({"mk-0001": os.urandom(32)})


async def local_spool(directory: Path) -> Spool:
    """A started spool in `directory`/spool uploading into `directory`/store."""
    spool = Spool(directory / "spool", LocalStorage(directory / "store"))
    await spool.start()
    return spool
