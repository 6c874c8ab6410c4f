#!/usr/bin/env python3
"""Writes the excerpts of data/ from the original public files (see data/README.md).

    python3 data/make_excerpts.py ORIGINALS_DIR      # from the repository's root

ORIGINALS_DIR holds the files as their publishers released them, under the names of
data/README.md's table. Each excerpt keeps the original's rows in their order and its column
names, so a mapping reads it as it read the original; only the columns no shipped mapping or
tool reads are dropped, and, for the Melbourne counts, the months outside the kept span. The
zip files are written byte for byte the same on every run (fixed entry time, deflate level 9),
so that re-running this script changes nothing in git.
"""
import csv
import io
import os
import shutil
import sys
import zipfile

src = sys.argv[1] if len(sys.argv) > 1 else sys.exit(__doc__)
out = os.path.dirname(os.path.abspath(__file__))


def rows_of(name):
    if name.endswith(".zip"):
        with zipfile.ZipFile(os.path.join(src, name)) as z:
            text = z.read(z.namelist()[0]).decode("utf-8")
    else:
        with open(os.path.join(src, name), encoding="utf-8", newline="") as f:
            text = f.read()
    return list(csv.DictReader(io.StringIO(text, newline="")))


def write_zip(name, member, columns, rows):
    text = io.StringIO()
    w = csv.writer(text, lineterminator="\n")
    w.writerow(columns)
    w.writerows([r[c] for c in columns] for r in rows)
    info = zipfile.ZipInfo(member, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    with zipfile.ZipFile(os.path.join(out, name), "w") as z:
        z.writestr(info, text.getvalue().encode("utf-8"), compresslevel=9)
    print(f"{name}: {len(rows)} rows, {os.path.getsize(os.path.join(out, name))} bytes")


# Vancouver: every 2020 incident; the columns of config/vancouver.toml (TYPE, the time, the
# neighbourhood). HUNDRED_BLOCK and the X/Y position (zeroed for violent offences) go.
write_zip(
    "vancouver_vpd_crime_2020.zip",
    "vancouver_vpd_crime_2020.csv",
    ["TYPE", "YEAR", "MONTH", "DAY", "HOUR", "MINUTE", "NEIGHBOURHOOD"],
    rows_of("vancouver_vpd_crime_2020.csv"),
)

# Melbourne: December 2013 to February 2014 (New Year's Eve, White Night on 22 February 2014),
# the columns of config/melbourne.toml. Day_of_week and SensorName go (the sensor file names
# the sensors).
KEEP = ("Dec-2013", "Jan-2014", "Feb-2014")
write_zip(
    "melbourne_pedestrian_counts_hourly_2013-12_2014-02.zip",
    "melbourne_pedestrian_counts_hourly_2013-12_2014-02.csv",
    ["Date", "Hour", "SensorID", "PedestrianCount"],
    [r for r in rows_of("melbourne_pedestrian_counts_hourly_2012-01_2015-02.zip") if r["Date"][3:] in KEEP],
)

# Chicago: every event; the columns of config/chicago.toml. Titles, descriptions, labels,
# places, entities (venue addresses) and ranks go.
write_zip(
    "chicago_events_predicthq_2019-01_2021-03.zip",
    "chicago_events_predicthq_2019-01_2021-03.csv",
    ["id", "category", "start", "end", "first_seen", "location", "phq_attendance"],
    rows_of("chicago_events_predicthq_2019-01_2021-03.csv"),
)

# I-94: every hour; the columns of config/i94.toml (temperature, rain, time, volume).
write_zip(
    "metro_interstate_traffic_volume_i94.zip",
    "metro_interstate_traffic_volume_i94.csv",
    ["temp", "rain_1h", "date_time", "traffic_volume"],
    rows_of("metro_interstate_traffic_volume_i94.csv"),
)

# Small enough to ship unchanged.
for name in [
    "vancouver_vpd_crime_2020.LEGAL_DISCLAIMER.txt",
    "melbourne_pedestrian_sensor_locations.csv",
    "milan_telecom_4squares_hourly_2013-11-03_week.csv",
    "milan_telecom_citywide_10min_2013-11-03_week.csv",
    "marseille_arrondissements.geojson",
]:
    shutil.copyfile(os.path.join(src, name), os.path.join(out, name))
    print(f"{name}: unchanged, {os.path.getsize(os.path.join(out, name))} bytes")
