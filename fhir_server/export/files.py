"""An export's files: one folder per job, NDJSON files per type split at a size, resumable exactly.

A writer's state (which files, how many bytes and lines each) is part of the job's checkpoint, saved
only after the bytes it names are on disk (``fsync`` of every file written since the last checkpoint).
Resuming truncates the file being written back to the checkpointed size and drops any later file, so
a restart repeats no line and loses none: the manifest's counts stay exact.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

_NAME = re.compile(r"^(deleted-)?[A-Za-z]+-\d+\.ndjson$")


def private_write(path: Path, data: bytes) -> None:
    """Write ``path`` whole, readable by this user only (export files hold children's data)."""
    with open_private(path) as handle:
        handle.write(data)


def open_private(path: Path) -> BinaryIO:
    """Open ``path`` for writing (truncated) with mode 0600 from the moment it exists."""
    return open(path, "wb", opener=_private_opener)  # the caller closes it


def _private_opener(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


def job_folder(root: Path, job_id: str) -> Path:
    if not re.fullmatch(r"[0-9a-f]{32}", job_id):
        raise ValueError(f"not an export job id: {job_id!r}")
    return root / job_id


def make_durable(paths: set[Path]) -> None:
    """fsync files written and closed earlier (once each), then forget them."""
    for path in sorted(paths):
        if path.exists():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    paths.clear()


def remove_folder(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def downloadable(folder: Path, name: str) -> Path | None:
    """The file ``name`` of an export, if it is an output file that exists (never a path outside)."""
    if not _NAME.match(name):
        return None
    path = folder / name
    return path if path.is_file() else None


@dataclass
class OutputFile:
    type: str  # the resource type its lines hold (Bundle for deletions, OperationOutcome for errors)
    name: str
    bytes: int = 0
    count: int = 0

    def record(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "bytes": self.bytes, "count": self.count}


@dataclass
class NdjsonWriter:
    """Appends lines to ``<prefix>-<n>.ndjson`` files in ``folder``; a new file starts past ``max_bytes``."""

    folder: Path
    type: str
    prefix: str
    max_bytes: int
    files: list[OutputFile] = field(default_factory=list)
    unsynced: set[Path] = field(default_factory=set)  # files closed since they were last made durable
    _handle: BinaryIO | None = None

    @classmethod
    def resume(
        cls, folder: Path, type_: str, prefix: str, max_bytes: int, saved: list[dict[str, Any]]
    ) -> NdjsonWriter:
        """A writer continuing from checkpointed ``saved`` file states (empty: a fresh start)."""
        writer = cls(folder, type_, prefix, max_bytes, [OutputFile(**s) for s in saved])
        keep = {f.name for f in writer.files}
        for stale in folder.glob(f"{prefix}-*.ndjson"):
            if stale.name not in keep:
                stale.unlink()  # begun after the checkpoint
        if writer.files:
            last = writer.files[-1]
            path = folder / last.name
            if not path.exists() or path.stat().st_size < last.bytes:
                raise RuntimeError(f"{path} is shorter than its checkpoint: the export must start again")
            handle = path.open("r+b")
            handle.truncate(last.bytes)
            handle.seek(last.bytes)
            writer._handle = handle
        return writer

    def write(self, lines: list[bytes]) -> None:
        """Append complete lines (each ending in a newline)."""
        current = self.files[-1] if self.files else None
        if current is not None and self._handle is not None:
            size = sum(map(len, lines))
            if current.bytes + size <= self.max_bytes:  # the whole page fits: one buffered write
                self._handle.writelines(lines)
                current.bytes += size
                current.count += len(lines)
                return
        for line in lines:
            current = self.files[-1] if self.files else None
            if current is None or (current.count and current.bytes + len(line) > self.max_bytes):
                current = self._next_file()
            assert self._handle is not None
            self._handle.write(line)
            current.bytes += len(line)
            current.count += 1

    def _next_file(self) -> OutputFile:
        self.close()
        name = f"{self.prefix}-{len(self.files) + 1}.ndjson"
        self._handle = open_private(self.folder / name)
        out = OutputFile(self.type, name)
        self.files.append(out)
        return out

    def state(self) -> list[dict[str, Any]]:
        """The files as written so far (durable once ``sync`` has run)."""
        return [f.record() for f in self.files]

    def sync(self) -> list[dict[str, Any]]:
        """Make everything written durable; returns the state to checkpoint."""
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())
        make_durable(self.unsynced)
        return self.state()

    def close(self) -> None:
        """Close the current file (made durable at the next ``sync`` or ``make_durable``)."""
        if self._handle is not None:
            self._handle.flush()
            self.unsynced.add(Path(self._handle.name))
            self._handle.close()
            self._handle = None

    @property
    def count(self) -> int:
        return sum(f.count for f in self.files)
