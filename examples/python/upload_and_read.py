"""Upload the sample export, then read the summary and the trades."""

from tradehabit import SAMPLE_CSV, Client

client = Client()
meta = client.upload(SAMPLE_CSV)["meta"]
print(f"uploaded: {meta['csvRows']} rows, {meta['tradesDetected']} trades")
summary = client.request("GET", "/api/summary")
print(f"win rate {summary['win_rate']}, {summary['total_trades']} trades")
trades = client.request("GET", "/api/trades")["trades"]
print(f"first trade: {trades[0]['symbol']} {trades[0]['side']} pnl {trades[0]['pnl']}")
losses = client.request("GET", "/api/losses", params={"sigma": 1.5})
print(f"losses: {losses['count']}")
