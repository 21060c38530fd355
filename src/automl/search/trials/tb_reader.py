"""Incremental reader of a run's TensorBoard event files, polled by the orchestrator while it runs.

Only `tensorboard.compat.proto` is imported: it pulls in protobuf, not torch, tensorflow or numpy,
so the main process stays light. Event files are TFRecord files, appended to while we read them.
We split the records ourselves rather than use TensorBoard's `event_file_loader`: it cannot tell a
corrupt record from one still being written, and it imports numpy (docs/architecture.md, "Reading
event files").
"""

from __future__ import annotations

import logging
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.message import DecodeError
from tensorboard.compat.proto import event_pb2, types_pb2
from tensorboard.compat.proto.tensor_pb2 import TensorProto

from automl.search.trials.tfrecord import split_records

log = logging.getLogger(__name__)

EVENT_FILE_GLOB = "events.out.tfevents.*"
"""Names TensorBoard writers give their files; the timestamp in the name makes them sort by age."""

Series = dict[str, list[tuple[int, float]]]
"""Scalars by tag: [(step, value)] in the order they were written."""

_SCALAR_PLUGINS = ("", "scalars")
"""A tensor-valued summary is a scalar only under these plugins (others: histograms, text, ...)."""




_TENSOR_FORMATS: dict[int, tuple[str, str]] = {
    types_pb2.DT_FLOAT: ("<f", "float_val"),
    types_pb2.DT_DOUBLE: ("<d", "double_val"),
    types_pb2.DT_INT32: ("<i", "int_val"),
    types_pb2.DT_INT64: ("<q", "int64_val"),
}
"""dtype -> (struct format of `tensor_content`, repeated field used when the content is empty)."""


def tensor_scalar(tensor: TensorProto) -> float | None:
    """The value of a one-element numeric tensor (TF2-style scalar summary); None otherwise."""
    if math.prod(dim.size for dim in tensor.tensor_shape.dim) != 1:
        return None
    fmt = _TENSOR_FORMATS.get(tensor.dtype)
    if fmt is None:
        return None
    struct_format, field_name = fmt
    if tensor.tensor_content:
        if len(tensor.tensor_content) != struct.calcsize(struct_format):
            return None
        return float(struct.unpack(struct_format, tensor.tensor_content)[0])
    values = getattr(tensor, field_name)
    return float(values[0]) if values else None


@dataclass
class _FileTail:
    """Read position in one event file, plus the bytes of a record not yet complete."""

    path: Path
    offset: int = 0
    """Bytes read from the file so far (consumed records + `pending`)."""
    pending: bytes = b""
    broken: str | None = None
    """Why the file is no longer read (a checksum mismatch), or None."""
    plugins: dict[str, str] = field(default_factory=dict)
    """Plugin of each tag, from the first event that carried its metadata."""


class EventTail:
    """Follows the event files of one `tb/` folder; each `poll` returns only the new scalars.

    Each poll reads only the bytes appended since the previous one (`bytes_read` counts them), so
    its cost does not grow with the file. A record still being written is kept until it is whole.
    Files that appear later are picked up. A file with a checksum mismatch is read up to the bad
    record and then skipped, with a warning (`broken` says which and why): past a bad length the
    framing is lost. Event files are assumed append-only, as every TensorBoard writer makes them.
    """

    def __init__(self, folder: Path, *, verify_data: bool = True) -> None:
        self.folder = Path(folder)
        self.verify_data = verify_data
        """Check each record's payload checksum too (the length checksum is always checked)."""
        self.series: Series = {}
        """All scalars read so far, by tag."""
        self.bytes_read = 0
        """Total bytes read from disk: grows with what was written, not with how often we poll."""
        self._tails: dict[Path, _FileTail] = {}

    @property
    def broken(self) -> dict[Path, str]:
        """Files no longer read, with the reason."""
        return {p: t.broken for p, t in self._tails.items() if t.broken is not None}

    def poll(self) -> Series:
        """Scalars appended since the previous poll, by tag; an empty dict when there are none."""
        new: Series = {}
        # A folder not created yet (the trial is starting) simply has no files.
        for path in sorted(self.folder.glob(EVENT_FILE_GLOB)):
            tail = self._tails.setdefault(path, _FileTail(path))
            if tail.broken is None:
                self._read_file(tail, new)
        for tag, points in new.items():
            self.series.setdefault(tag, []).extend(points)
        return new

    def last(self, tag: str) -> tuple[int, float] | None:
        """The latest (step, value) of `tag` read so far, or None."""
        points = self.series.get(tag)
        return points[-1] if points else None

    def _read_file(self, tail: _FileTail, new: Series) -> None:
        try:
            with tail.path.open("rb") as handle:
                handle.seek(tail.offset)
                chunk = handle.read()
        except FileNotFoundError:  # removed between glob and open: nothing to read
            return
        tail.offset += len(chunk)
        self.bytes_read += len(chunk)
        buffer = tail.pending + chunk if tail.pending else chunk
        records = split_records(buffer, verify_data=self.verify_data)
        tail.pending = buffer[records.used :]
        for payload in records.payloads:
            _add_scalars(payload, tail.plugins, new)
        if records.error is not None:
            # Offsets are relative to this read; report the position in the file.
            start = tail.offset - len(buffer)
            tail.broken = f"{records.error} in the record at byte {start + records.used}"
            tail.pending = b""
            log.warning("event file %s: %s; ignoring the rest of it", tail.path, tail.broken)


def _add_scalars(payload: bytes, plugins: dict[str, str], out: Series) -> None:
    """Append the scalars of one serialized Event to `out`."""
    try:
        event = event_pb2.Event.FromString(payload)
    except DecodeError:  # a checksummed record that is not an Event: not ours to read
        log.warning("skipping a record that is not a TensorBoard Event")
        return
    if event.WhichOneof("what") != "summary":
        return  # file_version, graph, session_log, ...
    for value in event.summary.value:
        if value.HasField("metadata"):
            plugins.setdefault(value.tag, value.metadata.plugin_data.plugin_name)
        kind = value.WhichOneof("value")
        if kind == "simple_value":
            scalar: float | None = value.simple_value
        elif kind == "tensor" and plugins.get(value.tag, "") in _SCALAR_PLUGINS:
            scalar = tensor_scalar(value.tensor)
        else:
            scalar = None
        if scalar is not None:
            out.setdefault(value.tag, []).append((event.step, float(scalar)))


def read_scalars(folder: Path, *, verify_data: bool = True) -> Series:
    """All scalars in a `tb/` folder, by tag, read once (analysis of finished runs)."""
    return EventTail(folder, verify_data=verify_data).poll()
