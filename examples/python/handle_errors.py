"""Branch on the error ``code`` (docs/errors.md), quote the ``request_id``."""

import io

import requests

from tradehabit import CA_CERT, URL, ApiError, Client

client = Client()


def expect(code, call):
    try:
        call()
    except ApiError as error:
        print(f"{error.status} {error.code} details={error.details} request_id={error.request_id}")
        assert error.code == code, f"expected {code}, got {error.code}"
        assert error.request_id, "every error names its request"
        return error
    raise AssertionError(f"expected {code}, the call succeeded")


# Reading before any upload (a fresh anonymous session has no data).
fresh = Client(api_key="")
expect("data.not_uploaded", lambda: fresh.request("GET", "/api/summary"))

# A bad value in row 2 (the header is row 1): row and column in details.
bad = b"Order ID,Timestamp,Fill Time,B/S,Contract,filledQty,Avg Fill Price,Type,Limit Price,Stop Price,Status\n" \
      b"1,01/04/2024 9:30:00,01/04/2024 9:30:00,Buy,ESH4,abc,4800,Market,,,Filled\n"
files = {"file": ("bad.csv", io.BytesIO(bad), "text/csv")}
error = expect("csv.cell_not_a_number", lambda: client.request("POST", "/api/analyze", files=files))
# The readable facts, then the location as data.
assert error.details[:2] == ["row 2", "column filledQty"], error.details
location = error.details[-1]
assert location == {"row": 2, "column": "filledQty"}, error.details

# Only .csv files.
files = {"file": ("orders.txt", io.BytesIO(b"x"), "text/plain")}
expect("upload.not_csv", lambda: client.request("POST", "/api/analyze", files=files))

# A typo in a setting is refused, not ignored.
expect("settings.unknown_key", lambda: client.request("POST", "/api/settings", json={"sigma": 1.0}))

# A parameter the route does not take.
expect("query.unknown_parameter", lambda: client.request("GET", "/api/summary", params={"x": "1"}))

# No such route.
expect("route.not_found", lambda: client.request("GET", "/api/nowhere"))

# Credentials: none at all, a wrong key.
def without_credentials():
    answer = requests.get(f"{URL}/api/summary", verify=CA_CERT, timeout=30)
    raise ApiError(answer.status_code, answer.json())


expect("auth.missing", without_credentials)
wrong = Client(api_key="th_wrong_0000000000000000000000000000000000000000")
expect("api_key.unknown", lambda: wrong.request("GET", "/api/summary"))
print("every error had its code and request id")
