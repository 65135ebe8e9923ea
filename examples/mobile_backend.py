#!/usr/bin/env python3
# A mobile backend asking nearestd for the nearest facilities over TCP (docs/MAPS.md):
# FORMAT json once, then one command line per request and one JSON line per reply.
# Usage: mobile_backend.py [category lat lon [k]]; env NEAREST_HOST, NEAREST_PORT, and
# NEAREST_CRS=gcj02 for positions from Amap (or bd09 from Baidu), in and out.
import json, os, socket, sys

conn = socket.create_connection((os.environ.get("NEAREST_HOST", "127.0.0.1"),
                                 int(os.environ.get("NEAREST_PORT", "7878"))), timeout=5)
replies = conn.makefile("r", encoding="utf-8")

def ask(line):
    conn.sendall(line.encode("utf-8") + b"\n")
    return json.loads(replies.readline())

category, lat, lon, k = (sys.argv[1:] + ["5"])[:4] if len(sys.argv) > 3 else \
    ("meal_point", "36.16", "120.41", "5")
ask("FORMAT json")
ask("CRS " + os.environ.get("NEAREST_CRS", "wgs84"))
reply = ask("NEAREST %s %s %s K %s" % (category, lat, lon, k))
if not reply["ok"]:
    sys.exit("nearestd: %(code)s %(message)s" % reply["error"])
for r in reply["results"]:
    print(json.dumps({"id": r["id"], "name": r["name"], "lat": r["lat"], "lon": r["lon"],
                      "distance_m": r["distance_m"]}, ensure_ascii=False))
