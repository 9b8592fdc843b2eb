"""Custody of the HCM as an independent brick: backup and restore (moving it to another host),
pushing and mirroring to the client's own Git, git hooks that guard a copy of the history, and
audit exports. Built on the store's public surface and on the git adapter's plumbing; nothing
here is on the write path.

    backup.py     create_backup: a git bundle (full or incremental) + its manifest beside it
    manifest.py   the manifest: what a bundle holds, its checksum, config and secrets if asked
    restore.py    restore_backup / verify_backup: a chain of bundles -> a verified client folder
    secrets.py    CONFIG_ROOT/arka-hcm.secrets.json (mode 0600): remote credentials
    remotes.py    remote add/list/remove/status, push (never forced)
    mirror.py     MirrorWorker: pushes after commits, in the background, with back-off
    schedule.py   BackupScheduler: the service's scheduled backups, kept N at a time
    validate.py   the one validation entry point the git hooks call
    hooks.py      hooks install: pre-receive, pre-commit (chained after the store's guard)
    audit.py      who did what and when, as JSON lines or CSV
"""
