"""``capturekit centre serve``: the kit API on uvicorn, with systemd's READY=1 and watchdog pings.

READY=1 is sent once uvicorn listens; WATCHDOG=1 comes from a task on the server's own event loop, so a loop
that hangs (a blocking call where none belongs) stops the pings and systemd restarts the process. Several of
these processes can serve one database and one object store behind a load balancer: none keeps upload state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from appliance import notify

from .config import CentreConfig
from .context import open_centre
from .kit_api import create_app
from .opener import Opener

log = logging.getLogger("capturekit.centre")


async def _systemd(server: Any) -> None:  # a uvicorn.Server
    while not server.started:
        await asyncio.sleep(0.05)
    notify.ready("serving kits")
    while True:
        notify.watchdog()
        await asyncio.sleep(1.0)


def serve(cfg: CentreConfig) -> int:
    """Run until SIGTERM/SIGINT (uvicorn finishes the requests in flight); exit status 0."""
    import uvicorn

    centre = open_centre(cfg, keys=True)
    assert centre.keys is not None
    centre.opener = Opener(centre.engine, centre.storage, centre.keys.ring, cfg.open_lease_s)
    centre.opener.start()
    holder: dict[str, uvicorn.Server] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_systemd(holder["server"]))
        yield
        notify.stopping()
        task.cancel()

    app = create_app(centre, lifespan=lifespan)
    config = uvicorn.Config(app, host=cfg.listen_host, port=cfg.listen_port, log_level=cfg.log_level.lower(),
                            timeout_keep_alive=30, server_header=False, access_log=False)
    server = holder["server"] = uvicorn.Server(config)
    log.warning("centre on http://%s:%d: database %s, objects %s, %d sealing key(s)", cfg.listen_host,
                cfg.listen_port, centre.engine.url.render_as_string(hide_password=True), centre.storage.describe(),
                len(centre.keys.ring.keys) if centre.keys else 0)
    try:
        server.run()
    finally:
        centre.close()
    return 0 if server.started else 1
