"""A tight loop into a quota: the client waits ``Retry-After`` seconds on each
429 (``rate_limit.exceeded``) and goes on; the RateLimit headers name every
quota that applies."""

import requests

from tradehabit import CA_CERT, URL, Client

client = Client()
for i in range(8):
    body = client.request("GET", "/api/health")
print(f"8 requests answered: {body['Status']}")

# What the headers say, without the client's retries.
headers = {"X-API-Key": client.api_key} if client.api_key else {}
limited = None
for i in range(20):
    answer = requests.get(f"{URL}/api/health", headers=headers, verify=CA_CERT, timeout=30)
    if answer.status_code == 429:
        limited = answer
        break
assert limited is not None, "the quota was never reached"
body = limited.json()
print(f"429 {body['code']} Retry-After={limited.headers['Retry-After']}")
print(f"RateLimit-Policy: {limited.headers['RateLimit-Policy']}")
print(f"RateLimit: {limited.headers['RateLimit']}")
assert body["code"] in ("rate_limit.exceeded", "rate_limit.overflow")
