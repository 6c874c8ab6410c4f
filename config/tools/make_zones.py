#!/usr/bin/env python3
"""Builds the shipped zone files from the real data of the repository's data/ (run from config/).

    python3 tools/make_zones.py            # or: python3 tools/make_zones.py DATA_DIR

Marseille: the 16 arrondissements with their polygons. Parameters derived from population:
  capacity        = 25 % of residents (people the public space holds at ease),
  default_density = 5 % of residents (people out at an ordinary hour),
  max_agents      = one agent per 4,000 residents, at least 2; min_agents = 1; scale = 10.
Vancouver: the 24 VPD neighbourhoods, no polygon (records name them); equal parameters.
Melbourne: a 3 x 3 grid over the bounding box of the pedestrian sensors (padded 0.002 deg).
Chicago: a 4 x 4 grid of 0.08 deg cells around the Loop (PredictHQ events within 16 km).
I-94: one zone, the monitored corridor, for the weather and traffic feeds. Its road_capacity
  (vehicles per hour, model v2's fluidity) is the BPR curve's practical capacity, the flow the
  road carries at ease (as a zone's capacity is the crowd it holds at ease): 80 % of its ultimate
  capacity, the share the BPR function's practical capacity is commonly taken at (level of
  service C). The ultimate capacity comes from the file: a counter measures flow, and flow cannot
  exceed capacity, so six years of counts top out there: the highest hour is 7,280, only 6 of
  48,204 hours reach 7,200 and 99.9 % are at or below 7,024. So 0.8 x 7,200 (the highest hour
  rounded down to hundreds) = 5,760. With it the file's hours are at fluidity level 1 (39,937),
  2 (8,221: the rush hours above about 5,350) and 3 (46, the saturated ones above about 7,025).
Milan: the four squares of the Telecom Italia grid in the telecom file, by id, no polygon (the
  file has no coordinates; records name their square). A square is about 235 m a side (5.5 ha):
  capacity 5,000 (about a third of it streets and squares, at some 3.5 m2 a person),
  default_density 500, max_agents 4; min_agents = 1; scale = 10. See milan.toml.
"""
import csv, io, json, math, sys, os, zipfile

data = sys.argv[1] if len(sys.argv) > 1 else "../data"

def feature(props, geometry=None):
    return {"type": "Feature", "geometry": geometry, "properties": props}

def write(name, features):
    with open(os.path.join("zones", name), "w") as f:
        f.write('{"type":"FeatureCollection","features":[\n')
        f.write(",\n".join(json.dumps(x, separators=(",", ":")) for x in features))
        f.write("\n]}\n")

# Marseille
src = json.load(open(os.path.join(data, "marseille_arrondissements.geojson")))
feats = []
for f in sorted(src["features"], key=lambda f: f["properties"]["arrondissement"]):
    p = f["properties"]
    pop = p["population"]
    n = p["arrondissement"] - 13000
    feats.append(feature({
        "id": str(p["arrondissement"]),
        "name": "Marseille %d%s" % (n, "er" if n == 1 else "e"),
        "capacity": round(pop * 0.25),
        "scale": 10,
        "min_agents": 1,
        "max_agents": max(2, round(pop / 4000)),
        "default_density": round(pop * 0.05),
    }, f["geometry"]))
write("marseille.geojson", feats)

# Vancouver
with zipfile.ZipFile(os.path.join(data, "vancouver_vpd_crime_2020.zip")) as z:
    crimes = io.TextIOWrapper(z.open(z.namelist()[0]), encoding="utf-8")
    hoods = sorted({r["NEIGHBOURHOOD"] for r in csv.DictReader(crimes) if r["NEIGHBOURHOOD"]})
write("vancouver.geojson", [feature({
    "id": h, "name": h, "capacity": 20000, "scale": 10, "min_agents": 1, "max_agents": 8,
    "default_density": 1000}) for h in hoods])

def grid(prefix, lat0, lon0, lat1, lon1, n, props):
    out = []
    dlat, dlon = (lat1 - lat0) / n, (lon1 - lon0) / n
    for i in range(n):
        for j in range(n):
            a, b = lat0 + i * dlat, lon0 + j * dlon
            ring = [[b, a], [b + dlon, a], [b + dlon, a + dlat], [b, a + dlat], [b, a]]
            out.append(feature(dict(props, id="%s-%d%d" % (prefix, i, j), name="%s cell %d,%d" % (prefix, i, j)),
                               {"type": "Polygon", "coordinates": [[[round(x, 6) for x in c] for c in ring]]}))
    return out

# Melbourne
locs = list(csv.DictReader(open(os.path.join(data, "melbourne_pedestrian_sensor_locations.csv"))))
lats = [float(r["Latitude"]) for r in locs]; lons = [float(r["Longitude"]) for r in locs]
write("melbourne.geojson", grid("mel", min(lats) - 0.002, min(lons) - 0.002, max(lats) + 0.002, max(lons) + 0.002, 3,
      {"capacity": 30000, "scale": 10, "min_agents": 1, "max_agents": 10, "default_density": 2000}))

# Chicago
write("chicago.geojson", grid("chi", 41.72, -87.79, 42.04, -87.47, 4,
      {"capacity": 50000, "scale": 10, "min_agents": 1, "max_agents": 12, "default_density": 3000}))

# I-94
with zipfile.ZipFile(os.path.join(data, "metro_interstate_traffic_volume_i94.zip")) as z:
    rows = io.TextIOWrapper(z.open(z.namelist()[0]), encoding="utf-8")
    volumes = [int(r["traffic_volume"]) for r in csv.DictReader(rows)]
write("i94.geojson", [feature({"id": "i94", "name": "I-94 Minneapolis-St Paul", "capacity": 100000, "scale": 10,
                               "min_agents": 1, "max_agents": 10, "default_density": 5000,
                               "road_capacity": max(volumes) // 100 * 100 * 8 // 10})])

# Milan
with open(os.path.join(data, "milan_telecom_4squares_hourly_2013-11-03_week.csv")) as f:
    squares = sorted({r["square_id"] for r in csv.DictReader(f)}, key=int)
write("milan.geojson", [feature({
    "id": sq, "name": "Milan grid square %s" % sq, "capacity": 5000, "scale": 10, "min_agents": 1,
    "max_agents": 4, "default_density": 500}) for sq in squares])
