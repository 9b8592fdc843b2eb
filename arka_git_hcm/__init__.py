"""arka_git_hcm: the Arka OS Hybrid Collective Memory as a git-backed versioned store."""

__version__ = "0.1.0"
