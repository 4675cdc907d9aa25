"""One URI abstraction over local files and S3 objects.

Everything in porter that names a place where bytes live (a datastore root,
an artifact, a file to ingest, an export directory) is a `ResourceURI`.
Two back ends: `LocalURI` (POSIX paths, ``file://``) and `S3URI`
(``s3://bucket/key``, any S3-compatible store: the endpoint comes from
``PORTER_S3_ENDPOINT_URL`` or boto3's own ``AWS_ENDPOINT_URL``, credentials
from the usual AWS environment and config files).

Writes never expose a partial object: a local file is written to a
temporary name in the same directory and renamed (or hard-linked, when it
must not replace an existing file); an S3 PUT is atomic by nature, and
``exclusive=True`` adds ``If-None-Match: *`` so two writers cannot both win.

A writer killed mid-write leaves its temporary behind.  Every temporary porter
makes carries the `Writer` token of the process that made it (PID, process
start time, host), so that a sweeper can tell a dead writer's garbage from a
file another process is still writing (`classify_temporary`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import socket
import tempfile
import time
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from .._processes import boot_id, running_start, start_ticks
from ..errors import PorterError

__all__ = [
    "DEAD",
    "LIVE",
    "S3URI",
    "UNKNOWN",
    "ArtifactExistsError",
    "LocalURI",
    "ResourceURI",
    "Writer",
    "classify_temporary",
    "temporary_name",
]


class ArtifactExistsError(PorterError, FileExistsError):
    """An exclusive write found something already at the URI."""


# --- who wrote a temporary -------------------------------------------------------------------------

LIVE, DEAD, UNKNOWN = "live", "dead", "unknown"
"""What `Writer.state` can tell about a writer: still running, certainly gone, or not checkable from here."""

_TOKEN = re.compile(r"(?:^|\.)(w([0-9]{1,10})-([0-9]{1,20})-([0-9a-f]{16}))\.")
"""A `Writer.token` inside a temporary's name: ``w<pid>-<start>-<machine>`` followed by a dot."""
_HOST_DIGITS = 10
"""Leading hex digits of `Writer.machine` naming the host and PID namespace (the rest name the boot)."""
_UNKNOWN_BOOT = "0" * (16 - _HOST_DIGITS)


@dataclass(frozen=True)
class Writer:
    """The process that made a temporary file: enough to tell later whether it still runs.

    A PID alone is not enough: PIDs are reused, and they mean nothing on
    another host or in another PID namespace (a container).  So a writer is
    its PID, its start time (clock ticks after boot, from ``/proc/<pid>/stat``:
    a process that reuses the PID started later), and a ``machine`` tag
    hashing the host name with the PID namespace (where PIDs are comparable)
    and the boot ID (after a reboot every earlier writer is gone).  Tags are
    hashes so that a temporary's name stays short.  The token goes into the
    names of temporaries (and can go into the write journal, to tell a dead
    writer's interrupted write from a running one).
    """

    pid: int
    started: int
    """Start time in clock ticks after boot; 0 where ``/proc`` does not tell (then only the PID is checked)."""
    machine: str
    """16 hex digits: 10 for the host name and PID namespace, 6 for the boot (zeros if unknown)."""

    @property
    def token(self) -> str:
        """The writer as it appears in file names: ``w<pid>-<start>-<machine>`` (no dots, no slashes)."""
        return f"w{self.pid}-{self.started}-{self.machine}"

    @classmethod
    def parse(cls, name: str) -> Writer | None:
        """The writer named in a temporary's file name (the last token in it), or None for a name without one."""
        found = _TOKEN.findall(name)
        if not found:
            return None
        _, pid, started, machine = found[-1]
        return cls(int(pid), int(started), machine)

    @classmethod
    def current(cls) -> Writer:
        """This process (computed once per process; a forked child computes its own)."""
        global _CURRENT
        pid = os.getpid()
        if _CURRENT is None or _CURRENT.pid != pid:
            _CURRENT = cls.of(pid)
        return _CURRENT

    @classmethod
    def of(cls, pid: int) -> Writer:
        """The running process ``pid`` of this machine (its start time read from ``/proc``)."""
        return cls(pid, start_ticks(pid), _machine())

    def state(self) -> str:
        """`LIVE`, `DEAD` or `UNKNOWN` (another host or namespace, or no ``/proc`` to rule out a reused PID).

        Errs towards `LIVE`/`UNKNOWN`: a sweeper deletes only what is `DEAD`,
        or `UNKNOWN` and untouched for longer than any write takes.
        """
        me = Writer.current()
        if self.pid <= 0 or self.machine[:_HOST_DIGITS] != me.machine[:_HOST_DIGITS]:
            return UNKNOWN
        boot, my_boot = self.machine[_HOST_DIGITS:], me.machine[_HOST_DIGITS:]
        if _UNKNOWN_BOOT not in (boot, my_boot) and boot != my_boot:
            return DEAD  # made before this host last booted
        if self.pid == me.pid:
            return LIVE if self.started == me.started else DEAD
        started = running_start(self.pid)
        if started is None:
            return DEAD  # exited (or a zombie, killed but not yet reaped by its parent)
        if not started or not self.started:
            return UNKNOWN  # no /proc here (or it hides other users' processes): cannot rule out PID reuse
        return LIVE if started == self.started else DEAD  # otherwise a later process reuses the PID


_CURRENT: Writer | None = None
_MACHINE: str | None = None


def _machine() -> str:
    """This process's `Writer.machine` tag (the same for every process of one host, namespace and boot)."""
    global _MACHINE
    if _MACHINE is None:
        try:
            namespace = str(os.stat("/proc/self/ns/pid").st_ino)
        except OSError:
            namespace = ""
        host = hashlib.blake2b(f"{socket.gethostname()}\0{namespace}".encode(), digest_size=8).hexdigest()
        boot = hashlib.blake2b(boot_id().encode(), digest_size=8).hexdigest() if boot_id() else _UNKNOWN_BOOT
        _MACHINE = host[:_HOST_DIGITS] + boot[: 16 - _HOST_DIGITS]
    return _MACHINE


def classify_temporary(
    name: str, modified: float, grace: float, now: float | None = None
) -> tuple[bool, str]:
    """Whether the temporary file ``name`` (last modified at ``modified``, epoch seconds) is garbage, and why.

    Garbage is a temporary whose writer is `DEAD`, or whose writer cannot be
    checked from here (another host, or a name without a writer, made by an
    older porter) and which nobody has modified for ``grace`` seconds — a
    write in progress keeps its temporary's modification time fresh.  The
    reason is for people: which writer, and why it counts as gone (or not).
    """
    writer = Writer.parse(name)
    state = writer.state() if writer is not None else UNKNOWN
    if writer is not None and state == DEAD:
        return True, f"left by process {writer.pid} of this host, which has exited"
    if state == LIVE:
        return False, f"being written by process {writer.pid if writer else '?'}"
    age = max(0.0, (time.time() if now is None else now) - modified)
    if writer is None:
        whose = "a writer it does not name (an older porter)"
    elif writer.machine[:_HOST_DIGITS] != _machine()[:_HOST_DIGITS]:
        whose = "a writer on another host"
    else:
        whose = f"process {writer.pid}, which cannot be checked here"
    if age >= grace:
        return True, f"from {whose}, untouched for {_duration(age)}"
    return False, f"from {whose}, modified {_duration(age)} ago (may still be writing)"


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds:.0f} s"


_MY_TOKEN = ""
"""This process's writer token, once computed (every put names a temporary); a forked child forgets it."""


def _forget_token() -> None:
    global _MY_TOKEN
    _MY_TOKEN = ""


os.register_at_fork(after_in_child=_forget_token)


def my_token() -> str:
    """`Writer.current`'s token, kept: every put names a temporary, and this costs it no system call."""
    global _MY_TOKEN
    if not _MY_TOKEN:
        _MY_TOKEN = Writer.current().token
    return _MY_TOKEN


def temporary_name(stem: str, suffix: str = "") -> str:
    """A temporary's file name carrying this process's writer token: ``<token>.<stem><suffix>``."""
    return f"{my_token()}.{stem}{suffix}"


class ResourceURI(ABC):
    """A place where one file or object lives (or a directory/prefix of them)."""

    scheme: str

    @staticmethod
    def from_string(value: str | os.PathLike[str] | ResourceURI) -> ResourceURI:
        """Parse ``s3://bucket/key``, ``file:///abs/path`` or a plain local path."""
        if isinstance(value, ResourceURI):
            return value
        if isinstance(value, Path):  # a Path cannot hold "scheme://" (it folds the "//"): a local file
            return LocalURI(value if value.is_absolute() else value.absolute())
        text = os.fspath(value)
        if text.startswith("s3://"):
            parsed = urllib.parse.urlparse(text)
            if not parsed.netloc:
                raise ValueError(f"{text!r} names no bucket; write s3://BUCKET/prefix.")
            return S3URI(parsed.netloc, parsed.path.lstrip("/"))
        if text.startswith("file://"):
            return LocalURI(Path(urllib.parse.unquote(urllib.parse.urlparse(text).path)))
        if "://" in text:
            raise ValueError(
                f"Unsupported URI scheme in {text!r}: porter stores files locally or in S3 (s3://bucket/prefix)."
            )
        return LocalURI(Path(text).absolute())

    # --- naming -------------------------------------------------------------------------------

    @abstractmethod
    def join(self, relative: str) -> ResourceURI:
        """The URI of ``relative`` (a POSIX path, no ``..``) below this one."""

    @abstractmethod
    def relative_to(self, root: ResourceURI) -> str | None:
        """This URI's path below ``root``, or None if it is not below it."""

    @property
    @abstractmethod
    def name(self) -> str:
        """The last path component."""

    @property
    def is_local(self) -> bool:
        return False

    # --- lsst.resources.ResourcePath's names, so code that inspects a get_uri() result runs unchanged ---

    @property
    def netloc(self) -> str:
        """The bucket of an S3 URI; empty for a local file."""
        return ""

    @property
    @abstractmethod
    def ospath(self) -> str:
        """The path part as a POSIX path (``/abs/file.fits``; ``/key`` for S3)."""

    @property
    def relativeToPathRoot(self) -> str:
        """The path below the root of its file system or bucket, without a leading slash."""
        return self.ospath.lstrip("/")

    @property
    def isLocal(self) -> bool:
        return self.is_local

    def geturl(self) -> str:
        """The URI as text (``file:///…`` or ``s3://…``)."""
        return str(self)

    def basename(self) -> str:
        """The last path component (``calexp_HSC_….fits``)."""
        return self.name

    def getExtension(self) -> str:
        """The file extension including its dot, compression suffixes included (``.fits.gz``)."""
        suffixes = PurePosixPath(self.name).suffixes
        if len(suffixes) > 1 and suffixes[-1] in (".gz", ".bz2", ".xz", ".fz", ".zst"):
            return "".join(suffixes[-2:])
        return suffixes[-1] if suffixes else ""

    def dirname(self) -> ResourceURI:
        """The directory (or key prefix) holding this file."""
        parent = PurePosixPath(self.relativeToPathRoot).parent.as_posix()  # not ospath: S3 has none
        return ResourceURI.from_string(self._with_path(parent))

    @abstractmethod
    def _with_path(self, relative_to_root: str) -> str:
        """This URI's scheme and location with another path (for `dirname`)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ResourceURI) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    # --- reading ------------------------------------------------------------------------------

    @abstractmethod
    def exists(self) -> bool: ...

    @abstractmethod
    def size(self) -> int:
        """Size in bytes; `FileNotFoundError` if absent."""

    @abstractmethod
    def read(self) -> bytes: ...

    def modified(self) -> float:
        """Last modification time (epoch seconds); `FileNotFoundError` if absent.

        Tells a sweeper whether a temporary of a writer it cannot check is still being written.
        """
        raise NotImplementedError(f"{type(self).__name__} does not report modification times.")

    @abstractmethod
    def open_read(self) -> IO[bytes]:
        """A seekable binary file object; S3 objects are read by ranged GETs, on demand."""

    @contextlib.contextmanager
    def as_local(self) -> Iterator[Path]:
        """A local path holding this resource's bytes (a temporary download for S3)."""
        with tempfile.TemporaryDirectory(prefix="porter-") as tmp:
            path = Path(tmp) / self.name
            path.write_bytes(self.read())
            yield path

    # --- writing ------------------------------------------------------------------------------

    @abstractmethod
    def write(self, data: bytes, *, exclusive: bool = False) -> None:
        """Write ``data`` atomically; with ``exclusive``, refuse to replace an existing object."""

    @abstractmethod
    def upload(self, source: Path, *, exclusive: bool = False, move: bool = False) -> None:
        """Put the local file ``source`` here atomically (``move`` may consume it)."""

    @abstractmethod
    def remove(self) -> bool:
        """Delete this file or object; False if it was not there."""

    @abstractmethod
    def walk(self) -> Iterator[tuple[ResourceURI, int]]:
        """Every file/object below this directory/prefix, with its size."""

    @abstractmethod
    def signed_url(self, expires: int = 3600, *, method: str = "GET") -> str:
        """A URL that lets someone without credentials read (or PUT) this object for ``expires`` seconds."""


def _check_relative(relative: str) -> str:
    parts = relative.split("/")
    if not relative or relative.startswith("/") or ".." in parts:
        raise ValueError(f"{relative!r} is not a relative path below the root (no leading '/', no '..').")
    return relative


# --- local files --------------------------------------------------------------------------------


class LocalURI(ResourceURI):
    """A path on a POSIX file system."""

    scheme = "file"

    def __init__(self, path: Path):
        self.path = path
        self._absolute: str | None = None

    def __str__(self) -> str:
        return self.path.as_uri() if self.path.is_absolute() else str(self.path)

    @property
    def absolute(self) -> str:
        """The normalised absolute path as a string (computed once: a root is asked 10⁵ times in an ingest)."""
        if self._absolute is None:
            self._absolute = os.path.abspath(self.path)
        return self._absolute

    def join(self, relative: str) -> LocalURI:
        return LocalURI(self.path / _check_relative(relative))

    def relative_to(self, root: ResourceURI) -> str | None:
        if not isinstance(root, LocalURI):
            return None
        # String arithmetic on absolute, normalised paths: pathlib's relative_to costs ~15 µs per call.
        here, base = self.absolute, root.absolute
        base = base if base.endswith("/") else base + "/"
        return here[len(base) :] if here.startswith(base) and len(here) > len(base) else None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def ospath(self) -> str:
        return self.absolute

    def _with_path(self, relative_to_root: str) -> str:
        return "/" + relative_to_root

    @property
    def is_local(self) -> bool:
        return True

    def exists(self) -> bool:
        return self.path.exists()

    def size(self) -> int:
        return self.path.stat().st_size

    def modified(self) -> float:
        return self.path.stat().st_mtime

    def read(self) -> bytes:
        return self.path.read_bytes()

    def open_read(self) -> IO[bytes]:
        return open(self.path, "rb")

    @contextlib.contextmanager
    def as_local(self) -> Iterator[Path]:
        yield self.path

    def _temporary(self) -> Path:
        """A unique temporary name next to the target (same file system: rename is atomic).

        The name carries the writer's token, so that ``porter fsck`` can tell a
        killed writer's leftover from a copy in progress; the target's name in
        it (for people) is cut short so that the whole stays within NAME_MAX.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{self.path.name[:120]}.{my_token()}.",
            suffix=".porter-tmp",
            dir=self.path.parent,
        )
        os.close(fd)
        return Path(tmp)

    def _install(self, tmp: Path, exclusive: bool) -> None:
        try:
            if exclusive:
                try:
                    os.link(tmp, self.path)  # atomic, and fails if the target exists
                except FileExistsError:
                    raise ArtifactExistsError(
                        f"{self} already exists; porter does not overwrite it."
                    ) from None
                tmp.unlink()
            else:
                os.replace(tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def write(self, data: bytes, *, exclusive: bool = False) -> None:
        if exclusive and self.path.exists():
            raise ArtifactExistsError(f"{self} already exists; porter does not overwrite it.")
        tmp = self._temporary()
        try:
            with open(tmp, "wb") as f:
                f.write(data)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._install(tmp, exclusive)

    def upload(self, source: Path, *, exclusive: bool = False, move: bool = False) -> None:
        if exclusive and self.path.exists():
            raise ArtifactExistsError(f"{self} already exists; porter does not overwrite it.")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if move:
            try:
                if exclusive:
                    os.link(source, self.path)
                    source.unlink()
                else:
                    os.replace(source, self.path)
                return
            except FileExistsError:
                raise ArtifactExistsError(f"{self} already exists; porter does not overwrite it.") from None
            except OSError:
                pass  # another file system: copy below
        tmp = self._temporary()
        try:
            shutil.copyfile(source, tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._install(tmp, exclusive)
        if move:
            source.unlink()

    def remove(self) -> bool:
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True

    def walk(self) -> Iterator[tuple[ResourceURI, int]]:
        if not self.path.is_dir():
            return
        for dirpath, _, files in os.walk(self.path):
            for f in files:
                p = Path(dirpath) / f
                with contextlib.suppress(FileNotFoundError):
                    yield LocalURI(p), p.stat().st_size

    def signed_url(self, expires: int = 3600, *, method: str = "GET") -> str:
        return self.path.as_uri()


# --- S3 -------------------------------------------------------------------------------------------

_CLIENTS: dict[tuple[str | None, int], Any] = {}


def s3_endpoint_url() -> str | None:
    """The S3 endpoint: ``PORTER_S3_ENDPOINT_URL``, else boto3's own configuration (AWS_ENDPOINT_URL …)."""
    return os.environ.get("PORTER_S3_ENDPOINT_URL") or None


_FIRST_READ = 8 << 20
"""Bytes fetched by the first GET of `S3URI.open_read` (objects up to this size take one request)."""


def s3_client() -> Any:
    """A boto3 S3 client for the configured endpoint (one per process and endpoint)."""
    endpoint = s3_endpoint_url()
    key = (endpoint, os.getpid())
    client = _CLIENTS.get(key)
    if client is None:
        import boto3
        import botocore.config

        config = botocore.config.Config(
            retries={"max_attempts": 8, "mode": "adaptive"}, max_pool_connections=32
        )
        client = _CLIENTS[key] = boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)
    return client


def _is_missing(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
    return code in ("404", "NoSuchKey", "NotFound")


class S3URI(ResourceURI):
    """An object (or a key prefix) in an S3 bucket."""

    scheme = "s3"

    def __init__(self, bucket: str, key: str):
        self.bucket = bucket
        self.key = key

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def join(self, relative: str) -> S3URI:
        base = self.key.rstrip("/")
        return S3URI(
            self.bucket, f"{base}/{_check_relative(relative)}" if base else _check_relative(relative)
        )

    def relative_to(self, root: ResourceURI) -> str | None:
        if not isinstance(root, S3URI) or root.bucket != self.bucket:
            return None
        prefix = root.key.rstrip("/")
        if not prefix:
            return self.key
        if self.key.startswith(prefix + "/"):
            return self.key[len(prefix) + 1 :]
        return None

    @property
    def name(self) -> str:
        return PurePosixPath(self.key).name

    @property
    def netloc(self) -> str:
        return self.bucket

    @property
    def ospath(self) -> str:
        raise AttributeError(f"{self} is in S3: it has no local path (as lsst.resources says); use .path.")

    @property
    def relativeToPathRoot(self) -> str:
        return self.key

    @property
    def path(self) -> str:
        """The key as a URL path (``/prefix/file.parq``), as ``ResourcePath.path`` gives it."""
        return "/" + self.key

    def _with_path(self, relative_to_root: str) -> str:
        return f"s3://{self.bucket}/{relative_to_root}"

    def exists(self) -> bool:
        try:
            self.size()
        except FileNotFoundError:
            return False
        return True

    def size(self) -> int:
        try:
            return int(s3_client().head_object(Bucket=self.bucket, Key=self.key)["ContentLength"])
        except Exception as exc:
            if _is_missing(exc):
                raise FileNotFoundError(str(self)) from None
            raise

    def modified(self) -> float:
        try:
            head = s3_client().head_object(Bucket=self.bucket, Key=self.key)
        except Exception as exc:
            if _is_missing(exc):
                raise FileNotFoundError(str(self)) from None
            raise
        return float(head["LastModified"].timestamp())

    def read(self) -> bytes:
        try:
            return bytes(s3_client().get_object(Bucket=self.bucket, Key=self.key)["Body"].read())
        except Exception as exc:
            if _is_missing(exc):
                raise FileNotFoundError(str(self)) from None
            raise

    def read_range(self, start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        response = s3_client().get_object(
            Bucket=self.bucket, Key=self.key, Range=f"bytes={start}-{start + length - 1}"
        )
        return bytes(response["Body"].read())

    def open_read(self) -> IO[bytes]:
        # One GET for the first bytes: a small object (a catalog, a dict) is then
        # read whole in one request; a large one (an image to cut out) continues
        # with ranged GETs, its total size known from the same response.
        try:
            response = s3_client().get_object(
                Bucket=self.bucket, Key=self.key, Range=f"bytes=0-{_FIRST_READ - 1}"
            )
        except Exception as exc:
            if _is_missing(exc):
                raise FileNotFoundError(str(self)) from None
            if getattr(exc, "response", {}).get("Error", {}).get("Code") == "InvalidRange":  # empty object
                return io.BytesIO(b"")
            raise
        head = bytes(response["Body"].read())
        content_range = response.get("ContentRange") or ""
        total = int(content_range.rsplit("/", 1)[1]) if "/" in content_range else len(head)
        if total <= len(head):
            return io.BytesIO(head)
        return io.BufferedReader(_S3RangeReader(self, total, head), buffer_size=1 << 20)

    def write(self, data: bytes, *, exclusive: bool = False) -> None:
        extra = {"IfNoneMatch": "*"} if exclusive else {}
        try:
            s3_client().put_object(Bucket=self.bucket, Key=self.key, Body=data, **extra)
        except Exception as exc:
            self._raise_exists(exc)
            raise

    def upload(self, source: Path, *, exclusive: bool = False, move: bool = False) -> None:
        size = source.stat().st_size
        if size <= 64 << 20:
            with open(source, "rb") as f:
                self.write(f.read(), exclusive=exclusive)
        else:
            if exclusive and self.exists():
                raise ArtifactExistsError(f"{self} already exists; porter does not overwrite it.")
            import boto3.s3.transfer

            transfer = boto3.s3.transfer.TransferConfig(multipart_chunksize=64 << 20, max_concurrency=8)
            s3_client().upload_file(str(source), self.bucket, self.key, Config=transfer)
        if move:
            source.unlink()

    def _raise_exists(self, exc: Exception) -> None:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
            raise ArtifactExistsError(f"{self} already exists; porter does not overwrite it.") from None

    def remove(self) -> bool:
        if not self.exists():
            return False
        s3_client().delete_object(Bucket=self.bucket, Key=self.key)
        return True

    def walk(self) -> Iterator[tuple[ResourceURI, int]]:
        prefix = self.key.rstrip("/") + "/" if self.key else ""
        paginator = s3_client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield S3URI(self.bucket, item["Key"]), int(item["Size"])

    def signed_url(self, expires: int = 3600, *, method: str = "GET") -> str:
        operation = {"GET": "get_object", "PUT": "put_object"}[method]
        return str(
            s3_client().generate_presigned_url(
                operation, Params={"Bucket": self.bucket, "Key": self.key}, ExpiresIn=expires
            )
        )


class _S3RangeReader(io.RawIOBase):
    """A seekable raw stream over one S3 object, fetching only the byte ranges read.

    Lets astropy read one FITS section and pyarrow the column chunks it needs
    without downloading the whole object.
    """

    def __init__(self, uri: S3URI, size: int, head: bytes = b""):
        self._uri = uri
        self._size = size
        self._pos = 0
        self._head = head  # the object's first bytes, already fetched

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._size - self._pos)
        if n <= 0:
            return 0
        if self._pos < len(self._head):
            data = self._head[self._pos : self._pos + n]
        else:
            data = self._uri.read_range(self._pos, n)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


def check_datastore_root(root: str) -> None:
    """Refuse a datastore root porter cannot write to, before a repository is created around it."""
    uri = ResourceURI.from_string(root)
    if isinstance(uri, S3URI):
        try:
            s3_client().head_bucket(Bucket=uri.bucket)
        except Exception as exc:
            endpoint = s3_endpoint_url() or "AWS's default endpoint"
            raise PorterError(
                f"Cannot use {root} as a datastore: bucket {uri.bucket!r} is not reachable at {endpoint} "
                f"({exc}). Create the bucket, or set PORTER_S3_ENDPOINT_URL and AWS credentials."
            ) from None
