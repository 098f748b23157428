"""Object storage for every layer: a local folder by default, an S3 bucket when configured.

Keys are POSIX relative paths such as ``bronze/2026-11-24/<sha256>.jpg``. Both stores refuse
keys that could leave their root (absolute paths, ``..`` parts, NUL bytes), so no user-chosen
name can ever write outside the data root.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from stat import S_ISREG
from typing import BinaryIO, Protocol

CHUNK_SIZE = 1 << 20
SMALL_FILE_BYTES = 64 << 10  # kept in memory by a staged copy


class UnsafeKeyError(ValueError):
    """A key that would escape the store's root."""


def safe_key(*parts: str) -> str:
    """Join key parts and refuse anything that could leave the store root."""
    parts = tuple(p for p in parts if p)
    if parts and parts[0].startswith("/"):
        raise UnsafeKeyError(f"unsafe key {'/'.join(parts)!r}: must be a relative path without '..'")
    joined = "/".join(p.strip("/") for p in parts)
    if "\x00" in joined or "\\" in joined:
        raise UnsafeKeyError(f"unsafe key {joined!r}: NUL or backslash")
    path = PurePosixPath(joined)
    if path.is_absolute() or any(part in ("..", ".") for part in path.parts) or not path.parts:
        raise UnsafeKeyError(f"unsafe key {joined!r}: must be a relative path without '..'")
    return path.as_posix()


def is_utf8_key(key: str) -> bool:
    """False for a local file whose name is not valid UTF-8 (Python carries its bytes as surrogates,
    which no database, JSON or hash of text accepts)."""
    try:
        key.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def printable_key(key: str) -> str:
    """``key`` with every byte that is not UTF-8 written as ``\\xNN``: what records and logs name such a file by."""
    try:
        return key.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that does not stand for a byte (not from a file name)
        return key.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    modified: datetime  # UTC
    regular: bool = True  # False for a symbolic link (never read as an upload)


class ObjectStore(Protocol):
    def uri(self, key: str) -> str: ...
    def exists(self, key: str) -> bool: ...
    def size(self, key: str) -> int: ...
    def read_bytes(self, key: str) -> bytes: ...
    def open_read(self, key: str) -> BinaryIO: ...
    def write_bytes(self, key: str, data: bytes) -> None: ...
    def write_stream(self, key: str, stream: BinaryIO) -> None: ...
    def copy(self, src_key: str, dst_key: str) -> None: ...
    def delete(self, key: str) -> None: ...
    def list(self, prefix: str) -> Iterator[StoredObject]: ...
    def list_level(self, prefix: str) -> tuple[list[StoredObject], list[str]]: ...


REAL_FOLDERS_KEPT = 4096  # folders whose real path a LocalStore remembers


class LocalStore:
    """Files under a root folder. Writes go to a temporary name first, then are renamed."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        self._root_prefix = str(self.root).rstrip(os.sep) + os.sep
        self._real_folders: dict[str, str] = {}

    def __getstate__(self) -> dict:
        return {"root": self.root, "_root_prefix": self._root_prefix}  # sent to pool workers: not the folders

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _real_folders={})

    def path(self, key: str) -> Path:
        # Links inside the root are resolved (a key may not leave the root through one). A folder's real
        # path is remembered once the folder exists (a day's thousands of keys share a few folders), so a
        # key costs one lstat of its last part, not one per part of the whole path; a last part that is a
        # link is resolved in full. Strings, not pathlib: its per-part objects cost more than the syscalls.
        return self._resolved(key, last_part=True)

    def target_path(self, key: str) -> Path:
        """Where ``key`` is written, renamed to or opened without following links (``O_NOFOLLOW``): its
        folder resolved as ``path`` resolves it, its last part not looked at, since a rename onto a link
        replaces the link and ``O_NOFOLLOW`` refuses one (no system call a key, in a folder of thousands
        being written)."""
        return self._resolved(key, last_part=False)

    def folder_path(self, prefix: str) -> Path:
        """The real path of the folder ``prefix``, remembered once it exists."""
        real = self._real_folder(safe_key(prefix))
        if not (real + os.sep).startswith(self._root_prefix):
            raise UnsafeKeyError(f"folder {prefix!r} resolves outside {self.root}")
        return Path(real)

    def _real_folder(self, folder: str) -> str:
        real_folder = self._real_folders.get(folder)
        if real_folder is None:
            real_folder = os.path.realpath(self._root_prefix + folder) if folder else str(self.root)
            if os.path.isdir(real_folder):
                if len(self._real_folders) >= REAL_FOLDERS_KEPT:
                    self._real_folders.clear()
                self._real_folders[folder] = real_folder
        return real_folder

    def _resolved(self, key: str, last_part: bool) -> Path:
        folder, _, name = safe_key(key).rpartition("/")
        real = self._real_folder(folder) + os.sep + name
        if last_part and os.path.islink(real):
            real = os.path.realpath(real)
        if not real.startswith(self._root_prefix):
            raise UnsafeKeyError(f"key {key!r} resolves outside {self.root}")
        return Path(real)

    def uri(self, key: str) -> str:
        return str(self.path(key))

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def size(self, key: str) -> int:
        return self.path(key).stat().st_size

    def read_bytes(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def open_read(self, key: str) -> BinaryIO:
        return open(self.path(key), "rb")

    def _atomic_write(self, key: str, write) -> None:
        dest = self.target_path(key)
        fd, tmp = _temp_file_in(dest.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
            _replace_into(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def write_bytes(self, key: str, data: bytes) -> None:
        self._atomic_write(key, lambda fh: fh.write(data))

    def write_stream(self, key: str, stream: BinaryIO) -> None:
        self._atomic_write(key, lambda fh: shutil.copyfileobj(stream, fh, CHUNK_SIZE))

    def copy(self, src_key: str, dst_key: str) -> None:
        src, dest = self.path(src_key), self.path(dst_key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            dest.unlink()
        try:
            os.link(src, dest)  # same bytes, no extra disk
        except OSError:
            shutil.copyfile(src, dest)

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def list_level(self, prefix: str) -> tuple[list[StoredObject], list[str]]:
        """(the objects directly under ``prefix``, the names of the folders directly under it): one level,
        without walking the folders."""
        base = self.path(prefix)
        if not base.is_dir():
            return [], []
        objects, folders = [], []
        for entry in sorted(os.scandir(base), key=lambda e: e.name):
            if entry.is_dir(follow_symlinks=False):
                folders.append(entry.name)
                continue
            try:
                stat = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # removed while listing
                continue
            objects.append(StoredObject(key=f"{prefix.rstrip('/')}/{entry.name}", size=stat.st_size,
                                        modified=datetime.fromtimestamp(stat.st_mtime, tz=timezone.utc),
                                        regular=S_ISREG(stat.st_mode)))
        return objects, folders

    def list(self, prefix: str) -> Iterator[StoredObject]:
        base = self.path(prefix)
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                full = Path(dirpath) / name
                try:
                    stat = full.lstat()  # a link is described, never followed
                except FileNotFoundError:  # removed while listing
                    continue
                yield StoredObject(
                    key=full.relative_to(self.root).as_posix(),
                    size=stat.st_size,
                    modified=datetime.fromtimestamp(stat.st_mtime, tz=timezone.utc),
                    regular=S_ISREG(stat.st_mode),
                )


class S3Store:
    """Objects under ``s3://bucket/prefix/`` through a boto3 client (from dagster-aws's S3Resource)."""

    def __init__(self, client, bucket: str, prefix: str = ""):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def _full(self, key: str) -> str:
        key = safe_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(key)}"

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._full(key))
            return True
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def size(self, key: str) -> int:
        return self.client.head_object(Bucket=self.bucket, Key=self._full(key))["ContentLength"]

    def read_bytes(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._full(key))["Body"].read()

    def open_read(self, key: str) -> BinaryIO:
        return self.client.get_object(Bucket=self.bucket, Key=self._full(key))["Body"]

    def write_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data)

    def write_stream(self, key: str, stream: BinaryIO) -> None:
        self.client.upload_fileobj(stream, self.bucket, self._full(key))

    def copy(self, src_key: str, dst_key: str) -> None:
        self.client.copy_object(
            Bucket=self.bucket,
            Key=self._full(dst_key),
            CopySource={"Bucket": self.bucket, "Key": self._full(src_key)},
        )

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._full(key))

    def list_level(self, prefix: str) -> tuple[list[StoredObject], list[str]]:
        """(the objects directly under ``prefix``, the names of the "folders" directly under it): a listing
        with the ``/`` delimiter."""
        full_prefix = self._full(prefix).rstrip("/") + "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        objects, folders = [], []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                folders.append(common["Prefix"][len(full_prefix):].rstrip("/"))
            for obj in page.get("Contents", []):
                objects.append(StoredObject(key=obj["Key"][strip:], size=obj["Size"],
                                            modified=obj["LastModified"].astimezone(timezone.utc)))
        return objects, sorted(folders)

    def list(self, prefix: str) -> Iterator[StoredObject]:
        full_prefix = self._full(prefix).rstrip("/") + "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
            for obj in page.get("Contents", []):
                yield StoredObject(
                    key=obj["Key"][strip:],
                    size=obj["Size"],
                    modified=obj["LastModified"].astimezone(timezone.utc),
                )


class StagedCopy:
    """An object's bytes copied once, hashed on the way, waiting for their final key.

    On a local store the copy is a ``.tmp-*`` file in the destination folder, so placing it is a
    rename (one read and one write per upload); elsewhere it is a spooled temporary file."""

    def __init__(self, store: ObjectStore, sha256: str, size: int, tmp_key: str | None = None, spool=None,
                 data: bytes | None = None):
        self.store, self.sha256, self.size, self._tmp_key, self._spool = store, sha256, size, tmp_key, spool
        self._data = data  # a small file's bytes, read while copying (a sidecar is read again at once)

    def read(self) -> bytes:
        if self._data is not None:
            return self._data
        if self._tmp_key is not None:
            return self.store.read_bytes(self._tmp_key)
        self._spool.seek(0)
        data = self._spool.read()
        self._spool.seek(0)
        return data

    def place(self, key: str) -> None:
        if self._tmp_key is not None:
            _replace_into(self.store.target_path(self._tmp_key), self.store.target_path(key))
            self._tmp_key = None
        else:
            self._spool.seek(0)
            self.store.write_stream(key, self._spool)

    def discard(self) -> None:
        if self._tmp_key is not None:
            self.store.delete(self._tmp_key)
            self._tmp_key = None
        if self._spool is not None:
            self._spool.close()

    def __enter__(self) -> StagedCopy:
        return self

    def __exit__(self, *exc) -> None:
        self.discard()


def _temp_file_in(folder: Path) -> tuple[int, str]:
    """A new ``.tmp-*`` file in ``folder`` (made if missing: tried first, as it nearly always exists, one
    system call fewer a file than making it every time)."""
    try:
        return tempfile.mkstemp(dir=folder, prefix=".tmp-")
    except FileNotFoundError:
        folder.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(dir=folder, prefix=".tmp-")


def _replace_into(tmp: str | Path, dest: Path) -> None:
    """Rename ``tmp`` to ``dest``, making ``dest``'s folder when it is missing."""
    try:
        os.replace(tmp, dest)
    except FileNotFoundError:
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)


def stage_copy(store: ObjectStore, src_key: str, staging_prefix: str) -> StagedCopy:
    """Copy ``src_key`` once while hashing it, into a staging place under ``staging_prefix``.
    A link is never followed (O_NOFOLLOW) on a local store."""
    if not isinstance(store, LocalStore):
        sha, size, spool = copy_with_sha256(store, src_key)
        return StagedCopy(store, sha, size, spool=spool)
    src = store.target_path(src_key)
    digest, size, first = hashlib.sha256(), 0, None
    fd_in = os.open(src, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    fd, tmp = _temp_file_in(store.folder_path(staging_prefix))
    try:
        with os.fdopen(fd_in, "rb") as source, os.fdopen(fd, "wb") as out:
            while chunk := source.read(CHUNK_SIZE):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
                first = chunk if first is None else first
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return StagedCopy(store, digest.hexdigest(), size, tmp_key=Path(tmp).relative_to(store.root).as_posix(),
                      data=first if first is not None and len(first) == size <= SMALL_FILE_BYTES else None)


def copy_with_sha256(src: ObjectStore, src_key: str) -> tuple[str, int, tempfile.SpooledTemporaryFile]:
    """Read an object once, hashing while copying it into a spooled temp file.

    Returns (sha256 hex, size, the temp file rewound to 0) so the caller can decide where the
    bytes go (content-addressed) without reading the source twice.
    """
    digest = hashlib.sha256()
    size = 0
    spool = tempfile.SpooledTemporaryFile(max_size=8 * CHUNK_SIZE)
    with src.open_read(src_key) as stream:
        while chunk := stream.read(CHUNK_SIZE):
            digest.update(chunk)
            spool.write(chunk)
            size += len(chunk)
    spool.seek(0)
    return digest.hexdigest(), size, spool


def sha256_of(store: ObjectStore, key: str) -> str:
    digest = hashlib.sha256()
    with store.open_read(key) as stream:
        while chunk := stream.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()
