"""A bearer JWT (HS256, one day) for the full-policy doors; writes a fresh
secret to argv[1] and prints the token. Standard library only."""
import base64, hashlib, hmac, json, os, sys, time

secret = base64.b64encode(os.urandom(48))
with open(sys.argv[1], "wb") as f:
    f.write(secret)
b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=")
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
now = int(time.time())
claims = {"iss": "https://bench.tradehabit.internal/", "aud": "tradehabit-api",
          "sub": "bench-trader", "scope": "read analyze", "iat": now, "exp": now + 86400}
body = b64(json.dumps(claims).encode())
signature = b64(hmac.new(secret, head + b"." + body, hashlib.sha256).digest())
print((head + b"." + body + b"." + signature).decode())
