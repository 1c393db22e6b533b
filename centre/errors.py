"""What goes wrong at the centre, by meaning: an admin command's bad input, and a kit request's refusal."""

from __future__ import annotations

from appliance.errors import EXIT_BAD_INPUT, KitError


class CentreError(KitError):
    """An admin command cannot do what was asked (unknown school, bad roster, …): one line, exit code 2."""

    code = EXIT_BAD_INPUT


class ApiError(Exception):
    """A kit request refused: HTTP ``status``, a stable ``error`` code and a one-line ``detail`` (kit-api.md)."""

    def __init__(self, status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status, self.error, self.detail = status, error, detail
        self.headers = headers or {}
