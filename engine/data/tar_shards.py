"""Tar shards in the WebDataset layout: scanned once into item references, read by offset.

A shard is a plain (uncompressed) ``.tar``; members that share a key (the member's path up
to the first dot of its file name, ``n01440764/x.JPEG`` -> key ``n01440764/x``) and follow
each other form one sample: an image (``jpg jpeg png webp bmp npz``) plus an optional
label, ``cls`` (a class index as text) or ``json`` (an object with an integer ``class``,
``cls`` or ``label`` field). Other members (``txt``, metadata) are not used.

Why references: the pipeline hands preprocess workers item *strings* (and a cluster run
sends them to nodes as strings), so the driver scans the shards' headers once (``tarfile``
seeks from header to header; only the small label members are read) and turns every
image member into a reference that names its bytes::

    /data/train-000003.tar#n01440764/x.JPEG@1536+110592:65
    shard                  member             offset size label (optional)

A worker resolves one with a single ``os.pread`` on a file descriptor it keeps open per
shard (:func:`read_member`): no extraction, no per-image ``open``. A shard's path must end
in ``.tar``; references keep it absolute, so any process on any node with the same mount
reads them.

Faults found by the scan become references too, ``SHARD#WHAT@!REASON``, which fail as
the item's error record naming the shard and the member: an unreadable or non-tar shard
(``<shard>``), a header that does not parse (``<header at byte N>``), a member whose data
runs past the end of the file, a shard cut short (``<end of archive>``: no end-of-archive
blocks; tarfile alone takes a damaged or missing header for the end of the archive). A
label member that does not parse is a warning; its sample runs unlabelled.
"""
from __future__ import annotations

import collections
import json
import os
import re
import tarfile
from dataclasses import dataclass, field

IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "bmp", "npz"})
LABEL_EXTENSIONS = ("cls", "json")
JSON_LABEL_FIELDS = ("class", "cls", "label")
OPEN_SHARDS = 64  # file descriptors a process keeps open, least recently used closed first
_BLOCK = 512

_REF = re.compile(r"^(?P<shard>.+?\.tar)#(?P<member>.+)@(?P<offset>\d+)\+(?P<size>\d+)(?::(?P<label>-?\d+))?$",
                  re.DOTALL)
_FAULT = re.compile(r"^(?P<shard>.+?\.tar)#(?P<member>.+?)@!(?P<reason>.*)$", re.DOTALL)


@dataclass(frozen=True)
class MemberRef:
    """One image member of a shard, or a fault the scan found there (``fault`` set)."""

    shard: str
    member: str
    offset: int = 0
    size: int = 0
    label: int | None = None
    fault: str | None = None

    @property
    def source(self) -> str:
        """``SHARD#MEMBER``: what a user reads in a results table or an error record."""
        return f"{self.shard}#{self.member}"

    @property
    def extension(self) -> str:
        return split_key(self.member)[1]

    def __str__(self) -> str:
        if self.fault is not None:
            return f"{self.source}@!{self.fault}"
        return f"{self.source}@{self.offset}+{self.size}" + ("" if self.label is None else f":{self.label}")


def parse_ref(item: str) -> MemberRef | None:
    """The member an item string names, or None for an ordinary file path."""
    if "#" not in item:
        return None
    m = _REF.match(item)
    if m:
        label = m["label"]
        return MemberRef(m["shard"], m["member"], int(m["offset"]), int(m["size"]),
                         None if label is None else int(label))
    m = _FAULT.match(item)
    return MemberRef(m["shard"], m["member"], fault=m["reason"]) if m else None


def source_name(item: str) -> str:
    """What names an item to a user: its path, or ``SHARD#MEMBER``."""
    ref = parse_ref(item)
    return item if ref is None else ref.source


def label_name(source: str) -> str:
    """What a label file or folder label matches in a ``source_name``: a shard member's name
    (``SHARD#MEMBER``), or the path."""
    shard, sep, member = source.partition(".tar#")
    return member if sep else source


def split_key(member: str) -> tuple[str, str]:
    """WebDataset's split of a member name: (key, extension in lower case); no dot: (name, '')."""
    folder, _, name = member.rpartition("/")
    stem, dot, ext = name.partition(".")
    return (f"{folder}/{stem}" if folder else stem), (ext.lower() if dot else "")


# ---- reading (any process) -----------------------------------------------------------
class MemberReadError(OSError):
    """A member's bytes could not be read; the message names the shard and member."""


_open: collections.OrderedDict[str, int] = collections.OrderedDict()
_open_pid = 0


def _descriptor(shard: str) -> int:
    """This process's descriptor for ``shard`` (a forked child opens its own)."""
    global _open_pid
    if _open_pid != os.getpid():
        _open.clear()
        _open_pid = os.getpid()
    fd = _open.get(shard)
    if fd is not None:
        _open.move_to_end(shard)
        return fd
    fd = os.open(shard, os.O_RDONLY)
    _open[shard] = fd
    if len(_open) > OPEN_SHARDS:
        os.close(_open.popitem(last=False)[1])
    return fd


def read_member(ref: MemberRef) -> bytes:
    """The member's bytes, by offset, from this process's open descriptor of its shard."""
    if ref.fault is not None:
        raise MemberReadError(f"{ref.source}: {ref.fault}")
    try:
        data = os.pread(_descriptor(ref.shard), ref.size, ref.offset)
    except OSError as e:
        raise MemberReadError(f"{ref.source}: cannot read the shard ({e.strerror or e})") from None
    if len(data) != ref.size:
        raise MemberReadError(f"{ref.source}: truncated shard (the member's {ref.size} bytes at byte {ref.offset} "
                              f"end past the end of the file)")
    return data


# ---- scanning (the driver) -----------------------------------------------------------
@dataclass
class ShardScan:
    """What one shard holds: its items in member order (faults included) and label warnings."""

    shard: str
    items: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def fault(self, member: str, reason: str) -> None:
        self.items.append(str(MemberRef(self.shard, member, fault=reason)))


def _parse_label(ext: str, data: bytes) -> int:
    text = data.decode("utf-8").strip()
    if ext == "cls":
        return int(text)
    obj = json.loads(text)
    for name in JSON_LABEL_FIELDS:
        if isinstance(obj, dict) and isinstance(obj.get(name), int) and not isinstance(obj.get(name), bool):
            return obj[name]
    raise ValueError(f"no integer {'/'.join(JSON_LABEL_FIELDS)} field")


class _Samples:
    """Groups consecutive members by key, as WebDataset does, into references."""

    def __init__(self, scan: ShardScan, fd: int):
        self.scan, self.fd = scan, fd
        self.key: str | None = None
        self.images: list[tarfile.TarInfo] = []
        self.label: int | None = None

    def add(self, info: tarfile.TarInfo) -> None:
        key, ext = split_key(info.name)
        if key != self.key:
            self.flush()
            self.key = key
        if ext in IMAGE_EXTENSIONS:
            self.images.append(info)
        elif ext in LABEL_EXTENSIONS and self.label is None:
            try:
                self.label = _parse_label(ext, os.pread(self.fd, info.size, info.offset_data))
            except (ValueError, UnicodeDecodeError) as e:
                self.scan.warnings.append(f"{self.scan.shard}#{info.name}: not a label ({e})")

    def flush(self) -> None:
        for info in self.images:
            self.scan.items.append(str(MemberRef(self.scan.shard, info.name, info.offset_data, info.size,
                                                 self.label)))
        self.images, self.label = [], None


def scan_shard(path: str) -> ShardScan:
    """Every sample of the shard at ``path`` as a reference, in member order (see the module docstring)."""
    shard = os.path.abspath(path)
    scan = ShardScan(shard)
    try:
        fd = os.open(shard, os.O_RDONLY)
    except OSError as e:
        scan.fault("<shard>", f"cannot open the shard ({e.strerror or e})")
        return scan
    try:
        _scan_members(scan, fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)
    return scan


def _scan_members(scan: ShardScan, fd: int, file_size: int) -> None:
    samples = _Samples(scan, fd)
    with os.fdopen(os.dup(fd), "rb") as f:
        try:
            tar = tarfile.open(fileobj=f, mode="r:")
        except tarfile.TarError as e:
            scan.fault("<shard>", f"not a readable tar file ({e})")
            return
        last_end = 0
        try:
            for info in tar:
                if not info.isfile():
                    continue
                if info.offset_data + info.size > file_size:
                    samples.flush()
                    scan.fault(info.name, f"truncated shard (the member's {info.size} bytes at byte "
                                          f"{info.offset_data} end past the end of the file, {file_size} bytes)")
                    return
                samples.add(info)
            samples.flush()
            last_end = tar.offset
        except tarfile.TarError as e:
            samples.flush()
            scan.fault(f"<header at byte {tar.offset}>", f"corrupt tar header ({e})")
            return
    _check_end(scan, fd, last_end, file_size)


def _check_end(scan: ShardScan, fd: int, end: int, file_size: int) -> None:
    """What follows the last member must be the end-of-archive blocks (zeros): tarfile stops
    quietly at a damaged header, or at a file cut short at a member's boundary."""
    position = end
    while position < file_size:
        chunk = os.pread(fd, min(1 << 20, file_size - position), position)
        if not chunk:
            break
        zeros = len(chunk) - len(chunk.lstrip(b"\0"))
        if zeros < len(chunk):
            at = position + zeros - zeros % _BLOCK
            reason = ("corrupt tar header (not a header, not the end of the archive)"
                      if file_size - at >= _BLOCK else "truncated shard (the file ends inside a header)")
            scan.fault(f"<header at byte {at}>", reason)
            return
        position += len(chunk)
    if file_size - end < 2 * _BLOCK:
        scan.fault("<end of archive>", f"truncated shard (no end-of-archive blocks after byte {end}: "
                                       "members may be missing)")
