"""The report of one anonymization: what was replaced, counted, never shown.

It carries counts per category and per (pseudonymous) file, how many distinct values each
category held, the commits and tags replayed, the scan's figures, the key's fingerprint and the
program's version. It never carries an original value, a pseudonym of one, or the mapping: it is
safe to send with the bundle.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .detectors import CATEGORIES

__all__ = ["AnonymizeReport"]


@dataclass
class AnonymizeReport:
    version: str
    key_fingerprint: str | None
    history: str
    since: str | None = None
    snapshot: str | None = None
    since_bundle: str | None = None
    coarsen_timestamps: bool = False
    dry_run: bool = False
    commits_replayed: int = 0
    tags_replayed: int = 0
    file_versions_written: int = 0
    replacements: Counter[str] = field(default_factory=Counter)
    distinct_values: Counter[str] = field(default_factory=Counter)
    files: dict[str, Counter[str]] = field(default_factory=dict)
    scan: dict[str, Any] | None = None
    bundle: dict[str, Any] | None = None
    pushed: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        order = {name: rank for rank, name in enumerate(CATEGORIES)}
        return {
            "program": "arka-git-hcm",
            "version": self.version,
            "key_fingerprint": self.key_fingerprint,
            "history": self.history,
            "since": self.since,
            "snapshot": self.snapshot,
            "since_bundle": self.since_bundle,
            "coarsen_timestamps": self.coarsen_timestamps,
            "dry_run": self.dry_run,
            "commits_replayed": self.commits_replayed,
            "tags_replayed": self.tags_replayed,
            "file_versions_written": self.file_versions_written,
            "categories": {
                name: {
                    "replacements": self.replacements.get(name, 0),
                    "distinct_values": self.distinct_values.get(name, 0),
                }
                for name in sorted(
                    set(self.replacements) | set(self.distinct_values), key=lambda n: order.get(n, 99)
                )
            },
            "files": {path: dict(sorted(counts.items())) for path, counts in sorted(self.files.items())},
            "scan": self.scan,
            "bundle": self.bundle,
            "pushed": self.pushed,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }

    def table(self, max_files: int = 15) -> str:
        """The human rendering: a summary, categories, then the files with most replacements."""
        data = self.to_json()
        lines = [
            f"{'dry run: nothing written' if self.dry_run else 'anonymized bundle'}"
            f" — {self.commits_replayed} commits, {self.tags_replayed} tags replayed"
            f" ({self.history} history{', since ' + self.since if self.since else ''}"
            f"{', from snapshot ' + self.snapshot if self.snapshot else ''})",
            f"key fingerprint {self.key_fingerprint or 'none (throw-away key of a dry run)'}"
            f" · arka-git-hcm {self.version}",
            "",
            f"{'category':<18}{'replacements':>14}{'distinct values':>17}",
        ]
        for name, row in data["categories"].items():
            lines.append(f"{name:<18}{row['replacements']:>14,}{row['distinct_values']:>17,}")
        if not data["categories"]:
            lines.append("(nothing sensitive found)")
        ranked = sorted(self.files.items(), key=lambda item: -sum(item[1].values()))
        if ranked:
            lines += ["", f"{'file (pseudonymous path)':<60}{'replacements':>14}"]
            for path, counts in ranked[:max_files]:
                shown = path if len(path) <= 58 else "…" + path[-57:]
                lines.append(f"{shown:<60}{sum(counts.values()):>14,}")
            if len(ranked) > max_files:
                lines.append(f"… and {len(ranked) - max_files} more files (see --report or --json)")
        if self.scan is not None:
            lines += [
                "",
                f"leak scan: {self.scan['status']}, {self.scan['objects']:,} objects"
                f" ({self.scan['bytes']:,} bytes) searched for {self.scan['values_searched']:,} values",
            ]
        if self.bundle is not None:
            prereq = self.bundle.get("prerequisites") or []
            lines.append(
                f"bundle: {self.bundle['path']} ({self.bundle['bytes']:,} bytes,"
                f" tip {self.bundle['tip'][:12]}"
                + (f", incremental on {prereq[0][:12]}" if prereq else "")
                + ")"
            )
        if self.pushed:
            lines.append(f"pushed to {self.pushed}")
        return "\n".join(lines)
