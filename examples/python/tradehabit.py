"""A small client for the TradeHabit API, used by the examples here.

Configuration, from the environment:

* ``TRADEHABIT_URL``: the gateway, default ``https://127.0.0.1:8443`` (``cargo run``).
* ``TRADEHABIT_CA_CERT``: the certificate to trust, default the development
  certificate ``.dev/cert.pem`` of this repository (an absolute path, so the
  examples run from any directory).
* ``TRADEHABIT_API_KEY``: an API key (``th_…``); without one the client asks
  ``POST /auth/session`` for an anonymous session token.

``verify=`` is passed on every request on purpose: ``requests`` lets the
``REQUESTS_CA_BUNDLE`` environment variable override ``Session.verify``, so a
session-level setting silently stops trusting the development certificate
when that variable is set.
"""

import os
import pathlib
import time

import requests

REPO = pathlib.Path(__file__).resolve().parents[2]
URL = os.environ.get("TRADEHABIT_URL", "https://127.0.0.1:8443").rstrip("/")
CA_CERT = os.environ.get("TRADEHABIT_CA_CERT", str(REPO / ".dev" / "cert.pem"))
SAMPLE_CSV = REPO / "examples" / "sample-orders.csv"

#: Codes worth retrying after ``Retry-After`` seconds (docs/errors.md).
RETRYABLE = {
    "rate_limit.exceeded",
    "rate_limit.overflow",
    "admission.principal_busy",
    "admission.queue_full",
    "upstream.busy",
    "limits.client_requests",
    "limits.client_upstream_slots",
    "accept.connection_cap",
}


class ApiError(Exception):
    """An error answer: branch on ``code``, quote ``request_id``."""

    def __init__(self, status, body):
        self.status = status
        self.code = body.get("code")
        self.request_id = body.get("request_id")
        self.message = body.get("message")
        self.details = body.get("details", [])
        super().__init__(f"{status} {self.code}: {self.message} (request {self.request_id})")


class Client:
    """One caller: an API key, or an anonymous session token renewed when it expires."""

    def __init__(self, api_key=None, max_retries=5):
        self.api_key = api_key if api_key is not None else os.environ.get("TRADEHABIT_API_KEY")
        self.token = None
        self.token_expires = 0.0
        self.max_retries = max_retries
        self.http = requests.Session()

    def start_session(self):
        """``POST /auth/session``: an anonymous session token (no body, or ``{}``)."""
        answer = self.http.post(f"{URL}/auth/session", json={}, verify=CA_CERT, timeout=30)
        body = answer.json()
        if answer.status_code != 200:
            raise ApiError(answer.status_code, body)
        self.token = body["access_token"]
        # Renew a little early rather than be refused with jwt.expired.
        self.token_expires = time.monotonic() + body["expires_in"] - 30
        return body

    def _auth_headers(self):
        if self.api_key:
            return {"X-API-Key": self.api_key}
        if self.token is None or time.monotonic() >= self.token_expires:
            self.start_session()
        return {"Authorization": f"Bearer {self.token}"}

    def request(self, method, path, **kwargs):
        """One call; waits ``Retry-After`` seconds and retries on 429/503.

        Returns the decoded JSON body; raises :class:`ApiError` otherwise.
        """
        for attempt in range(self.max_retries + 1):
            headers = {**self._auth_headers(), **kwargs.pop("headers", {})}
            answer = self.http.request(
                method, f"{URL}{path}", headers=headers, verify=CA_CERT, timeout=60, **kwargs
            )
            body = answer.json()
            if answer.status_code < 400:
                return body
            error = ApiError(answer.status_code, body)
            if error.code == "jwt.expired" and not self.api_key:
                # The session ended: a new one starts empty (upload again).
                self.token = None
                continue
            if error.code in RETRYABLE and attempt < self.max_retries:
                wait = int(answer.headers.get("Retry-After", "1"))
                print(f"  {error.code}: waiting {wait} s (RateLimit: {answer.headers.get('RateLimit')})")
                time.sleep(wait)
                continue
            raise error
        raise RuntimeError("unreachable")

    def upload(self, path, query=None):
        """``POST /api/analyze`` with the CSV file at ``path``."""
        with open(path, "rb") as handle:
            files = {"file": (os.path.basename(path), handle, "text/csv")}
            return self.request("POST", "/api/analyze", params=query, files=files)
