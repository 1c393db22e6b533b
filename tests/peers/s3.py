"""An S3-compatible object store on loopback for tests: moto's standalone server (``moto[server]``).

It speaks the real S3 HTTP API (boto3 talks to it over TCP as to any bucket); production runs the same code
against MinIO, Ceph RGW or a cloud bucket. ``S3().start()`` serves on a free port; ``bucket(name)`` creates a
bucket; ``env`` holds the dummy credentials a centre process needs in its environment.
"""

from __future__ import annotations

import socket
from typing import Any, ClassVar


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3:
    env: ClassVar[dict[str, str]] = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                                     "AWS_DEFAULT_REGION": "us-east-1"}

    def __init__(self) -> None:
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = None

    def start(self) -> S3:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        return self

    def client(self) -> Any:  # a boto3 S3 client
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
