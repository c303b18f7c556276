"""One storage interface over a local folder and ``s3://bucket/prefix`` (:func:`open_storage`).

Safe relative keys, paginated listings, atomic local writes, errors naming the URI.
Reasoning: docs/pipeline.md "Storage"; regular files only: docs/reliability.md.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ENDPOINT_ENV: str = "COSMIC_S3_ENDPOINT_URL"


class StorageError(Exception):
    """A storage operation failed (missing bucket, permission, network...)."""


class MissingObjectError(StorageError, FileNotFoundError):
    """The key does not exist."""


class NotRegularFileError(MissingObjectError):
    """A local key names a link, FIFO, device, socket or directory: never read (a data problem)."""


_KINDS = ((stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
          (stat.S_ISDIR, "directory"), (stat.S_ISSOCK, "socket"))


def open_regular(path: str | os.PathLike[str], label: str | None = None) -> int:
    """The read-only fd of ``path`` if a regular file, else FileNotFoundError / :class:`NotRegularFileError`
    (``O_NOFOLLOW``, ``O_NONBLOCK`` so a FIFO cannot hang, type checked on the opened fd)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegularFileError(f"{label or path} is a symbolic link, not a regular file; links are not "
                                      "followed (replace it by the file itself)") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((k for test, k in _KINDS if test(mode)), "special file")
            raise NotRegularFileError(f"{label or path} is a {kind}, not a regular file; only regular files are read")
        os.set_blocking(fd, True)
        return fd
    except BaseException:
        os.close(fd)
        raise


class InvalidKeyError(StorageError, ValueError):
    """The key is absolute or tries to leave the storage root."""


def read_regular_into(path: str | os.PathLike[str], label: str | None = None) -> bytearray:
    """The content of a regular file (:func:`open_regular`) in one ``bytearray`` sized by ``fstat``."""
    fd = open_regular(path, label)
    try:
        buf = bytearray(os.fstat(fd).st_size)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            got = _fill(fh, memoryview(buf))
        if got != len(buf):  # the file shrank while read
            del buf[got:]
        return buf
    finally:
        os.close(fd)


def _fill(stream: Any, view: memoryview) -> int:
    """Bytes read from ``stream`` into ``view`` until full or EOF (``readinto``, else ``read(n)`` chunks)."""
    got = 0
    readinto = getattr(stream, "readinto", None)
    while got < len(view):
        if readinto is not None:
            n = readinto(view[got:])
        else:
            chunk = stream.read(min(len(view) - got, 1 << 20))
            n = len(chunk)
            view[got:got + n] = chunk
        if not n:
            break
        got += n
    return got


def validate_key(key: str, allow_empty: bool = False) -> str:
    """Return ``key`` if it is a safe relative ``/``-separated key, else raise InvalidKeyError."""
    if not isinstance(key, str):
        raise InvalidKeyError(f"storage key must be a string, got {type(key).__name__}")
    if key == "":
        if allow_empty:
            return key
        raise InvalidKeyError("storage key is empty")
    if "\\" in key or "\x00" in key:
        raise InvalidKeyError(f"storage key {key!r} contains a backslash or NUL byte")
    if key.startswith("/") or (len(key) > 1 and key[1] == ":"):
        raise InvalidKeyError(f"storage key {key!r} is absolute; keys are relative to the storage root")
    parts = key.rstrip("/").split("/") if allow_empty else key.split("/")
    for part in parts:
        if part in ("..", "."):
            raise InvalidKeyError(f"storage key {key!r} contains a '{part}' segment (path traversal is not allowed)")
        if part == "":
            raise InvalidKeyError(f"storage key {key!r} has an empty segment")
    return key


class Storage(ABC):
    """A flat key -> bytes store rooted at a folder or an S3 prefix."""

    root_uri: str  # normalised: ``/abs/path`` or ``s3://bucket/prefix``

    @abstractmethod
    def list_keys(self, prefix: str = "") -> list[str]:
        """All keys under ``prefix`` (a key prefix, not necessarily a folder), sorted."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """The whole object."""

    def read_buffer(self, key: str) -> bytearray:
        """The whole object in one writable ``bytearray`` (``np.frombuffer`` then needs no copy)."""
        return bytearray(self.read_bytes(key))

    @abstractmethod
    def read_range(self, key: str, start: int, length: int) -> bytes:
        """``length`` bytes from ``start`` (fewer at the end of the object)."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None:
        """Create or replace an object."""

    @abstractmethod
    def upload_file(self, local_path: str | os.PathLike[str], key: str) -> None:
        """Copy a local file to ``key`` (S3: managed multipart transfer)."""

    @abstractmethod
    def download_file(self, key: str, local_path: str | os.PathLike[str]) -> None:
        """Copy ``key`` to a local file (written atomically)."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether the object exists."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object (no error when it does not exist)."""

    @abstractmethod
    def size(self, key: str) -> int:
        """Size of the object in bytes."""

    @abstractmethod
    def uri(self, key: str = "") -> str:
        """The full URI of a key (``/abs/path/key`` or ``s3://bucket/prefix/key``)."""

    def _check_range(self, key: str, start: int, length: int) -> None:
        if start < 0 or length < 0:
            raise ValueError(f"bad range start={start} length={length} for {self.uri(key)}")

    def read_text(self, key: str, encoding: str = "utf-8") -> str:
        return self.read_bytes(key).decode(encoding)

    def write_text(self, key: str, text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(key, text.encode(encoding))

    def local_path(self, key: str) -> Path | None:
        """A local filesystem path for ``key`` when the storage is local (for memmaps), else None."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root_uri!r})"


class LocalStorage(Storage):
    """Keys are files under ``root`` (created on the first write)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root_uri = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    def local_path(self, key: str) -> Path:
        return self._path(key)

    def list_keys(self, prefix: str = "") -> list[str]:
        if prefix:
            validate_key(prefix, allow_empty=True)
        if not self.root.is_dir():
            return []
        keys: list[str] = []
        for dirpath, _dirnames, filenames in os.walk(self.root):
            rel = Path(dirpath).relative_to(self.root)
            for fname in filenames:
                if fname.startswith(".") and ".tmp-" in fname:
                    continue  # an atomic write in progress
                key = (rel / fname).as_posix() if rel.parts else fname
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def _missing(self, key: str) -> MissingObjectError:
        return MissingObjectError(f"no such object: {self.uri(key)}")

    @contextmanager
    def _reading(self, key: str) -> Iterator[None]:
        """A missing key as :class:`MissingObjectError` (a :class:`NotRegularFileError` as itself)."""
        try:
            yield
        except NotRegularFileError:
            raise
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise self._missing(key) from exc

    def read_bytes(self, key: str) -> bytes:
        return bytes(self.read_buffer(key))

    def read_buffer(self, key: str) -> bytearray:
        with self._reading(key):
            return read_regular_into(self._path(key), self.uri(key))

    def read_range(self, key: str, start: int, length: int) -> bytes:
        self._check_range(key, start, length)
        with self._reading(key):
            fd = open_regular(self._path(key), self.uri(key))
        try:
            return os.pread(fd, length, start)
        finally:
            os.close(fd)

    def write_bytes(self, key: str, data: bytes) -> None:
        durable_write(self._path(key), data, sync_dir=False)

    def upload_file(self, local_path: str | os.PathLike[str], key: str) -> None:
        src = Path(local_path)
        if not src.is_file():
            raise MissingObjectError(f"no such local file to upload: {src}")
        _atomic_copy(src, self._path(key))

    def download_file(self, key: str, local_path: str | os.PathLike[str]) -> None:
        src = self._path(key)
        if not src.is_file():
            raise self._missing(key)
        _atomic_copy(src, Path(local_path))

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError as exc:
            raise self._missing(key) from exc

    def uri(self, key: str = "") -> str:
        return str(self._path(key)) if key else self.root_uri


def durable_write(path: str | os.PathLike[str], data: bytes, sync_dir: bool = True) -> None:
    """Write ``data`` to ``path`` complete or not at all: temp file, ``fsync``, rename, ``fsync`` of
    the folder (``sync_dir``). ENOSPC or a read-only folder raises ``OSError``, leaving no file."""
    dst = Path(path)
    with replacing(dst) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    if not sync_dir:
        return
    try:
        dir_fd = os.open(dst.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - a folder that cannot be opened still got the rename
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextmanager
def replacing(dst: Path) -> Iterator[str]:
    """A temp file beside ``dst``, given ordinary permissions (mkstemp makes it 0600) and renamed
    over ``dst`` when the block succeeds; removed in any case."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.tmp-", dir=dst.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, dst)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE: int = _default_mode()


def _atomic_copy(src: Path, dst: Path) -> None:
    with replacing(dst) as tmp:
        shutil.copyfile(src, tmp)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix/`` -> ``("bucket", "some/prefix")``."""
    if not uri.startswith("s3://"):
        raise StorageError(f"not an S3 URI: {uri!r}")
    bucket, _, prefix = uri[5:].partition("/")
    if not bucket:
        raise StorageError(f"S3 URI has no bucket: {uri!r}")
    prefix = prefix.strip("/")
    if prefix:
        validate_key(prefix)
    return bucket, prefix


class S3Storage(Storage):
    """Keys are objects ``prefix/key`` in ``bucket``."""

    def __init__(self, bucket: str, prefix: str = "", client: Any = None, endpoint_url: str | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if client is None:  # the default configuration; ``endpoint_url`` for moto servers
            import boto3

            client = boto3.client("s3", endpoint_url=endpoint_url or os.environ.get(ENDPOINT_ENV) or None)
        self.client = client
        self.root_uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"

    def _full(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self._full(key)}" if key else self.root_uri

    def _translate(self, exc: Exception, key: str | None) -> StorageError:
        from botocore.exceptions import ClientError

        where = self.uri(key) if key else self.root_uri
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            if code == "NoSuchBucket" or (code in ("404", "NotFound") and key is None):
                return StorageError(f"S3 bucket {self.bucket!r} does not exist ({where})")
            if code in ("NoSuchKey", "404", "NotFound"):
                if key is not None and self._bucket_missing():
                    return StorageError(f"S3 bucket {self.bucket!r} does not exist ({where})")
                return MissingObjectError(f"no such object: {where}")
            if code in ("AccessDenied", "403", "Forbidden"):
                return StorageError(f"access denied to {where}")
            return StorageError(f"S3 error {code} on {where}: {err.get('Message', exc)}")
        if "NoSuchBucket" in str(exc):  # boto3's managed transfer wraps the ClientError
            return StorageError(f"S3 bucket {self.bucket!r} does not exist ({where})")
        return StorageError(f"S3 request for {where} failed: {exc}")

    def _bucket_missing(self) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            return str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchBucket", "NotFound")
        return False

    def list_keys(self, prefix: str = "") -> list[str]:
        if prefix:
            validate_key(prefix, allow_empty=True)
        base = f"{self.prefix}/" if self.prefix else ""
        keys: list[str] = []
        with self._call(None):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=base + prefix):
                keys.extend(obj["Key"][len(base):] for obj in page.get("Contents", []))
        return sorted(keys)

    @contextmanager
    def _call(self, key: str | None) -> Iterator[None]:
        """Errors of the boto3 calls inside as a :class:`StorageError` naming the URI (ours pass through)."""
        try:
            yield
        except StorageError:
            raise
        except Exception as exc:
            raise self._translate(exc, key) from exc

    def read_bytes(self, key: str) -> bytes:
        with self._call(key):
            return self.client.get_object(Bucket=self.bucket, Key=self._full(key))["Body"].read()

    def read_buffer(self, key: str) -> bytearray:
        """GetObject streamed into a ``bytearray`` of the object's ``ContentLength`` (no second copy)."""
        with self._call(key):
            resp = self.client.get_object(Bucket=self.bucket, Key=self._full(key))
            size = int(resp.get("ContentLength") or 0)
            buf = bytearray(size)
            got = _fill(resp["Body"], memoryview(buf))
            if got != size or resp["Body"].read(1):
                raise StorageError(f"{self.uri(key)}: read {got} bytes, GetObject announced {size}")
            return buf

    def read_range(self, key: str, start: int, length: int) -> bytes:
        self._check_range(key, start, length)
        if length == 0:
            return b""
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self._full(key),
                                          Range=f"bytes={start}-{start + length - 1}")
            return resp["Body"].read()
        except InvalidKeyError:
            raise
        except Exception as exc:
            from botocore.exceptions import ClientError

            if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return b""  # start beyond the end: nothing there, as a local read would say
            raise self._translate(exc, key) from exc

    def write_bytes(self, key: str, data: bytes) -> None:
        with self._call(key):
            self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data)

    def upload_file(self, local_path: str | os.PathLike[str], key: str) -> None:
        src = Path(local_path)
        if not src.is_file():
            raise MissingObjectError(f"no such local file to upload: {src}")
        with self._call(key):
            self.client.upload_file(str(src), self.bucket, self._full(key))

    def download_file(self, key: str, local_path: str | os.PathLike[str]) -> None:
        full = self._full(key)
        with replacing(Path(local_path)) as tmp, self._call(key):
            self.client.download_file(self.bucket, full, tmp)

    def exists(self, key: str) -> bool:
        try:
            with self._call(key):
                self.client.head_object(Bucket=self.bucket, Key=self._full(key))
            return True
        except MissingObjectError:
            return False

    def delete(self, key: str) -> None:
        with self._call(key):
            self.client.delete_object(Bucket=self.bucket, Key=self._full(key))

    def size(self, key: str) -> int:
        with self._call(key):
            return int(self.client.head_object(Bucket=self.bucket, Key=self._full(key))["ContentLength"])


def open_storage(uri: str | os.PathLike[str], s3_client: Any = None, endpoint_url: str | None = None) -> Storage:
    """Open a local folder (a path or ``file://`` URI) or ``s3://bucket/prefix``; lazy (nothing is
    created or contacted until the first operation)."""
    if isinstance(uri, Storage):
        return uri
    text = os.fspath(uri)
    if text.startswith("s3://"):
        bucket, prefix = parse_s3_uri(text)
        return S3Storage(bucket, prefix, client=s3_client, endpoint_url=endpoint_url)
    if text.startswith("file://"):
        text = text[len("file://"):]
    if "://" in text:
        raise StorageError(f"unsupported storage URI {text!r} (use a local path or s3://bucket/prefix)")
    return LocalStorage(text)
