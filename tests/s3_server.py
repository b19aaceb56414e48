"""A real S3 (and KMS) HTTP endpoint for tests: moto's ThreadedMotoServer on 127.0.0.1.

`stop()` then `start()` again serves on the same port; moto keeps its state in this process,
so buckets and objects survive — that is how the tests simulate an S3 outage. Nothing here
mocks boto3: clients talk HTTP to the server like they would to AWS.

    server = S3TestServer().start()
    storage = S3Storage(bucket, endpoint_url=server.endpoint_url, session=server.session())
"""

from __future__ import annotations

import socket
import time
import uuid
from types import TracebackType
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

HOST = "127.0.0.1"


class S3TestServer:
    def __init__(self, port: int = 0) -> None:
        self.port = port  # 0: pick a free port on the first start, then keep it
        self._server: ThreadedMotoServer | None = None
        # Cached: a new boto3 session re-reads its service models (~0.3 s each time).
        self._sessions: dict[str, boto3.session.Session] = {}
        self._clients: dict[tuple[str, str], Any] = {}

    @property
    def endpoint_url(self) -> str:
        if not self.port:
            raise RuntimeError("the server has not been started yet")
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> S3TestServer:
        if self._server is not None:
            return self
        server = ThreadedMotoServer(ip_address=HOST, port=self.port, verbose=False)
        server.start()
        self._server = server
        if not self.port:
            self.port = server.get_host_and_port()[1]
        self._wait(listening=True)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
            self._wait(listening=False)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _wait(self, listening: bool, within_s: float = 5.0) -> None:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((HOST, self.port), timeout=0.2):
                    up = True
            except OSError:
                up = False
            if up == listening:
                return
            time.sleep(0.02)
        raise RuntimeError(
            f"moto server on port {self.port} did not {'start' if listening else 'stop'}"
        )

    def session(self, region: str = "eu-north-1") -> boto3.session.Session:
        # Explicit fake credentials: never picks up (or needs) a developer's real AWS setup.
        if region not in self._sessions:
            self._sessions[region] = boto3.session.Session(
                aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region
            )
        return self._sessions[region]

    def client(self, service: str = "s3", region: str = "eu-north-1") -> Any:
        if (service, region) not in self._clients:
            self._clients[service, region] = self.session(region).client(
                service, endpoint_url=self.endpoint_url
            )
        return self._clients[service, region]

    def create_bucket(self, region: str = "eu-north-1", name: str | None = None) -> str:
        """A new uniquely named bucket in `region` (us-east-1 takes no LocationConstraint)."""
        name = name or f"rec-{uuid.uuid4().hex[:20]}"
        kwargs: dict[str, Any] = {}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        self.client(region=region).create_bucket(Bucket=name, **kwargs)
        return name

    def __enter__(self) -> S3TestServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
