"""`arka-hcm anonymize`: an HCM's history, anonymized into a new repository, out as a bundle.

    analyse   fast-export of the chosen history -> every sensitive value (analysis.py)
    freeze    values -> one matcher and keyed pseudonyms (dictionary.py, pseudonyms.py)
    replay    fast-export again -> rewrite -> one pack of a NEW bare repository (replay.py,
              gitrepo/history_pack.py: the objects `git fast-import` would make)
    bundle    git bundle create (incremental on --since-bundle's tip when asked)
    prove     clone the bundle as support would, read every object, search every value
              (leakscan.py): one hit and the bundle is deleted
    deliver   push the branch and snapshot tags (--push: a custody remote, never forced);
              rename the bundle into place

The anonymized repository is new (never a ref of the raw one: objects are shared between refs,
and a hidden ref is not private) and lives only in a scratch folder inside the raw repository's
``.git/arka-hcm/anonymized/`` (same owner and permissions as the raw data, since until the scan
passes it must be treated as raw), deleted at the end whatever happens.

The raw history is read at one fixed commit (the branch tip when the run starts): the store may
go on writing meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from .. import __version__
from ..clock import parse_iso
from ..config import Settings
from ..custody.remotes import find_remote, push_repository
from ..errors import ConflictingUpdate, InvalidPayload, IoError, NotFound
from ..gitrepo import plumbing_replay as git
from ..gitrepo.history_pack import HistoryWriter, PackWriter
from .analysis import Analyser
from .detectors import PatternDetector
from .dictionary import SensitiveSet
from .key import load_key
from .leakscan import ScanResult, scan_objects, scan_repository
from .pseudonyms import Pseudonyms
from .replay import Replayer
from .report import AnonymizeReport
from .rewriter import PathCollision, Rewriter
from .stream import parse_stream

__all__ = ["AnonymizeOptions", "Progress", "anonymize_hcm", "check_bundle"]

# stage ("analyse", "replay", "scan"), done, total
Progress = Callable[[str, int, int], None]
DEFAULT_SERVICE = ("Arka HCM", "hcm@arka-os.local")


@dataclass
class AnonymizeOptions:
    out: Path | None = None
    history: Literal["full", "squashed"] = "full"
    since: str | None = None
    snapshot: str | None = None
    since_bundle: Path | None = None
    coarsen_timestamps: bool | None = None  # None: the config's anonymize.coarsen_timestamps
    dry_run: bool = False
    force: bool = False
    push_remote: str | None = None  # a remote of `arka-hcm remote add` (its URL and credentials)


@dataclass
class _Range:
    tip: str
    revs: list[str]
    tags: list[str]
    commits: int


def anonymize_hcm(
    settings: Settings, options: AnonymizeOptions, progress: Progress | None = None
) -> AnonymizeReport:
    """Anonymize the HCM of ``settings`` as ``options`` say; returns the report. Raises
    LeakFound (nothing left behind) when the proof fails."""
    hcm = Path(settings.hcm_path)
    _check_options(hcm, options)
    if options.push_remote is not None:
        find_remote(settings, options.push_remote)  # an unknown remote fails before any work
    key = load_key(settings.config_path, create=not options.dry_run)
    config = settings.file.anonymize
    coarsen = config.coarsen_timestamps if options.coarsen_timestamps is None else options.coarsen_timestamps
    branch_ref = f"refs/heads/{settings.file.store.branch}"
    chosen = _choose_range(hcm, branch_ref, options)
    report = AnonymizeReport(
        version=__version__,
        key_fingerprint=None if key.ephemeral else key.fingerprint,
        history=options.history,
        since=options.since,
        snapshot=options.snapshot,
        since_bundle=str(options.since_bundle) if options.since_bundle else None,
        coarsen_timestamps=coarsen,
        dry_run=options.dry_run,
    )
    clock = time.perf_counter
    started = clock()
    sensitive, branch_points = _analyse_history(settings, hcm, chosen, progress)
    sensitive.freeze(Pseudonyms(key.secret))
    report.distinct_values.update(sensitive.distinct())
    report.seconds["analyse"] = clock() - started
    rewriter = Rewriter(sensitive, coarsen=coarsen)
    if options.dry_run:
        started = clock()
        sink = _ScanningSink(sensitive)
        writer = HistoryWriter(PackWriter(None, observe=sink))
        replayer = _replay(hcm, chosen, rewriter, writer, branch_ref, branch_points, progress)
        report.seconds["replay"] = clock() - started
        _fill(report, replayer)
        report.scan = sink.result()
        return report
    work = _scratch(hcm)
    assert options.out is not None
    partial = options.out.with_name(f".{options.out.name}.tmp-{os.getpid()}")
    try:
        _deliver(
            settings, options, chosen, rewriter, sensitive, branch_points, work, partial, report, progress
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return report


def check_bundle(settings: Settings, bundle: Path, *, previous: Path | None = None) -> ScanResult:
    """The proof alone, for any bundle: clone ``bundle`` (fetched on top of ``previous`` for an
    incremental one) as support would and search every object for every sensitive value of this
    HCM's whole history. Raises LeakFound; returns the scan's figures."""
    hcm = Path(settings.hcm_path)
    _check_options(hcm, AnonymizeOptions(dry_run=True))
    chosen = _choose_range(hcm, f"refs/heads/{settings.file.store.branch}", AnonymizeOptions())
    sensitive = _analyse(settings, hcm, chosen, None)
    sensitive.freeze(Pseudonyms(load_key(settings.config_path, create=False).secret))
    work = _scratch(hcm)
    try:
        support = work / "support.git"
        if previous is None:
            git.clone_bundle(bundle.absolute(), support, bare=True)
        else:
            git.init_bare(support, settings.file.store.branch)
            git.fetch_bundle(support, previous.absolute())
            git.fetch_bundle(support, bundle.absolute())
        return scan_repository(support, sensitive)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _scratch(hcm: Path) -> Path:
    """A scratch folder beside the raw data (same owner and permissions): until the scan passes,
    what it holds must be treated as raw."""
    root = hcm / ".git" / "arka-hcm" / "anonymized"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="run-", dir=root))


def _check_options(hcm: Path, options: AnonymizeOptions) -> None:
    if not (hcm / ".git").is_dir():
        raise NotFound(f"no HCM repository at {hcm}", {"path": str(hcm)})
    if options.since and options.snapshot:
        raise InvalidPayload("--since and --snapshot both choose where history starts: give one")
    if options.history == "squashed" and (options.since or options.snapshot):
        raise InvalidPayload("--history squashed is one commit of the tip: --since/--snapshot do not apply")
    if not options.dry_run:
        if options.out is None:
            raise InvalidPayload("--out is required (or --dry-run)")
        if options.out.exists() and not options.force:
            raise ConflictingUpdate(
                f"{options.out} exists; choose another name or pass --force to replace it"
            )
        if not options.out.parent.is_dir():
            raise NotFound(f"the folder of {options.out} does not exist")
    if options.push_remote is not None and options.dry_run:
        raise InvalidPayload("--dry-run writes nothing: drop --push")
    if options.since_bundle is not None and not options.since_bundle.is_file():
        raise NotFound(f"the previous bundle {options.since_bundle} does not exist")


def _choose_range(hcm: Path, branch_ref: str, options: AnonymizeOptions) -> _Range:
    tip = git.rev_parse(hcm, branch_ref)
    if tip is None:
        raise NotFound(f"the HCM has no commit on {branch_ref}")
    base: str | None = None
    if options.history == "squashed":
        base = tip
    elif options.snapshot:
        base = git.rev_parse(hcm, f"refs/tags/snapshot/{options.snapshot}")
        if base is None:
            raise NotFound(f"no snapshot named {options.snapshot!r} (arka-hcm snapshot list)")
    elif options.since:
        try:
            moment = int(parse_iso(options.since).timestamp())
        except ValueError:
            raise InvalidPayload(f"--since {options.since!r} is not an ISO date or date-time") from None
        base = git.last_commit_before(hcm, tip, moment)  # the state at that moment
    revs = [tip] if base is None else [tip, f"^{base}^@"]
    in_range = set(git.rev_list(hcm, revs))
    tags = [name for name, commit in git.list_refs(hcm, "refs/tags/snapshot/") if commit in in_range]
    return _Range(tip, revs, tags, len(in_range))


def _export(hcm: Path, chosen: _Range) -> git.GitStream:
    return git.start_fast_export(hcm, chosen.revs + chosen.tags)


def _analyse(settings: Settings, hcm: Path, chosen: _Range, progress: Progress | None) -> SensitiveSet:
    return _analyse_history(settings, hcm, chosen, progress)[0]


def _analyse_history(
    settings: Settings, hcm: Path, chosen: _Range, progress: Progress | None
) -> tuple[SensitiveSet, set[str]]:
    """Every sensitive value of the chosen history, and the marks of its branch points (the
    commits the rewrite pass must keep the trees of: replay.py)."""
    config = settings.file.anonymize
    sensitive = SensitiveSet()
    if settings.file.tenant_id:
        sensitive.add("tenant", settings.file.tenant_id)
    for term in config.terms:
        sensitive.add("term", term)
    committer = settings.file.store.committer
    analyser = Analyser(
        sensitive,
        PatternDetector(config.terms, config.patterns),
        {DEFAULT_SERVICE, (committer.name, committer.email)},
    )
    with _stream(_export(hcm, chosen)) as out:
        analyser.run(parse_stream(out), _ticker(progress, "analyse", chosen.commits))
    return sensitive, analyser.branch_points


@contextlib.contextmanager
def _stream(child: git.GitStream) -> Iterator[IO[bytes]]:
    try:
        yield child.stdout
    except BaseException:
        child.kill()
        raise
    child.finish()


def _ticker(progress: Progress | None, stage: str, total: int) -> Callable[[int], None] | None:
    if progress is None:
        return None
    step = max(1, total // 500)

    def tick(done: int) -> None:
        if done % step == 0 or done == total:
            progress(stage, done, total)

    return tick


def _replay(
    hcm: Path,
    chosen: _Range,
    rewriter: Rewriter,
    writer: HistoryWriter,
    branch_ref: str,
    branch_points: set[str],
    progress: Progress | None,
) -> Replayer:
    replayer = Replayer(rewriter, writer, branch_ref, branch_points)
    try:
        with _stream(_export(hcm, chosen)) as out:
            replayer.run(parse_stream(out), _ticker(progress, "replay", chosen.commits))
    except PathCollision as exc:
        raise ConflictingUpdate(f"{exc}; nothing was written (run again with another key)") from None
    replayer.finish(chosen.tip)
    return replayer


def _fill(report: AnonymizeReport, replayer: Replayer) -> None:
    report.commits_replayed = replayer.commits
    report.tags_replayed = replayer.tags
    report.file_versions_written = replayer.files_written
    report.replacements.update(replayer.category_counts)
    report.files = replayer.file_counts


def _deliver(
    settings: Settings,
    options: AnonymizeOptions,
    chosen: _Range,
    rewriter: Rewriter,
    sensitive: SensitiveSet,
    branch_points: set[str],
    work: Path,
    partial: Path,
    report: AnonymizeReport,
    progress: Progress | None,
) -> None:
    clock = time.perf_counter
    hcm = Path(settings.hcm_path)
    branch_ref = f"refs/heads/{settings.file.store.branch}"
    history = work / "history.git"
    git.init_bare(history, settings.file.store.branch)
    started = clock()
    pack = PackWriter(history)
    try:
        replayer = _replay(hcm, chosen, rewriter, HistoryWriter(pack), branch_ref, branch_points, progress)
        pack.finish()
        git.update_refs(history, replayer.refs)
    except OSError as exc:
        raise IoError(f"writing the anonymized history failed: {exc}") from None
    finally:
        pack.abort()  # a no-op once finished
    report.seconds["replay"] = clock() - started
    _fill(report, replayer)
    started = clock()
    new_tip = git.rev_parse(history, branch_ref)
    assert new_tip is not None
    refs = [branch_ref, *replayer.tag_refs]
    previous = options.since_bundle
    prerequisites: list[str] = []
    if previous is not None:
        prerequisites, refs = _increment(history, previous, branch_ref, new_tip, refs)
    git.bundle_create(history, partial, ["HEAD", *refs] + [f"^{p}" for p in prerequisites])
    report.seconds["bundle"] = clock() - started
    started = clock()
    support = work / "support.git"
    if previous is None:
        git.clone_bundle(partial, support, bare=True)
    else:
        git.init_bare(support, settings.file.store.branch)
        git.fetch_bundle(support, previous)
        git.fetch_bundle(support, partial)
    git.bundle_verify(support, partial)
    if progress is not None:
        progress("scan", 0, 1)
    scan = scan_repository(support, sensitive)
    if progress is not None:
        progress("scan", 1, 1)
    report.seconds["scan"] = clock() - started
    report.scan = scan.to_json()
    assert options.out is not None
    if options.push_remote:
        # never forced (custody's rule): a remote whose branch is not an ancestor of this
        # history (the raw HCM's own remote, or a history made with another key) is refused
        push_repository(settings, history, options.push_remote, what="this anonymized history")
        report.pushed = _redacted_url(find_remote(settings, options.push_remote).url)
    os.replace(partial, options.out)
    report.bundle = {
        "path": str(options.out),
        "bytes": options.out.stat().st_size,
        "tip": new_tip,
        "refs": refs,
        "prerequisites": prerequisites,
    }


def _increment(
    history: Path, previous: Path, branch_ref: str, new_tip: str, refs: list[str]
) -> tuple[list[str], list[str]]:
    """The previous bundle's tip must be a commit of the new history (same key, same options,
    nothing learned since that rewrites older commits): it becomes the prerequisite."""
    heads = {head.ref: head.oid for head in git.bundle_list_heads(previous)}
    old_tip = heads.get(branch_ref)
    if old_tip is None:
        raise InvalidPayload(f"{previous} carries no {branch_ref}: not an anonymized bundle of this HCM")
    if not git.has_commit(history, old_tip):
        raise ConflictingUpdate(
            f"the history of {previous} does not continue into this one: it was made with another key or "
            "other options (--history, --since, --snapshot, timestamps), or values learned since then "
            "(a new team member named in older entries) rewrite older commits. Send a full bundle "
            "(support clones it afresh)."
        )
    fresh_tags = [ref for ref in refs[1:] if heads.get(ref) is None]
    if old_tip == new_tip and not fresh_tags:
        raise NotFound(f"nothing new since {previous}: no bundle written")
    return [old_tip], [branch_ref, *fresh_tags]


def _redacted_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


class _ScanningSink:
    """Where a dry run's objects go: nothing is written, but every object is searched as the
    bundle's would be, so the dry run tells whether the real run's scan would pass."""

    def __init__(self, sensitive: SensitiveSet) -> None:
        self._sensitive = sensitive
        self._started = time.perf_counter()
        self.chunks = 0
        self.bytes = 0
        self.hit: str | None = None

    def __call__(self, kind: str, oid: bytes, data: bytes) -> None:
        self.chunks += 1
        self.bytes += len(data)
        if self.hit is None:
            _, _, hit = scan_objects([(oid.hex(), kind, data)], self._sensitive)
            if hit is not None:
                self.hit = hit[0]

    def result(self) -> dict[str, object]:
        if self.hit is not None:
            return {
                "status": f"would fail: a {self.hit} value remains",
                "objects": self.chunks,
                "bytes": self.bytes,
                "values_searched": self._sensitive.size,
            }
        result = ScanResult(
            self.chunks, self.bytes, self._sensitive.size, time.perf_counter() - self._started
        )
        return result.to_json() | {"status": "would pass (every object searched; nothing written)"}
