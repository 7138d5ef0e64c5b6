"""The anonymous session flow: a token from ``POST /auth/session``, used as a
bearer token until it expires; its data ends with it."""

from tradehabit import SAMPLE_CSV, Client

client = Client(api_key="")  # no API key: an anonymous session
issued = client.start_session()
print(f"session token: {issued['token_type']}, expires in {issued['expires_in']} s, scopes {issued.get('scope')!r}")
print(f"health: {client.request('GET', '/api/health')['Status']}")
meta = client.upload(SAMPLE_CSV)["meta"]
print(f"uploaded as the session: {meta['tradesDetected']} trades")
print(f"summary: {client.request('GET', '/api/summary')['total_trades']} trades")

# Another session sees nothing of this one's data.
other = Client(api_key="")
try:
    other.request("GET", "/api/summary")
    raise AssertionError("sessions must be isolated")
except Exception as error:  # ApiError: data.not_uploaded
    print(f"another session: {error.code}")
    assert error.code == "data.not_uploaded"
