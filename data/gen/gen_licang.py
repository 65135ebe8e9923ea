#!/usr/bin/env python3
"""gen_licang.py: generates the bundled, synthetic Licang dataset in data/licang/.

Everything it writes is made up: the district outline is a coarse polygon drawn
by hand for this project (22 vertices, scaled to 98 km^2), streets and
communities are Voronoi cells inside it, school catchments are Voronoi cells of
each level's schools, doctor-team service areas are unions of the communities a
team serves, and facility names, addresses, phones
and positions are random draws from a fixed seed. Only the counts match the
published figures (39 + 72 elder-care places, 62 meal points, 182 doctor teams,
68 + 20 schools, 15 public and 38 shared parking lots). Nothing here is a real
address.

Python 3 standard library only. Deterministic: the same seed gives byte-identical
files. Run from anywhere:

    python3 data/gen/gen_licang.py            # writes data/licang/
    python3 data/gen/gen_licang.py --out DIR  # writes elsewhere

Geometry is computed in a local plane (km east and north of LON0/LAT0, scaled by
the WGS84 radii of curvature at LAT0; over 15 km the scale error is < 0.1 %),
then converted to degrees, snapped so that neighbours share identical vertices,
rounded to 6 decimals (about 0.1 m), and every vertex lying on another ring's
edge is inserted into that edge. The script then proves the tilings: every
interior edge appears exactly twice in opposite directions, and what is left
over is exactly the parent's ring.
"""

import argparse
import csv
import io
import json
import math
import os
import random
import sys

SEED = 20261129

# ---------------------------------------------------------------------------
# Local plane
# ---------------------------------------------------------------------------

LON0, LAT0 = 120.425, 36.186
_A = 6378137.0
_F = 1 / 298.257223563
_E2 = _F * (2 - _F)
_S = math.sin(math.radians(LAT0))
_N = _A / math.sqrt(1 - _E2 * _S * _S)
_M = _A * (1 - _E2) / (1 - _E2 * _S * _S) ** 1.5
KM_PER_DEG_LON = _N * math.cos(math.radians(LAT0)) * math.pi / 180 / 1000
KM_PER_DEG_LAT = _M * math.pi / 180 / 1000

BOX = (120.34, 36.13, 120.51, 36.24)  # lon_min, lat_min, lon_max, lat_max
DISTRICT_AREA_KM2 = 98.0


def to_deg(p):
    return (LON0 + p[0] / KM_PER_DEG_LON, LAT0 + p[1] / KM_PER_DEG_LAT)


def to_km(q):
    return ((q[0] - LON0) * KM_PER_DEG_LON, (q[1] - LAT0) * KM_PER_DEG_LAT)


# ---------------------------------------------------------------------------
# Planar geometry
# ---------------------------------------------------------------------------

def area(ring):
    """Signed shoelace area; positive for counter-clockwise rings."""
    s = 0.0
    n = len(ring)
    for i in range(n):
        x1, y1 = ring[i]
        x2, y2 = ring[(i + 1) % n]
        s += x1 * y2 - x2 * y1
    return s / 2


def area_deg_km2(ring):
    return area([to_km(q) for q in ring])


def clip_halfplane(ring, a, b, c):
    """Sutherland-Hodgman against one half-plane a*x + b*y <= c."""
    out = []
    n = len(ring)
    for i in range(n):
        p = ring[i]
        q = ring[(i + 1) % n]
        fp = a * p[0] + b * p[1] - c
        fq = a * q[0] + b * q[1] - c
        if fp <= 0:
            out.append(p)
        if (fp < 0 < fq) or (fq < 0 < fp):
            t = fp / (fp - fq)
            out.append((p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])))
    return out


def voronoi_clip(subject, seeds, i):
    """subject ring intersected with the Voronoi cell of seeds[i]."""
    si = seeds[i]
    ring = list(subject)
    for j, sj in enumerate(seeds):
        if j == i:
            continue
        a = sj[0] - si[0]
        b = sj[1] - si[1]
        c = (sj[0] ** 2 + sj[1] ** 2 - si[0] ** 2 - si[1] ** 2) / 2
        ring = clip_halfplane(ring, a, b, c)
        if not ring:
            break
    return ring


def point_in_ring(p, ring):
    x, y = p
    inside = False
    n = len(ring)
    for i in range(n):
        x1, y1 = ring[i]
        x2, y2 = ring[(i + 1) % n]
        if (y1 > y) != (y2 > y):
            xc = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            if xc > x:
                inside = not inside
    return inside


def dist_to_segment(p, a, b):
    dx, dy = b[0] - a[0], b[1] - a[1]
    l2 = dx * dx + dy * dy
    t = 0.0 if l2 == 0 else max(0.0, min(1.0, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / l2))
    ex, ey = a[0] + t * dx - p[0], a[1] + t * dy - p[1]
    return math.hypot(ex, ey)


def dist_to_ring(p, ring):
    return min(dist_to_segment(p, ring[i], ring[(i + 1) % len(ring)]) for i in range(len(ring)))


def _orient(a, b, c):
    v = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    return (v > 0) - (v < 0)


def _on_seg(a, b, c):
    return (min(a[0], b[0]) <= c[0] <= max(a[0], b[0])
            and min(a[1], b[1]) <= c[1] <= max(a[1], b[1]))


def segments_touch(a, b, c, d):
    o1, o2, o3, o4 = _orient(a, b, c), _orient(a, b, d), _orient(c, d, a), _orient(c, d, b)
    if o1 != o2 and o3 != o4:
        return True
    return ((o1 == 0 and _on_seg(a, b, c)) or (o2 == 0 and _on_seg(a, b, d))
            or (o3 == 0 and _on_seg(c, d, a)) or (o4 == 0 and _on_seg(c, d, b)))


def ring_is_simple(ring):
    """No repeated vertex, no two non-adjacent edges touching."""
    n = len(ring)
    if n < 3 or len(set(ring)) != n:
        return False
    for i in range(n):
        a, b = ring[i], ring[(i + 1) % n]
        for j in range(i + 1, n):
            if j == i or (j + 1) % n == i or j == (i + 1) % n:
                continue
            if segments_touch(a, b, ring[j], ring[(j + 1) % n]):
                return False
    return True


# ---------------------------------------------------------------------------
# The district outline (drawn for this project, km from LON0/LAT0)
# ---------------------------------------------------------------------------

# A free-hand blob: the bay shore on the west, hills to the east, a notch in
# the north-east. Counter-clockwise, starting in the south-west.
OUTLINE_SKETCH = [
    (-6.5, -4.0), (-4.0, -5.2), (-1.5, -4.6), (0.5, -5.5), (2.8, -4.8), (4.6, -5.3),
    (6.3, -3.9), (6.9, -1.6), (6.2, 0.3), (7.0, 2.1), (5.6, 3.6), (3.9, 3.3),
    (2.6, 4.9), (0.6, 5.3), (-1.2, 4.4), (-3.0, 5.0), (-4.6, 3.6), (-5.4, 1.8),
    (-6.9, 0.9), (-6.3, -0.8), (-7.2, -2.2), (-7.0, -3.3),
]


def district_outline():
    scale = math.sqrt(DISTRICT_AREA_KM2 / area(OUTLINE_SKETCH))
    ring_deg = [to_deg((x * scale, y * scale)) for x, y in OUTLINE_SKETCH]
    ring_deg = [(round(lon, 6), round(lat, 6)) for lon, lat in ring_deg]
    return [to_km(q) for q in ring_deg]


# ---------------------------------------------------------------------------
# Streets and communities
# ---------------------------------------------------------------------------

# id, Chinese name, English name, seed (km), relative population density,
# aliases. The seeds are placed by eye: old industrial streets along the bay in
# the west, Licun in the centre-south, the hills of Shiyuan and Jiushui east.
STREETS = [
    ("st-zhenhua", "振华路街道", "Zhenhua Road", (-4.9, -3.4), 1.3, ["振华路", "振华路街道办事处"]),
    ("st-cangkou", "沧口街道", "Cangkou", (-4.6, 0.2), 1.2, ["沧口", "沧口街道办事处"]),
    ("st-xinghua", "兴华路街道", "Xinghua Road", (-2.6, -0.6), 1.4, ["兴华路", "兴华路街道办事处"]),
    ("st-xingcheng", "兴城路街道", "Xingcheng Road", (-3.4, -2.4), 1.4, ["兴城路", "兴城路街道办事处"]),
    ("st-licun", "李村街道", "Licun", (0.0, -2.9), 1.6, ["李村", "李村街道办事处"]),
    ("st-hushan", "虎山路街道", "Hushan Road", (-1.7, -4.0), 1.3, ["虎山路", "虎山路街道办事处"]),
    ("st-fushan", "浮山路街道", "Fushan Road", (2.0, -4.2), 1.0, ["浮山路", "浮山路街道办事处"]),
    ("st-xiangtan", "湘潭路街道", "Xiangtan Road", (0.0, 1.6), 1.2, ["湘潭路", "湘潭路街道办事处"]),
    ("st-loushan", "楼山街道", "Loushan", (-2.6, 3.6), 0.9, ["楼山", "楼山街道办事处"]),
    ("st-shiyuan", "世园街道", "Shiyuan", (4.0, 1.6), 0.5, ["世园", "世园街道办事处"]),
    ("st-jiushui", "九水街道", "Jiushui", (3.8, -1.9), 0.7, ["九水", "九水街道办事处"]),
]

# Older lists name two more streets that have since been merged. Which current
# street absorbed which is recorded here as this synthetic dataset models it;
# the mapping exists so that importers accept the old names, and should be
# checked against the official gazette before it is relied on.
FORMER_STREETS = {
    "永清路街道": "st-zhenhua",
    "永清路": "st-zhenhua",
    "永安路街道": "st-cangkou",
    "永安路": "st-cangkou",
}

N_COMMUNITIES = 150
TOTAL_POPULATION = 560000

# Syllables for synthetic place names (two characters each).
NAME_FIRST = list("东西南北上下前后新金银华兴安宁福康和平永泰盛丰源清明光景翠青碧春秋嘉鸿瑞祥长乐")
NAME_SECOND = list("山河园苑庄湾岭坊屯川林泉峰岗台桥埠溪苑居府城坡洼塘岛亭")


def make_names(rng, n, taken):
    names = []
    while len(names) < n:
        nm = rng.choice(NAME_FIRST) + rng.choice(NAME_SECOND)
        if nm in taken or nm[0] == nm[1]:
            continue
        taken.add(nm)
        names.append(nm)
    return names


def sample_seeds(rng, ring, n):
    """n points inside ring, at least a shrinking minimum spacing apart."""
    xs = [p[0] for p in ring]
    ys = [p[1] for p in ring]
    spacing = 0.8 * math.sqrt(abs(area(ring)) / n)
    pts = []
    tries = 0
    while len(pts) < n:
        p = (rng.uniform(min(xs), max(xs)), rng.uniform(min(ys), max(ys)))
        tries += 1
        if tries % 3000 == 0:
            spacing *= 0.9
        if not point_in_ring(p, ring) or dist_to_ring(p, ring) < 0.15:
            continue
        if all(math.hypot(p[0] - q[0], p[1] - q[1]) >= spacing for q in pts):
            pts.append(p)
    return pts


def build_cells(rng, parent, seeds_fn, attempts=50):
    """Voronoi cells of seeds_fn() clipped to parent; retries until every
    cell is a single simple ring containing its seed."""
    for _ in range(attempts):
        seeds = seeds_fn()
        cells = [voronoi_clip(parent, seeds, i) for i in range(len(seeds))]
        if all(len(c) >= 3 and ring_is_simple(c) and point_in_ring(seeds[i], c)
               for i, c in enumerate(cells)):
            return seeds, cells
    raise SystemExit("could not build simple cells; change the seed")


# ---------------------------------------------------------------------------
# Snapping, rounding and T-junctions (in degrees)
# ---------------------------------------------------------------------------

class Snapper:
    """Maps nearly equal points (< 1e-9 deg, 0.1 mm) to one canonical point."""

    CELL = 1e-8

    def __init__(self):
        self.grid = {}

    def snap(self, q):
        kx, ky = int(math.floor(q[0] / self.CELL)), int(math.floor(q[1] / self.CELL))
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for c in self.grid.get((kx + dx, ky + dy), ()):
                    if abs(c[0] - q[0]) < 1e-9 and abs(c[1] - q[1]) < 1e-9:
                        return c
        self.grid.setdefault((kx, ky), []).append(q)
        return q


def dedupe(ring):
    out = []
    for q in ring:
        if not out or out[-1] != q:
            out.append(q)
    while len(out) > 1 and out[0] == out[-1]:
        out.pop()
    return out


def insert_t_junctions(rings, extra_vertices=(), tol=1.5e-6):
    """Returns rings with every vertex of the family that lies on an edge
    (closer than tol degrees, strictly between its ends) inserted into it."""
    verts = set(extra_vertices)
    for r in rings:
        verts.update(r)
    cell = 0.002
    grid = {}
    for v in verts:
        grid.setdefault((int(v[0] // cell), int(v[1] // cell)), []).append(v)
    out = []
    for r in rings:
        new = []
        n = len(r)
        for i in range(n):
            a, b = r[i], r[(i + 1) % n]
            new.append(a)
            x0, x1 = sorted((a[0], b[0]))
            y0, y1 = sorted((a[1], b[1]))
            dx, dy = b[0] - a[0], b[1] - a[1]
            l2 = dx * dx + dy * dy
            found = []
            for gx in range(int((x0 - tol) // cell), int((x1 + tol) // cell) + 1):
                for gy in range(int((y0 - tol) // cell), int((y1 + tol) // cell) + 1):
                    for v in grid.get((gx, gy), ()):
                        if v == a or v == b:
                            continue
                        t = ((v[0] - a[0]) * dx + (v[1] - a[1]) * dy) / l2
                        if t <= 0 or t >= 1:
                            continue
                        if dist_to_segment(v, a, b) < tol:
                            found.append((t, v))
            for _, v in sorted(found):
                new.append(v)
        out.append(dedupe(new))
    return out


def directed_edges(ring):
    return [(ring[i], ring[(i + 1) % len(ring)]) for i in range(len(ring))]


def dissolve(rings):
    """Union of rings that share edges exactly (as the communities do): drops
    every edge whose reverse is present and chains the rest. Returns a list of
    polygons, each [outer, hole, ...], outers counter-clockwise."""
    edges = set()
    for r in rings:
        edges.update(directed_edges(r))
    boundary = {}
    for a, b in sorted(edges):
        if (b, a) not in edges:
            if a in boundary:
                raise SystemExit("dissolve: rings touch at a single vertex")
            boundary[a] = b
    loops = []
    while boundary:
        start = min(boundary)
        loop = [start]
        nxt = boundary.pop(start)
        while nxt != start:
            loop.append(nxt)
            nxt = boundary.pop(nxt)
        loops.append(loop)
    outers = [[r] for r in loops if area(r) > 0]
    for h in (r for r in loops if area(r) < 0):
        owner = [o for o in outers if point_in_ring(h[0], o[0]) or
                 point_in_ring(((h[0][0] + h[1][0]) / 2, (h[0][1] + h[1][1]) / 2), o[0])]
        if len(owner) != 1:
            raise SystemExit("dissolve: cannot place a hole")
        owner[0].append(h)
    return outers


def check_tiling(parent, children, label):
    """Exact check: interior edges pair up in opposite directions and the
    unpaired edges are exactly the parent's edges."""
    count = {}
    for r in children:
        for e in directed_edges(r):
            count[e] = count.get(e, 0) + 1
    left = []
    for e, k in count.items():
        if k != 1:
            raise SystemExit(f"{label}: edge {e} used {k} times")
        if (e[1], e[0]) not in count:
            left.append(e)
    if sorted(left) != sorted(directed_edges(parent)):
        raise SystemExit(f"{label}: children do not tile the parent exactly")
    a_parent = area_deg_km2(parent)
    a_children = sum(area_deg_km2(r) for r in children)
    if abs(a_parent - a_children) > 1e-6 * a_parent:
        raise SystemExit(f"{label}: areas differ {a_parent} vs {a_children}")


# ---------------------------------------------------------------------------
# Facilities
# ---------------------------------------------------------------------------

def fake_phone(rng):
    # Local numbers in China never start with 0, so 0532-0xxx-xxxx cannot ring
    # anyone: obviously synthetic.
    return "0532-0%03d-%04d" % (rng.randrange(1000), rng.randrange(10000))


class Placer:
    """Places points near community centres, weighted by population."""

    def __init__(self, rng, communities):
        self.rng = rng
        self.communities = communities
        self.weights = [c["population"] for c in communities]

    def pick(self, weights=None, distinct=None):
        """A community drawn by population (or `weights`). With a set in
        `distinct`, never the same one twice for that set, so that names such as
        "XX社区长者食堂" stay unique."""
        while True:
            cm = self.rng.choices(self.communities, weights=weights or self.weights)[0]
            if distinct is None or cm["id"] not in distinct:
                break
        if distinct is not None:
            distinct.add(cm["id"])
        return cm

    def near(self, cm, sigma_km=0.25):
        for _ in range(200):
            p = (cm["seed"][0] + self.rng.gauss(0, sigma_km),
                 cm["seed"][1] + self.rng.gauss(0, sigma_km))
            if point_in_ring(p, cm["ring_km"]) and dist_to_ring(p, cm["ring_km"]) > 0.02:
                return p
        return cm["seed"]


def address(rng, cm):
    return "青岛市李沧区%s%d号" % (rng.choice(cm["roads"]), rng.randint(1, 399))


def gen_elder_care(rng, placer, streets):
    out = []
    stars = [5] * 5 + [4] * 9 + [3] * 12 + [2] * 8 + [1] * 5
    rng.shuffle(stars)
    kinds = ["颐养院", "养老院", "护理院", "康养中心", "老年公寓"]
    used = set()
    for s in stars:
        cm = placer.pick(distinct=used)
        beds = {5: (300, 600), 4: (150, 400), 3: (80, 250), 2: (50, 150), 1: (30, 100)}[s]
        out.append({
            "subtype": "institution",
            "name": "青岛市李沧区%s%s" % (cm["name"], rng.choice(kinds)),
            "cm": cm, "where": placer.near(cm),
            "opening_hours": "24/7",
            "attrs": {"stars": s, "beds": rng.randint(*beds),
                      "dementia": rng.random() < (0.8 if s >= 4 else 0.3)},
        })
    subtypes = ["home_care_centre"] * 16 + ["home_care_station"] * 44 + ["day_care"] * 12
    centre_streets = [st for st in streets] + rng.sample(streets, 5)
    station_used, day_used = set(), set()
    for i, sub in enumerate(subtypes):
        if sub == "home_care_centre":
            st = centre_streets[i]
            cm = placer.pick([c["population"] if c["parent"] == st["id"] else 0
                              for c in placer.communities])
            name = "%s居家社区养老服务中心" % st["name"]
            if i >= len(streets):
                name = "%s%s居家社区养老服务中心" % (st["name"], cm["name"])
            hours = "Mo-Fr 08:30-17:30; Sa 09:00-12:00"
        elif sub == "home_care_station":
            cm = placer.pick(distinct=station_used)
            name = "%s%s社区居家养老服务站" % (cm["street_name"], cm["name"])
            hours = "Mo-Fr 08:30-11:30,13:30-17:00"
        else:
            cm = placer.pick(distinct=day_used)
            name = "%s%s社区日间照料中心" % (cm["street_name"], cm["name"])
            hours = rng.choice(["Mo-Sa 08:00-17:00", "Mo-Fr 07:30-17:30"])
        out.append({"subtype": sub, "name": name, "cm": cm, "where": placer.near(cm),
                    "opening_hours": hours, "attrs": {}})
    return out


def gen_meal_points(rng, placer):
    out = []
    meal_hours = ["Mo-Fr 11:00-13:00", "Mo-Su 10:30-13:00", "Mo-Fr 11:00-13:00,17:00-18:30",
                  "Mo-Sa 11:00-12:30,17:00-18:00", "Mo-Su 11:00-13:00; Su off"]
    venue_hours = ["Mo-Su 06:30-19:00", "Mo-Sa 09:00-19:00", "Mo-Fr 08:00-18:00; Sa 09:00-14:00",
                   "Mo-Su 10:00-14:00,16:00-19:00"]
    used = set()
    for _ in range(62):
        cm = placer.pick(distinct=used)
        price_60 = rng.choice([10, 12, 12, 13, 15, 15, 16, 18])
        out.append({
            "subtype": rng.choice(["canteen", "canteen", "canteen", "meal_station"]),
            "name": "%s%s社区长者食堂" % (cm["street_name"], cm["name"]),
            "cm": cm, "where": placer.near(cm),
            "opening_hours": rng.choice(venue_hours),
            "attrs": {"meal_hours": rng.choice(meal_hours), "price_60": price_60,
                      "price_80": price_60 - rng.choice([2, 3, 4, 5]),
                      "delivery": rng.random() < 0.5},
        })
    return out


def gen_doctor_teams(rng, placer, communities, n_teams=182, n_stations=100):
    by_pop = sorted(communities, key=lambda c: (-c["population"], c["id"]))
    stations = by_pop[:n_stations]
    # Every street has at least one station.
    for st_id in sorted({c["parent"] for c in communities}):
        if not any(s["parent"] == st_id for s in stations):
            stations.append(max((c for c in communities if c["parent"] == st_id),
                                key=lambda c: c["population"]))
    served = {s["id"]: [] for s in stations}
    for c in communities:
        same = [s for s in stations if s["parent"] == c["parent"]]
        best = min(same, key=lambda s: (math.hypot(s["seed"][0] - c["seed"][0],
                                                   s["seed"][1] - c["seed"][1]), s["id"]))
        served[best["id"]].append(c)
    pops = {s["id"]: sum(c["population"] for c in served[s["id"]]) for s in stations}
    teams_at = {s["id"]: 1 for s in stations}
    total_pop = sum(pops.values())
    while sum(teams_at.values()) < n_teams:
        sid = max(stations, key=lambda s: (pops[s["id"]] / teams_at[s["id"]], s["id"]))["id"]
        teams_at[sid] += 1
    assert sum(teams_at.values()) == n_teams and total_pop > 0
    out = []
    hours = "Mo-Fr 08:00-12:00,13:30-17:30; Sa 08:00-12:00"
    for s in sorted(stations, key=lambda s: s["id"]):
        comms = sorted(served[s["id"]], key=lambda c: -c["population"])
        k = teams_at[s["id"]]
        lists = [[] for _ in range(k)]
        for i, c in enumerate(comms):
            lists[i % k].append(c["id"])
        for t in range(len(comms), k):
            lists[t].append(comms[t % len(comms)]["id"])
        station_name = "%s社区卫生服务站" % s["name"]
        where = placer.near(s, 0.1)
        for t in range(k):
            out.append({
                "subtype": "family_doctor",
                "name": "%s家庭医生团队%d" % (station_name, t + 1),
                "cm": s, "where": where, "opening_hours": hours,
                "attrs": {"station": station_name, "team_size": rng.randint(3, 7),
                          "serves": sorted(lists[t])},
            })
    return out


GROUPS = ["李沧区实验教育集团", "李沧区东兴教育集团", "李沧区青峰教育集团", "李沧区金泉教育集团",
          "李沧区翠湖教育集团", "李沧区嘉禾教育集团"]


def gen_schools(rng, placer):
    plan = ([("open", "kindergarten")] * 24 + [("open", "primary")] * 22
            + [("open", "middle")] * 12 + [("open", "nine_year")] * 10
            + [("under_construction", "kindergarten")] * 8
            + [("under_construction", "primary")] * 6
            + [("under_construction", "middle")] * 4
            + [("under_construction", "nine_year")] * 2)
    suffix = {"kindergarten": "幼儿园", "primary": "小学", "middle": "中学", "nine_year": "学校"}
    out = []
    taken = set()
    for status, level in plan:
        cm = placer.pick()
        private = level == "kindergarten" and rng.random() < 0.3 or rng.random() < 0.05
        base = "青岛市李沧区%s%s" % (cm["name"], suffix[level])
        name = base
        k = 2
        while name in taken:
            name = "%s第%s%s" % (base[:-len(suffix[level])], "二三四五六"[k - 2], suffix[level])
            k += 1
        taken.add(name)
        attrs = {"status": status, "level": level,
                 "ownership": "private" if private else "public",
                 "group": "" if private or rng.random() < 0.4 else rng.choice(GROUPS),
                 "year": rng.randint(2021, 2025) if status == "open" else rng.randint(2026, 2027)}
        out.append({
            "subtype": level, "name": name, "cm": cm, "where": placer.near(cm),
            "opening_hours": "Mo-Fr 07:30-17:30" if status == "open" else "",
            "attrs": attrs,
        })
    return out


def split_total(rng, n, total, lo, hi):
    raw = [rng.uniform(lo, hi) for _ in range(n)]
    k = total / sum(raw)
    vals = [max(1, int(round(v * k))) for v in raw]
    vals[-1] += total - sum(vals)
    return vals


def gen_parking(rng, placer):
    out = []
    used = set()
    for cap in split_total(rng, 15, 9200, 300, 1000):
        cm = placer.pick(distinct=used)
        out.append({
            "subtype": "public",
            "name": "%s%s公共停车场" % (cm["street_name"], cm["name"]),
            "cm": cm, "where": placer.near(cm), "opening_hours": "24/7",
            "attrs": {"capacity": cap, "free": rng.randint(0, cap),
                      "price": rng.choice([2, 3, 3, 4, 5])},
        })
    shared = ["Mo-Fr 18:00-08:00; Sa,Su 00:00-24:00", "Mo-Fr 08:00-18:00",
              "Mo-Su 19:00-07:30", "Mo-Fr 09:00-17:00; Sa 09:00-12:00"]
    places = ["社区", "大厦", "小学", "医院", "商场"]
    for cap in split_total(rng, 38, 6400, 60, 280):
        cm = placer.pick()
        out.append({
            "subtype": "shared",
            "name": "%s%s共享停车位" % (cm["name"], rng.choice(places)),
            "cm": cm, "where": placer.near(cm), "opening_hours": "24/7",
            "attrs": {"capacity": cap, "free": rng.randint(0, cap),
                      "price": rng.choice([1, 1.5, 2, 2.5, 3]),
                      "shared_hours": rng.choice(shared)},
        })
    return out


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------

NOTICE = ("Synthetic data. Names, addresses, phone numbers and positions are made up "
          "and placed plausibly so that the counts match published figures for Licang "
          "district, Qingdao; none of them is a real address or a real facility.")

ATTR_COLUMNS = ["stars", "beds", "dementia", "meal_hours", "price_60", "price_80", "delivery",
                "station", "team_size", "serves", "service_area", "status", "level",
                "ownership", "group", "catchment", "year", "capacity", "free", "price",
                "shared_hours", "street", "community"]


def ring_coords(ring):
    r = [[q[0], q[1]] for q in ring]
    return r + [r[0]]


def dump_collection(path, header, features):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("{\n\"type\": \"FeatureCollection\",\n")
        for k, v in header.items():
            f.write("%s: %s,\n" % (json.dumps(k), json.dumps(v, ensure_ascii=False)))
        f.write("\"features\": [\n")
        for i, feat in enumerate(features):
            f.write(json.dumps(feat, ensure_ascii=False, separators=(",", ":")))
            f.write(",\n" if i + 1 < len(features) else "\n")
        f.write("]\n}\n")


def csv_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return ";".join(v)
    if v is None:
        return ""
    return str(v)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "..", "licang"))
    args = ap.parse_args()
    rng = random.Random(SEED)

    # District and streets (km).
    district_km = district_outline()
    street_seeds = [s[3] for s in STREETS]
    _, street_cells = build_cells(rng, district_km, lambda: street_seeds, attempts=1)

    # Communities: counts per street by area x density.
    weights = [abs(area(c)) * s[4] for c, s in zip(street_cells, STREETS)]
    counts = [max(5, int(round(N_COMMUNITIES * w / sum(weights)))) for w in weights]
    while sum(counts) > N_COMMUNITIES:
        counts[counts.index(max(counts))] -= 1
    while sum(counts) < N_COMMUNITIES:
        counts[counts.index(min(counts))] += 1

    taken_names = set()
    communities = []
    for (sid, sname, _, _, density, _), cell, n in zip(STREETS, street_cells, counts):
        seeds, cells = build_cells(rng, cell, lambda: sample_seeds(rng, cell, n))
        names = make_names(rng, n, taken_names)
        for seed, ring, name in zip(seeds, cells, names):
            communities.append({"parent": sid, "street_name": sname, "name": name,
                                "seed": seed, "ring_km": ring, "density": density})
    # Number communities west to east within streets in STREETS order.
    for i, c in enumerate(communities):
        c["id"] = "cm-%03d" % (i + 1)
    raw = [abs(area(c["ring_km"])) ** 0.5 * c["density"] * rng.uniform(0.7, 1.3)
           for c in communities]
    k = TOTAL_POPULATION / sum(raw)
    for c, r in zip(communities, raw):
        c["population"] = int(round(max(1500, min(12000, r * k)) / 10) * 10)

    # Roads for addresses: the streets named after roads keep their road.
    road_pool = make_names(rng, 60, set())
    for c in communities:
        st_name = c["street_name"]
        own = [st_name[:-2]] if st_name.endswith("路街道") else []
        c["roads"] = own + [road_pool[(int(c["id"][3:]) * 7 + j) % 60] + "路" for j in range(3)]

    # Facilities.
    placer = Placer(rng, communities)
    streets_meta = [{"id": s[0], "name": s[1]} for s in STREETS]
    cats = [("elder_care", "ec", gen_elder_care(rng, placer, streets_meta)),
            ("meal_point", "mp", gen_meal_points(rng, placer)),
            ("doctor_team", "dt", gen_doctor_teams(rng, placer, communities)),
            ("school", "sc", gen_schools(rng, placer)),
            ("parking", "pk", gen_parking(rng, placer))]

    # Catchments: per level, Voronoi of that level's schools within the district.
    schools = cats[3][2]
    catchments = []
    for level in ("primary", "middle", "nine_year"):
        group = [s for s in schools if s["attrs"]["level"] == level]
        seeds = [s["where"] for s in group]
        _, cells = build_cells(rng, district_km, lambda: seeds, attempts=1)
        for s, ring in zip(group, cells):
            catchments.append({"school": s, "level": level, "ring_km": ring})

    # Degrees: snap, round, insert T-junctions, verify the tilings.
    snapper = Snapper()

    def finish(ring_km):
        ring = [snapper.snap(to_deg(p)) for p in ring_km]
        return dedupe([(round(q[0], 6), round(q[1], 6)) for q in ring])

    district = finish(district_km)
    streets = [finish(r) for r in street_cells]
    comm_rings = [finish(c["ring_km"]) for c in communities]
    fam = insert_t_junctions([district] + streets + comm_rings)
    district, streets, comm_rings = fam[0], fam[1:12], fam[12:]
    check_tiling(district, streets, "streets")
    for (sid, *_), st_ring in zip(STREETS, streets):
        check_tiling(st_ring, [r for r, c in zip(comm_rings, communities)
                               if c["parent"] == sid], sid)
    catch_rings = []
    for level in ("primary", "middle", "nine_year"):
        rings = [finish(c["ring_km"]) for c in catchments if c["level"] == level]
        fam = insert_t_junctions(rings + [district])
        # The district ring gains the catchment junctions only for this check.
        check_tiling(fam[-1], fam[:-1], "catchments " + level)
        catch_rings += fam[:-1]
    for r in [district] + streets + comm_rings + catch_rings:
        if not ring_is_simple(r) or area(r) <= 0:
            raise SystemExit("ring not simple or not counter-clockwise")

    # Ids for facilities and catchments.
    for i, c in enumerate(catchments):
        c["id"] = "ca-%03d" % (i + 1)
        c["school"]["attrs"]["catchment"] = c["id"]
    facilities = []
    seen_names = set()
    for cat, prefix, items in cats:
        for i, it in enumerate(items):
            it["address"] = address(rng, it["cm"])
            if it["name"] in seen_names:
                # Two of a kind in one community: tell them apart by their road.
                it["name"] += "（%s路）" % it["address"][len("青岛市李沧区"):].split("路")[0]
            seen_names.add(it["name"])
            lon, lat = to_deg(it["where"])
            it.update({"id": "%s-%03d" % (prefix, i + 1), "category": cat,
                       "lon": round(lon, 6), "lat": round(lat, 6)})
            if not point_in_ring((it["lon"], it["lat"]), district):
                raise SystemExit("facility outside the district: " + it["id"])
            facilities.append(it)

    # areas.geojson
    area_feats = []

    def area_feature(ring, props):
        return {"type": "Feature", "properties": props,
                "geometry": {"type": "Polygon", "coordinates": [ring_coords(ring)]}}

    area_feats.append(area_feature(district, {
        "id": "district", "kind": "district", "name": "李沧区", "name_en": "Licang District",
        "parent": None, "area_km2": round(area_deg_km2(district), 2),
        "population": sum(c["population"] for c in communities)}))
    for s, ring in zip(STREETS, streets):
        former = sorted(k for k, v in FORMER_STREETS.items() if v == s[0] and k.endswith("街道"))
        area_feats.append(area_feature(ring, {
            "id": s[0], "kind": "street", "name": s[1], "name_en": s[2], "parent": "district",
            "aliases": s[5] + [s[2]], "former_names": former,
            "area_km2": round(area_deg_km2(ring), 2),
            "population": sum(c["population"] for c in communities if c["parent"] == s[0])}))
    for c, ring in zip(communities, comm_rings):
        area_feats.append(area_feature(ring, {
            "id": c["id"], "kind": "community", "name": "%s社区" % c["name"],
            "parent": c["parent"], "population": c["population"],
            "area_km2": round(area_deg_km2(ring), 3)}))
    level_zh = {"primary": "小学", "middle": "初中", "nine_year": "九年一贯制"}
    for c, ring in zip(catchments, catch_rings):
        area_feats.append(area_feature(ring, {
            "id": c["id"], "kind": "catchment",
            "name": "%s%s学区" % (c["school"]["name"], level_zh[c["level"]]),
            "parent": "district", "school": c["school"]["id"], "level": c["level"],
            "area_km2": round(area_deg_km2(ring), 3)}))

    # Doctor-team service areas: the union of the communities each team serves.
    ring_of = {c["id"]: r for c, r in zip(communities, comm_rings)}
    for i, team in enumerate(cats[2][2]):
        sa_id = "sa-%03d" % (i + 1)
        team["attrs"]["service_area"] = sa_id
        polys = dissolve([ring_of[cid] for cid in team["attrs"]["serves"]])
        want = sum(area_deg_km2(ring_of[cid]) for cid in team["attrs"]["serves"])
        got = sum(area_deg_km2(p[0]) + sum(area_deg_km2(h) for h in p[1:]) for p in polys)
        if abs(want - got) > 1e-6 * want:
            raise SystemExit("service area %s: %f != %f" % (sa_id, got, want))
        coords = [[ring_coords(r) for r in p] for p in polys]
        geom = ({"type": "Polygon", "coordinates": coords[0]} if len(coords) == 1
                else {"type": "MultiPolygon", "coordinates": coords})
        area_feats.append({"type": "Feature", "properties": {
            "id": sa_id, "kind": "service_area", "name": "%s服务区域" % team["name"],
            "parent": team["cm"]["parent"], "team": "dt-%03d" % (i + 1),
            "serves": team["attrs"]["serves"], "area_km2": round(got, 3)},
            "geometry": geom})

    header = {"name": "licang-synthetic", "properties": {
        "synthetic": True, "notice": NOTICE, "generator": "data/gen/gen_licang.py",
        "seed": SEED, "crs": "WGS84 (EPSG:4326), [lon, lat], 6 decimals"}}
    os.makedirs(args.out, exist_ok=True)
    areas_header = json.loads(json.dumps(header))
    areas_header["properties"]["street_aliases"] = FORMER_STREETS
    areas_header["properties"]["street_aliases_note"] = (
        "Older lists name 永清路街道 and 永安路街道, since merged; importers map those "
        "names to the street ids given here.")
    dump_collection(os.path.join(args.out, "areas.geojson"), areas_header, area_feats)

    fac_feats = []
    rows = []
    for it in facilities:
        attrs = dict(it["attrs"])
        attrs["street"] = it["cm"]["parent"]
        attrs["community"] = it["cm"]["id"]
        props = {"id": it["id"], "category": it["category"], "subtype": it["subtype"],
                 "name": it["name"], "address": it["address"],
                 "phone": fake_phone(rng), "opening_hours": it["opening_hours"]}
        props.update(attrs)
        fac_feats.append({"type": "Feature", "properties": props,
                          "geometry": {"type": "Point", "coordinates": [it["lon"], it["lat"]]}})
        row = [props[k] for k in ("id", "category", "subtype", "name", "address", "phone",
                                  "opening_hours")]
        row += ["%.6f" % it["lat"], "%.6f" % it["lon"]]
        row += [csv_value(attrs.get(k)) for k in ATTR_COLUMNS]
        rows.append(row)
    dump_collection(os.path.join(args.out, "facilities.geojson"), header, fac_feats)

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    w.writerow(["id", "category", "subtype", "name", "address", "phone", "opening_hours",
                "lat", "lon"] + ATTR_COLUMNS)
    w.writerows(rows)
    with open(os.path.join(args.out, "facilities.csv"), "w", encoding="utf-8", newline="") as f:
        f.write(buf.getvalue())

    # Report.
    lons = [q[0] for q in district]
    lats = [q[1] for q in district]
    print("district: %d drawn vertices, %d stored (with street/community junctions)"
          % (len(OUTLINE_SKETCH), len(district)))
    print("district area %.2f km^2, bbox lon %.6f-%.6f lat %.6f-%.6f"
          % (area_deg_km2(district), min(lons), max(lons), min(lats), max(lats)))
    if not (BOX[0] <= min(lons) and max(lons) <= BOX[2] and BOX[1] <= min(lats)
            and max(lats) <= BOX[3]):
        raise SystemExit("district outside the box")
    for s, ring, n in zip(STREETS, streets, counts):
        print("  %-14s %6.2f km^2 %3d communities pop %d" % (
            s[0], area_deg_km2(ring), n,
            sum(c["population"] for c in communities if c["parent"] == s[0])))
    print("communities %d, population %d, catchments %d, facilities %d"
          % (len(communities), sum(c["population"] for c in communities), len(catchments),
             len(facilities)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
