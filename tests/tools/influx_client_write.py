"""Writes records to vigie's InfluxDB 2 write API with the official InfluxDB client library.

Used by connectors/tests/http_ingest.rs against an in-process server, to show that a real
InfluxDB client (as Telegraf or a sensor gateway would use) can push records. Usage:

    python3 influx_client_write.py URL TOKEN

Exits with 3 when the influxdb-client package is missing (tests/run installs it in a virtual
environment, target/test-env/venv), with 1 when a write fails.
"""

import sys
from datetime import datetime, timezone

try:
    from influxdb_client import InfluxDBClient, Point
    from influxdb_client.client.write_api import SYNCHRONOUS
except ImportError as e:
    print(f"the Python package influxdb-client is missing ({e}); tests/run installs it "
          "in target/test-env/venv", file=sys.stderr)
    sys.exit(3)

url, token = sys.argv[1], sys.argv[2]
at = datetime(2025, 11, 28, 14, 0, tzinfo=timezone.utc)

with InfluxDBClient(url=url, token=token, org="city") as client:
    write = client.write_api(write_options=SYNCHRONOUS)
    write.write("vigie", record=[
        Point("incident").tag("zone", "13001").tag("category", "theft")
        .field("severity", 3).time(at),
        # A line written by hand: an escaped space in a tag value, nanoseconds.
        "density,zone=13002,sensor=s\\ 1 people=1200 1764338400000000000",
        Point("event").tag("zone", "13008").tag("kind", "sport").field("id", "ev-1")
        .field("start", "2025-11-28T18:00:00Z").field("end", "2025-11-28T22:00:00Z")
        .field("attendance", 500).time(at),
    ])

# The same client with compressed bodies.
with InfluxDBClient(url=url, token=token, org="city", enable_gzip=True) as client:
    write = client.write_api(write_options=SYNCHRONOUS)
    write.write("vigie", record=Point("density").tag("zone", "13003").field("people", 7.5)
                .time(at))
print("written")
