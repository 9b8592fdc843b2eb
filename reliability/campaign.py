#!/usr/bin/env python3
"""Fault campaigns against the store and the service (issue 11): does the promise hold?

    .venv/bin/python reliability/campaign.py kill --quick          # bounded (CI), well under a minute
    .venv/bin/python reliability/campaign.py kill                  # long (the default)
    .venv/bin/python reliability/campaign.py all --quick

Campaigns: kill, diskfull, readonly, corrupt, handedits, soak (see RELIABILITY.md). Each prints
its figures as a table and exits 1 when the promise broke: an acknowledged write lost or doubled,
`git fsck --strict` failing, a work tree not equal to HEAD after recovery, a 500 where the
contract says 507 or 503, a hand edit lost, a traceback. diskfull and readonly mount a small
tmpfs (or an ext4 image on a loop device) and need root; they fail (never skip) when they cannot.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corrupt  # noqa: E402
import diskfull  # noqa: E402
import handedits  # noqa: E402
import kill  # noqa: E402
import readonly  # noqa: E402
import soak  # noqa: E402
from harness import Report, say  # noqa: E402

CAMPAIGNS = {
    "kill": kill,
    "diskfull": diskfull,
    "readonly": readonly,
    "corrupt": corrupt,
    "handedits": handedits,
    "soak": soak,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="campaign", required=True)
    for name, module in [*CAMPAIGNS.items(), ("all", None)]:
        doc = (
            (module.__doc__ or "").strip().split("\n\n")[0] if module else "every campaign, one after another"
        )
        p = sub.add_parser(name, help=doc.split(":")[0], description=doc)
        length = p.add_mutually_exclusive_group()
        length.add_argument("--quick", action="store_true", help="the bounded version (CI)")
        length.add_argument("--long", action="store_true", help="the long version (the default)")
        p.add_argument("--seed", type=int, default=20261207, help="random seed [20261207]")
        p.add_argument("--json", dest="json_out", help="write figures and failures to this file")
        p.add_argument("--keep", action="store_true", help="keep the temporary folders")
        p.add_argument("--keep-going", action="store_true", help="go on after a failure")
        p.add_argument("--strict", action="store_true", help="known package defects count as failures")
        p.add_argument("--tmp", help="parent folder of the temporary folders [system temp]")
        if module is not None:
            module.add_arguments(p)  # `all` runs each campaign with its defaults
    args = parser.parse_args(argv)
    names = list(CAMPAIGNS) if args.campaign == "all" else [args.campaign]
    reports = []
    for name in names:
        say(f"== {name} ({'quick' if args.quick else 'long'}), seed {args.seed}")
        report = Report(name)
        report.strict = args.strict
        try:
            CAMPAIGNS[name].run(args, report)
        except Exception as exc:  # the campaign itself broke: that is a failure too, said plainly
            import traceback

            report.fail(f"the campaign stopped: {type(exc).__name__}: {exc}")
            traceback.print_exc()
        report.finish()
        say(report.summary())
        reports.append(report)
    if args.json_out:
        out = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "quick": args.quick, "seed": args.seed}
        out["campaigns"] = [r.to_json() for r in reports]
        Path(args.json_out).write_text(json.dumps(out, indent=2) + "\n")
    failed = [r.name for r in reports if r.failures]
    if failed:
        say(f"\nFAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
