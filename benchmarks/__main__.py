"""python -m benchmarks [--only B1,B2] [--json]"""

from __future__ import annotations

import argparse
import json
import sys

from benchmarks import (
    b1_incremental_sync,
    b2_ingest,
    b3_ics,
    b4_availability,
    b4_expansion,
    b5_freebusy,
    b6_presence_push,
    b7_webhook_ingest,
    b8_quotas,
    b9_propagation,
    b10_contacts,
    p1_vdirsyncer,
    p2_providers,
)
from zoomcal.logging import configure

SUITES = {"B1": [b1_incremental_sync], "B2": [b2_ingest], "B3": [b3_ics], "B4": [b4_availability, b4_expansion],
          "B5": [b5_freebusy], "B6": [b6_presence_push], "B7": [b7_webhook_ingest], "B8": [b8_quotas],
          "B9": [b9_propagation], "B10": [b10_contacts], "P1": [p1_vdirsyncer],
          "P2": [p2_providers]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--only", default="", help="comma-separated names, e.g. B1,B2")
    parser.add_argument("--json", action="store_true", help="print a JSON list of results")
    args = parser.parse_args(argv)
    configure()     # zoomcal's own log lines: warnings and worse, on standard error (stdout carries the results)
    chosen = [n.strip().upper() for n in args.only.split(",") if n.strip()] or list(SUITES)
    unknown = [n for n in chosen if n not in SUITES]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {sorted(SUITES)}")
    results = []
    for name in chosen:
        for suite in SUITES[name]:
            results.extend(suite.run())
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        for r in results:
            mark = "PASS" if r.passed else "FAIL"
            print(f"{mark}  {r.name}: {r.value:.4g} {r.unit} vs baseline {r.baseline:.4g} -> ratio {r.ratio:.3f} "
                  f"(target {r.target}){' — ' + r.note if r.note else ''}")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
