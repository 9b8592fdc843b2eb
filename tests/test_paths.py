"""The one path resolver (contract section 6): every unsafe path is refused, never cleaned."""

from __future__ import annotations

import contextlib
import itertools
import os
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arka_git_hcm import paths
from arka_git_hcm.domain.layout import MissionPaths, mission_paths
from arka_git_hcm.errors import InvalidPayload, UnsafePath
from arka_git_hcm.paths import PathResolver, check_relative, find_fold_collision, fold_key, join, split

# --------------------------------------------------------------------------------------------------
# Historic git path attacks: one row each, the comment names the attack.
# --------------------------------------------------------------------------------------------------
GIT_PATH_ATTACKS = [
    # Writing into the repository itself: a hook or core.fsmonitor in .git/config runs code.
    pytest.param(".git/hooks/post-checkout", id="plain .git"),
    # A nested repository inside the HCM (git refuses .git in every component, not just the first).
    pytest.param("state/missions/m1/.git/config", id="nested .git"),
    # CVE-2014-9390: on a case-insensitive filesystem ".GIT" is ".git".
    pytest.param(".GIT/config", id="CVE-2014-9390 upper case"),
    # CVE-2014-9390: mixed case alias.
    pytest.param(".Git/hooks/post-checkout", id="CVE-2014-9390 mixed case"),
    # CVE-2014-9390: HFS+ ignores ZERO WIDTH NON-JOINER, so ".g\u200cit" is ".git" on macOS.
    pytest.param(".g\u200cit/config", id="CVE-2014-9390 HFS+ ZWNJ"),
    # CVE-2014-9390: the other HFS+ ignorables (here BYTE ORDER MARK and INHIBIT SYMMETRIC SWAPPING).
    pytest.param(".git\ufeff/config", id="CVE-2014-9390 HFS+ BOM"),
    pytest.param("\u206a.git/config", id="CVE-2014-9390 HFS+ U+206A"),
    # CVE-2014-9390: NTFS 8.3 short name of ".git".
    pytest.param("git~1/config", id="CVE-2014-9390 NTFS git~1"),
    # CVE-2019-1353: under WSL the NTFS protections were off; "GIT~1" (any case, any number) reaches .git.
    pytest.param("GIT~2/hooks/pre-commit", id="CVE-2019-1353 8.3 GIT~2"),
    # CVE-2014-9390: Windows drops trailing dots and spaces, ".git." and ".git " open ".git".
    pytest.param(".git./config", id="CVE-2014-9390 trailing dot"),
    pytest.param(".git /config", id="CVE-2014-9390 trailing space"),
    pytest.param(".git. . /config", id="CVE-2014-9390 trailing dots and spaces"),
    # CVE-2019-1352: NTFS alternate data stream syntax names the .git directory itself.
    pytest.param(".git::$INDEX_ALLOCATION/config", id="CVE-2019-1352 NTFS ADS"),
    # CVE-2019-1354: backslash is a separator on Windows, "a\..\..\x" climbs out there.
    pytest.param("a\\..\\..\\etc\\passwd", id="CVE-2019-1354 backslash traversal"),
    # CVE-2019-1351: "1:" is a valid (subst) drive letter on Windows: an absolute path in disguise.
    pytest.param("1:/etc/passwd", id="CVE-2019-1351 non-alpha drive letter"),
    # Plain drive-letter absolute path.
    pytest.param("c:/windows/system32/drivers/etc/hosts", id="drive letter"),
    # CVE-2018-11235: .gitmodules is the entry point of the submodule-name traversal to code execution.
    pytest.param(".gitmodules", id="CVE-2018-11235 .gitmodules"),
    # CVE-2018-11235 follow-up (git's is_ntfs_dotgitmodules): NTFS short names of .gitmodules.
    pytest.param("gitmod~1", id="CVE-2018-11235 8.3 gitmod~1"),
    pytest.param("GI7EBA~1", id="CVE-2018-11235 8.3 hashed gi7eba~1"),
    # .gitattributes declares filter/diff drivers that run programs on checkout and diff.
    pytest.param("stable/.gitattributes", id=".gitattributes filters"),
    # NTFS short name of .gitattributes (git's is_ntfs_dotgitattributes).
    pytest.param("gi7d29~1", id="8.3 hashed gi7d29~1"),
    # .gitignore hides files from review and from `git status`.
    pytest.param("domain/.GitIgnore", id=".gitignore any case"),
    # Zip-slip style traversal through a legit-looking prefix.
    pytest.param("a/../../etc/passwd", id="traversal a/../../etc/passwd"),
    pytest.param("state/missions/m1/../../../../etc/shadow", id="deep traversal"),
    pytest.param("../outside.json", id="leading .."),
    pytest.param("..", id="bare .."),
    # Absolute paths (and UNC-like ones) ignore HCM_ROOT entirely.
    pytest.param("/etc/passwd", id="absolute"),
    pytest.param("//server/share/x", id="UNC-like absolute"),
    pytest.param("~/.ssh/authorized_keys", id="home-relative"),
    # "." and empty components: the path is not the one it looks like (and a trailing "/" names a folder).
    pytest.param("./meta.json", id="dot component"),
    pytest.param("a//b", id="empty component"),
    pytest.param("a/", id="trailing slash"),
    # NUL truncates the path in C code (libgit2, os calls): "a.json\0.txt" is "a.json" there.
    pytest.param("a.json\x00.txt", id="NUL truncation"),
    # Newline and escape: log-line forging and terminal-escape injection through file names.
    pytest.param("a\nHcm-Op: forged", id="newline"),
    pytest.param("a\x1b[31m", id="ANSI escape"),
    pytest.param("a\x7f", id="DEL"),
    pytest.param("a\u0085b", id="C1 NEL"),
    pytest.param("a\u2028b", id="line separator"),
    # Windows device names open the device, with or without an extension.
    pytest.param("con", id="device con"),
    pytest.param("stable/nul.json", id="device nul.json"),
    pytest.param("COM1", id="device COM1"),
    pytest.param("lpt9.txt", id="device lpt9.txt"),
    pytest.param("Aux.tar.gz", id="device Aux.tar.gz"),
    pytest.param("prn .json", id="device with space before the extension"),
    pytest.param("COM\u00b9", id="device COM superscript one"),
    pytest.param("conin$", id="device CONIN$"),
    # CVE-2014-9390 (HFS+ side): macOS stores names in NFD, so a decomposed name aliases the composed one.
    pytest.param("caf\u0065\u0301.json", id="not NFC"),
    # Windows "best fit" code-page mapping (WorstFit research): fullwidth dots and slash become real ones.
    pytest.param("\uff0e\uff0e/etc/passwd", id="fullwidth .. best-fit"),
    pytest.param("a\uff0f..\uff0fb", id="fullwidth slash best-fit"),
    # Compatibility disguise of .git.
    pytest.param(".\uff47\uff49\uff54/config", id="fullwidth .git"),
    # Names made only of code points HFS+ ignores: empty or ".." there, and invisible in every review.
    pytest.param("\u200c/x", id="invisible-only name"),
    pytest.param("..\u200d/etc/passwd", id="dot-dot plus ignorable"),
    # Windows silently drops a trailing dot or space: "a." and "a" are one file there.
    pytest.param("notes.", id="trailing dot"),
    pytest.param("notes ", id="trailing space"),
    pytest.param(" notes", id="leading space"),
    # Oversized names: ENAMETOOLONG mid-write leaves half an operation behind.
    pytest.param("x" * 256, id="component over 255 bytes"),
    pytest.param("/".join(["abcdefgh"] * 114), id="path over 1024 bytes"),
]


@pytest.mark.parametrize("path", GIT_PATH_ATTACKS)
def test_historic_attacks_are_refused(path: str, tmp_path: Path) -> None:
    with pytest.raises(UnsafePath) as info:
        check_relative(path)
    error = info.value
    assert isinstance(error, InvalidPayload) and error.code == "INVALID_PAYLOAD" and error.http_status == 400
    assert error.details["reason"] and error.details["path"] == path[:200]
    # The same path is refused by every entry point, never cleaned into something else.
    with pytest.raises(UnsafePath):
        join(path)
    with pytest.raises(UnsafePath):
        split(path)
    with pytest.raises(UnsafePath):
        PathResolver(tmp_path).resolve(path)


ACCEPTED = [
    "meta.json",
    "state/missions/m1/meta.json",
    "state/missions/m1/evidence/ev-3f9a0c12d4e5.json",
    "state/missions/m1/journal/archives/journal.2024-05-01.jsonl",
    "stable/glossary/\u00e9t\u00e9.json",  # NFC is fine
    "domain/org/Org Chart.json",  # inner spaces and capitals are fine
    # "%2e%2e" is a literal name: nothing here URL-decodes, so it is not a traversal.
    "%2e%2e/%2e%2e/etc/passwd",
    "..%2f..%2fetc",
    "...x",
    "a/~b",
    "git",
    "gitx/y",
    "x.git",
    "dotgit",
    "gi~",  # not an 8.3 short-name shape (no digit)
    "console.json",
    "com10",
    "connection.json",
    "x" * 255,
    "/".join(["abcdefg"] * 128),  # 1023 bytes
    "\u0645\u0644\u0641.json",
]


@pytest.mark.parametrize("path", ACCEPTED)
def test_safe_paths_are_returned_unchanged(path: str, tmp_path: Path) -> None:
    assert check_relative(path) is path
    assert join(*path.split("/")) == path
    assert split(path) == path.split("/")
    assert PathResolver(tmp_path).resolve(path) == tmp_path.joinpath(*path.split("/"))


@pytest.mark.parametrize("value", [None, b"meta.json", 1, Path("meta.json"), ""])
def test_non_strings_and_empty_are_refused(value: object) -> None:
    with pytest.raises(UnsafePath):
        check_relative(value)  # type: ignore[arg-type]


def test_lone_surrogate_is_refused() -> None:
    with pytest.raises(UnsafePath):
        check_relative("a\ud800b")


@pytest.mark.parametrize(
    "parts",
    [
        pytest.param(("a", ".."), id="parent part"),
        pytest.param(("a", "/etc"), id="absolute part"),
        pytest.param(("", "a"), id="empty part"),
        pytest.param(("a", ""), id="trailing empty part"),
        pytest.param((), id="no parts"),
        pytest.param(("state", ".git"), id="dot git part"),
        pytest.param(("a/../b",), id="traversal inside a part"),
    ],
)
def test_join_refuses_instead_of_cleaning(parts: tuple[str, ...]) -> None:
    with pytest.raises(UnsafePath):
        join(*parts)


def test_join_builds_slash_paths() -> None:
    assert join("state/missions", "m1", "meta.json") == "state/missions/m1/meta.json"


# --------------------------------------------------------------------------------------------------
# Symlinks and special files on disk
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def hcm(tmp_path: Path) -> Path:
    root = tmp_path / "hcm"
    (root / "state" / "missions" / "m1").mkdir(parents=True)
    (root / "state" / "missions" / "m1" / "meta.json").write_text("{}\n")
    (root / "stable").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.json").write_text("{}\n")
    return root


def test_existing_and_missing_plain_paths_resolve_under_root(hcm: Path) -> None:
    resolver = PathResolver(hcm)
    assert resolver.resolve("state/missions/m1/meta.json") == hcm / "state/missions/m1/meta.json"
    assert resolver.resolve("state/missions/m2/meta.json") == hcm / "state/missions/m2/meta.json"
    assert resolver.resolve("state/missions/m1") == hcm / "state/missions/m1"


def test_symlinked_folder_pointing_outside_is_refused(hcm: Path) -> None:
    (hcm / "state" / "missions" / "evil").symlink_to(hcm.parent / "outside", target_is_directory=True)
    resolver = PathResolver(hcm)
    for path in ("state/missions/evil", "state/missions/evil/secret.json", "state/missions/evil/new.json"):
        with pytest.raises(UnsafePath, match="symlink"):
            resolver.resolve(path)


def test_symlinked_final_file_is_refused(hcm: Path) -> None:
    (hcm / "stable" / "out.json").symlink_to(hcm.parent / "outside" / "secret.json")
    (hcm / "stable" / "in.json").symlink_to(hcm / "state" / "missions" / "m1" / "meta.json")
    (hcm / "stable" / "dangling.json").symlink_to(hcm.parent / "outside" / "nowhere.json")
    resolver = PathResolver(hcm)
    for path in ("stable/out.json", "stable/in.json", "stable/dangling.json"):
        with pytest.raises(UnsafePath, match="symlink"):
            resolver.resolve(path)


def test_symlink_to_a_folder_inside_the_root_is_refused(hcm: Path) -> None:
    # Even a link that stays inside HCM_ROOT is refused: git would store the link, not the files,
    # and it aliases two paths onto one folder.
    (hcm / "alias").symlink_to(hcm / "state", target_is_directory=True)
    with pytest.raises(UnsafePath, match="symlink"):
        PathResolver(hcm).resolve("alias/missions/m1/meta.json")


def test_relative_symlink_at_the_top_is_refused(hcm: Path) -> None:
    (hcm / "domain").symlink_to("../outside", target_is_directory=True)
    with pytest.raises(UnsafePath, match="symlink"):
        PathResolver(hcm).resolve("domain/org/chart.json")


def test_file_on_the_way_is_refused(hcm: Path) -> None:
    with pytest.raises(UnsafePath):
        PathResolver(hcm).resolve("state/missions/m1/meta.json/x.json")


def test_fifo_is_refused(hcm: Path) -> None:
    os.mkfifo(hcm / "stable" / "pipe.json")
    with pytest.raises(UnsafePath, match="regular file"):
        PathResolver(hcm).resolve("stable/pipe.json")


def test_cve_2021_21300_case_collision_with_a_symlink(hcm: Path) -> None:
    # CVE-2021-21300: "a" is a symlink to .git/hooks and "A/post-checkout" a file; a case-insensitive
    # checkout writes the file through the link. Both ways in are refused.
    (hcm / "a").symlink_to(hcm / "stable", target_is_directory=True)
    resolver = PathResolver(hcm)
    with pytest.raises(UnsafePath, match="symlink"):
        resolver.resolve("a/post-checkout")
    with pytest.raises(UnsafePath, match="case or Unicode"):
        resolver.resolve("A/post-checkout")


@pytest.mark.parametrize(
    "existing, asked",
    [
        pytest.param("mission", "Mission", id="case"),
        pytest.param("Stable", "stable/x.json", id="case of a folder on the way"),
        pytest.param("caf\u0065\u0301.json", "caf\u00e9.json", id="NFD on disk vs NFC asked"),
        pytest.param("CAF\u00c9.json", "caf\u00e9.json", id="case of a composed letter"),
        pytest.param("a\u200cb.json", "ab.json", id="HFS+ ignorable"),
    ],
)
def test_a_new_name_that_aliases_an_existing_one_is_refused(
    tmp_path: Path, existing: str, asked: str
) -> None:
    (tmp_path / existing).mkdir()
    with pytest.raises(UnsafePath, match="case or Unicode"):
        PathResolver(tmp_path).resolve(asked)


def test_the_exact_existing_name_is_not_a_collision(hcm: Path) -> None:
    (hcm / "stable" / "Glossary").mkdir()
    resolver = PathResolver(hcm)
    assert resolver.resolve("stable/Glossary") == hcm / "stable" / "Glossary"
    assert resolver.resolve("stable/Glossary/new.json") == hcm / "stable" / "Glossary" / "new.json"
    with pytest.raises(UnsafePath):
        resolver.resolve("stable/glossary/new.json")


def test_relative_refuses_locations_outside_the_root(hcm: Path) -> None:
    resolver = PathResolver(hcm)
    assert resolver.relative(hcm / "state" / "missions" / "m1" / "meta.json") == "state/missions/m1/meta.json"
    with pytest.raises(UnsafePath):
        resolver.relative(hcm.parent / "outside" / "secret.json")
    with pytest.raises(UnsafePath):
        resolver.relative(hcm / ".git" / "config")


# --------------------------------------------------------------------------------------------------
# Fold collisions between sibling names
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, existing, expected",
    [
        pytest.param("Mission", ["other", "mission"], "mission", id="case"),
        pytest.param("mission", ["MISSION"], "MISSION", id="upper"),
        pytest.param("e\u0301", ["\u00e9"], "\u00e9", id="NFD vs NFC"),
        pytest.param("\u00e9", ["e\u0301"], "e\u0301", id="NFC vs NFD"),
        pytest.param("\u00c9", ["e\u0301"], "e\u0301", id="case and NFD"),
        pytest.param("stra\u00dfe", ["STRASSE"], "STRASSE", id="full case folding"),
        pytest.param("\u212aelvin", ["kelvin"], "kelvin", id="Kelvin sign"),
        pytest.param("ab", ["a\u200cb"], "a\u200cb", id="HFS+ ignorable"),
        pytest.param("mission", ["mission"], None, id="same name is not a collision"),
        pytest.param("mission", ["missions", "mision"], None, id="different names"),
        pytest.param("a", [], None, id="no siblings"),
    ],
)
def test_find_fold_collision(name: str, existing: list[str], expected: str | None) -> None:
    assert find_fold_collision(name, existing) == expected


_names = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=6)


@settings(max_examples=300, deadline=None)
@given(_names)
def test_fold_key_ignores_case_and_normal_form(name: str) -> None:
    key = fold_key(name)
    for variant in (unicodedata.normalize("NFD", name), unicodedata.normalize("NFC", name)):
        assert fold_key(variant) == key
    if name.isascii():
        assert fold_key(name.upper()) == fold_key(name.lower()) == key
    assert fold_key(key) == key


# --------------------------------------------------------------------------------------------------
# Properties: check_relative never cleans, and what it accepts stays under the root
# --------------------------------------------------------------------------------------------------
_INTERESTING = [
    "",
    ".",
    "..",
    "...",
    ".git",
    ".GIT",
    ".Git",
    ".git.",
    ".git ",
    "git~1",
    "GIT~1",
    "gitmod~1",
    ".gitmodules",
    "con",
    "nul.json",
    "COM1",
    "lpt9.txt",
    "a",
    "b.json",
    "m1",
    "state",
    "missions",
    "\u00e9",
    "e\u0301",
    "\u200c",
    ".g\u200cit",
    "\\",
    ":",
    "\x00",
    "\n",
    "~",
    "%2e%2e",
    "\uff0e\uff0e",
    "\uff0f",
    " ",
    "a.",
    "A",
    "x" * 255,
    "\ud800",
]
# Hypothesis draws a collection element by element, so paths are drawn as flat text over alphabets
# rich in separators and disguises (cheap), plus prebuilt combinations of the interesting pieces.
_RISKY_ALPHABET = "abAB.-_~ /\\:\x00\n\x7f\u00e9\u0301\u200c\ufeff\uff0e\uff0f\u00b9gitGIT1con$"
_MOSTLY_SAFE_ALPHABET = "abAB.-_~ /\u00e9\u0301gitGIT1conmprlux"
_COMBINATIONS = sorted(
    {
        "/".join(combo)
        for combo in itertools.product(["m1", "..", ".git", "A"], _INTERESTING, ["x.json", "", "e\u0301"])
    }
    | {a + b for a, b in itertools.product(_INTERESTING, repeat=2)}
)
_paths = st.one_of(
    st.text(alphabet=_RISKY_ALPHABET, max_size=24),
    st.text(alphabet=_MOSTLY_SAFE_ALPHABET, min_size=1, max_size=24),
    st.text(max_size=16),
    st.sampled_from(_COMBINATIONS),
)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real HCM so that resolution walks existing folders as well as missing ones."""
    root = tmp_path_factory.mktemp("prop") / "hcm"
    for folder in ("state/missions/m1/evidence", "stable/glossary", "a/b.json"):
        (root / folder).mkdir(parents=True)
    (root / "state/missions/m1/meta.json").write_text("{}\n")
    return root


def _assert_safe_location(root: Path, path: str, location: Path) -> None:
    assert os.path.commonpath([str(root), str(location)]) == str(root)
    parts = location.relative_to(root).parts
    assert list(parts) == path.split("/")  # resolved, not rewritten
    for part in parts:
        folded = fold_key(part)
        assert folded not in ("", ".", "..", ".git")
        assert not folded.rstrip(". ").startswith(".git")


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_paths)
def test_check_relative_refuses_or_returns_unchanged_and_stays_under_root(tree: Path, path: str) -> None:
    try:
        result = check_relative(path)
    except UnsafePath:
        with pytest.raises(UnsafePath):
            PathResolver(tree).resolve(path)
        return
    assert result is path
    try:
        location = PathResolver(tree).resolve(path)
    except UnsafePath as exc:
        # Accepted syntax may still be refused on disk (a file on the way, a case collision), never more.
        assert exc.details["reason"]
        return
    _assert_safe_location(tree, path, location)


def test_every_pair_of_interesting_components(tree: Path) -> None:
    """The same property, exhaustively, over every two-component path built from the pieces above."""
    accepted = 0
    resolver = PathResolver(tree)
    for first, second in itertools.product(["m1", "state", "a", "A", "\u00e9"] + _INTERESTING, _INTERESTING):
        path = f"{first}/{second}"
        try:
            assert check_relative(path) is path
        except UnsafePath:
            continue
        accepted += 1
        with contextlib.suppress(UnsafePath):
            _assert_safe_location(tree, path, resolver.resolve(path))
    assert accepted > 50  # the table is not all refusals


def test_module_surface() -> None:
    for name in ("PathResolver", "check_relative", "find_fold_collision", "fold_key", "join", "split"):
        assert name in paths.__all__


def test_mission_paths_are_remembered_and_bad_ids_refused_every_time() -> None:
    first = mission_paths("acme-audit")
    assert mission_paths("acme-audit") is first
    assert vars(first) == vars(MissionPaths("acme-audit"))
    assert first.journal == "state/missions/acme-audit/journal.jsonl"
    for _ in range(2):  # a refusal is not remembered as an answer
        with pytest.raises(InvalidPayload):
            mission_paths("../etc")
