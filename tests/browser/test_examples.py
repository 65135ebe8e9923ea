#!/usr/bin/python3
"""The mobile-backend examples of docs/MAPS.md (examples/mobile_backend.py and .js) run
against a live nearestd, so that they cannot rot: what each prints must be the facilities,
positions and distances that the line protocol answers for the same NEAREST (in WGS84
and in GCJ-02), an error must come out as the daemon's code and message with exit status
1, and docs/MAPS.md must quote each example file as it is.

Usage: test_examples.py --nearestd BIN --dataset DIR --source-dir DIR
Node.js (/usr/bin/node, Debian's nodejs) missing is a failure: scripts/install-deps
installs it. About 2 s.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nearestd_fixture import Daemon, LineClient  # noqa: E402

ARGS = None
NODE = "/usr/bin/node"
# Licang's bounding box, roughly; the points are drawn inside it.
LAT_RANGE = (36.14, 36.22)
LON_RANGE = (120.35, 120.49)


class MobileBackendExampleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon(ARGS.nearestd, ARGS.dataset).start()
        cls.examples = {
            "python": [sys.executable,
                       os.path.join(ARGS.source_dir, "examples", "mobile_backend.py")],
            "node": [NODE, os.path.join(ARGS.source_dir, "examples", "mobile_backend.js")],
        }

    @classmethod
    def tearDownClass(cls):
        log = cls.daemon.log()
        status = cls.daemon.stop()
        if status != 0:
            raise AssertionError("nearestd exited with %r:\n%s" % (status, log))

    def run_example(self, name, args, crs=None):
        env = dict(os.environ, NEAREST_HOST="127.0.0.1",
                   NEAREST_PORT=str(self.daemon.line_port))
        env.pop("NEAREST_CRS", None)
        if crs:
            env["NEAREST_CRS"] = crs
        return subprocess.run(self.examples[name] + list(args), env=env, timeout=30,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True)

    def protocol(self, line, crs="wgs84"):
        client = LineClient(self.daemon.line_port)
        try:
            self.assertTrue(client.ask("CRS " + crs)["ok"])
            return client.ask(line)
        finally:
            client.close()

    def assert_prints_the_protocol_answer(self, name, args, crs=None):
        category, lat, lon, k = (list(args) + ["5"])[:4] if args else \
            ("meal_point", "36.16", "120.41", "5")
        done = self.run_example(name, args, crs)
        self.assertEqual(done.returncode, 0, done.stderr)
        printed = [json.loads(line) for line in done.stdout.splitlines()]
        reply = self.protocol("NEAREST %s %s %s K %s" % (category, lat, lon, k),
                              crs or "wgs84")
        self.assertTrue(reply["ok"], reply)
        self.assertEqual(len(printed), int(k))
        self.assertEqual(printed, [{key: r[key] for key in
                                    ("id", "name", "lat", "lon", "distance_m")}
                                   for r in reply["results"]])

    def test_examples_print_what_the_protocol_answers(self):
        rng = random.Random(20261129)
        cases = [((), None)]
        for category in ("meal_point", "school", "elder_care", "*"):
            lat = "%.6f" % rng.uniform(*LAT_RANGE)
            lon = "%.6f" % rng.uniform(*LON_RANGE)
            cases.append(((category, lat, lon, str(rng.randint(1, 8))), None))
            cases.append(((category, lat, lon), "gcj02"))
        for name in self.examples:
            for args, crs in cases:
                with self.subTest(example=name, args=args, crs=crs):
                    self.assert_prints_the_protocol_answer(name, args, crs)

    def test_gcj02_positions_differ_from_wgs84(self):
        # The CRS line really reaches the daemon: Amap's coordinates of one place are
        # hundreds of metres off WGS84 in Qingdao, so the two answers differ.
        args = ("parking", "36.17", "120.42", "1")
        outs = [self.run_example("python", args, crs) for crs in ("wgs84", "gcj02")]
        for done in outs:
            self.assertEqual(done.returncode, 0, done.stderr)
        wgs, gcj = (json.loads(done.stdout) for done in outs)
        self.assertNotEqual((wgs["lat"], wgs["lon"]), (gcj["lat"], gcj["lon"]))

    def test_an_error_is_the_daemons_code_and_message(self):
        reply = self.protocol("NEAREST school 136.2 120.4 K 2")
        self.assertFalse(reply["ok"])
        expected = "nearestd: %s %s" % (reply["error"]["code"], reply["error"]["message"])
        for name in self.examples:
            with self.subTest(example=name):
                done = self.run_example(name, ("school", "136.2", "120.4", "2"))
                self.assertEqual(done.returncode, 1)
                self.assertEqual(done.stdout, "")
                self.assertEqual(done.stderr.strip(), expected)

    def test_docs_quote_each_example_as_it_is(self):
        with open(os.path.join(ARGS.source_dir, "docs", "MAPS.md"), encoding="utf-8") as f:
            doc = f.read()
        for name in ("mobile_backend.py", "mobile_backend.js"):
            with open(os.path.join(ARGS.source_dir, "examples", name), encoding="utf-8") as f:
                code = f.read()
            self.assertIn(code, doc, "docs/MAPS.md does not quote examples/%s as it is"
                          % name)


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--nearestd", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--source-dir", required=True)
    ARGS, rest = parser.parse_known_args()
    program = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
    result = program.result
    failed = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (max(result.testsRun - failed, 0), failed))
    sys.exit(0 if result.wasSuccessful() and result.testsRun > 0 else 1)


if __name__ == "__main__":
    main()
