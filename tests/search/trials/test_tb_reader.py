"""EventTail: incremental, framing-aware reads of event files written while we read them."""

from __future__ import annotations

import io
import math
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.compat.proto import types_pb2
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.compat.proto.tensor_pb2 import TensorProto
from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as tb_crc
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.summary.writer.record_writer import RecordWriter

from automl import tags
from automl.search.trials.tb_reader import EventTail, read_scalars
from automl.search.trials.tfrecord import masked_crc32c


def scalar_event(tag: str, step: int, value: float) -> Event:
    """The event torch's SummaryWriter.add_scalar (and the trial worker) writes."""
    summary = Summary(value=[Summary.Value(tag=tag, simple_value=value)])
    return Event(summary=summary, step=step, wall_time=1.0)


def write(writer: EventFileWriter, tag: str, points: list[tuple[int, float]]) -> None:
    for step, value in points:
        writer.add_event(scalar_event(tag, step, value))
    writer.flush()


def framed(event: Event) -> bytes:
    """One TFRecord as TensorBoard's own RecordWriter frames it."""
    buffer = io.BytesIO()
    RecordWriter(buffer).write(event.SerializeToString())
    return buffer.getvalue()


@pytest.fixture
def writer(tmp_path: Path):
    w = EventFileWriter(str(tmp_path))
    yield w
    w.close()


def test_poll_returns_only_what_was_appended(tmp_path: Path, writer: EventFileWriter) -> None:
    tail = EventTail(tmp_path)
    assert tail.poll() == {}
    write(writer, tags.SCORE, [(10, 0.5), (20, 0.75)])
    write(writer, tags.SUCCESS_RATE, [(10, 0.25)])
    assert tail.poll() == {tags.SCORE: [(10, 0.5), (20, 0.75)], tags.SUCCESS_RATE: [(10, 0.25)]}
    assert tail.poll() == {}
    write(writer, tags.SCORE, [(30, 1.0)])
    assert tail.poll() == {tags.SCORE: [(30, 1.0)]}
    assert tail.series[tags.SCORE] == [(10, 0.5), (20, 0.75), (30, 1.0)]
    assert tail.last(tags.SCORE) == (30, 1.0)
    assert tail.last(tags.RETURN) is None


def test_missing_folder_reads_nothing(tmp_path: Path) -> None:
    assert EventTail(tmp_path / "not_yet").poll() == {}


@pytest.mark.parametrize("cut", [1, 8, 11, 12, 13, 20, -4, -1])
def test_half_written_record_is_held_until_complete(tmp_path: Path, cut: int) -> None:
    whole = framed(scalar_event(tags.SCORE, 7, 0.5))
    path = tmp_path / "events.out.tfevents.1.host.1.0"
    path.write_bytes(framed(scalar_event(tags.SCORE, 6, 0.25)) + whole[:cut])
    tail = EventTail(tmp_path)
    assert tail.poll() == {tags.SCORE: [(6, 0.25)]}
    assert tail.poll() == {}
    with path.open("ab") as handle:
        handle.write(whole[cut:])
    assert tail.poll() == {tags.SCORE: [(7, 0.5)]}
    assert tail.bytes_read == path.stat().st_size  # the partial record was kept, not re-read


def test_file_appearing_later_is_picked_up(tmp_path: Path) -> None:
    first = tmp_path / "events.out.tfevents.1.host.1.0"
    first.write_bytes(framed(scalar_event(tags.SCORE, 1, 0.5)))
    tail = EventTail(tmp_path)
    assert tail.poll() == {tags.SCORE: [(1, 0.5)]}
    (tmp_path / "events.out.tfevents.2.host.1.0").write_bytes(
        framed(scalar_event(tags.SCORE, 2, 0.75))
    )
    with first.open("ab") as handle:
        handle.write(framed(scalar_event(tags.RETURN, 1, 3.0)))
    assert tail.poll() == {tags.RETURN: [(1, 3.0)], tags.SCORE: [(2, 0.75)]}


def test_nan_comes_through(tmp_path: Path, writer: EventFileWriter) -> None:
    write(writer, tags.SCORE, [(1, 0.5), (2, math.nan)])
    (step, value), = EventTail(tmp_path).poll()[tags.SCORE][1:]
    assert step == 2 and math.isnan(value)


def test_poll_cost_does_not_grow_with_file_size(tmp_path: Path, writer: EventFileWriter) -> None:
    write(writer, tags.SCORE, [(step, 0.5) for step in range(2000)])
    tail = EventTail(tmp_path)
    assert len(tail.poll()[tags.SCORE]) == 2000
    big = tail.bytes_read
    for step in range(2000, 2005):
        before = tail.bytes_read
        write(writer, tags.SCORE, [(step, 0.5)])
        assert tail.poll() == {tags.SCORE: [(step, 0.5)]}
        assert tail.bytes_read - before < 100 < big // 100  # one record, not the file
    before = tail.bytes_read
    tail.poll()
    assert tail.bytes_read == before


def tensor_value(tag: str, tensor: TensorProto, plugin: str | None) -> Summary.Value:
    value = Summary.Value(tag=tag, tensor=tensor)
    if plugin is not None:
        value.metadata.CopyFrom(SummaryMetadata(plugin_data={"plugin_name": plugin}))
    return value


def test_tensor_scalars_are_read_and_other_tensors_skipped(tmp_path: Path) -> None:
    scalar_shape = TensorShapeProto()
    vector_shape = TensorShapeProto(dim=[TensorShapeProto.Dim(size=2)])
    values = [
        tensor_value("float_val", TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.5],
                                              tensor_shape=scalar_shape), "scalars"),
        tensor_value("content", TensorProto(dtype=types_pb2.DT_DOUBLE, tensor_shape=scalar_shape,
                                            tensor_content=struct.pack("<d", 2.25)), None),
        tensor_value("histo", TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.0],
                                          tensor_shape=scalar_shape), "histograms"),
        tensor_value("vector", TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.0, 2.0],
                                           tensor_shape=vector_shape), "scalars"),
        tensor_value("text", TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"hi"],
                                         tensor_shape=scalar_shape), None),
    ]
    first = Event(step=3, summary=Summary(value=values))
    # Metadata comes with a tag's first event only: later events of "histo" must still be skipped.
    later = Event(step=4, summary=Summary(value=[
        Summary.Value(tag="histo", tensor=TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[2.0])),
        Summary.Value(tag="float_val", tensor=TensorProto(dtype=types_pb2.DT_FLOAT,
                                                          float_val=[0.5])),
    ]))
    (tmp_path / "events.out.tfevents.1.host.1.0").write_bytes(framed(first) + framed(later))
    assert read_scalars(tmp_path) == {"float_val": [(3, 1.5), (4, 0.5)], "content": [(3, 2.25)]}


def test_corrupt_record_stops_that_file_only(tmp_path: Path, caplog) -> None:
    good, bad = framed(scalar_event("a", 1, 1.0)), bytearray(framed(scalar_event("a", 2, 2.0)))
    bad[-6] ^= 0xFF  # a payload byte: the data checksum no longer matches
    broken = tmp_path / "events.out.tfevents.1.host.1.0"
    broken.write_bytes(good + bytes(bad) + good)
    (tmp_path / "events.out.tfevents.2.host.1.0").write_bytes(framed(scalar_event("b", 1, 5.0)))
    tail = EventTail(tmp_path)
    assert tail.poll() == {"a": [(1, 1.0)], "b": [(1, 5.0)]}
    assert list(tail.broken) == [broken]
    assert "checksum" in caplog.text
    # Without the payload check the flipped byte goes unnoticed: a wrong value, read on.
    unchecked = EventTail(tmp_path, verify_data=False).poll()["a"]
    assert [step for step, _ in unchecked] == [1, 2, 1] and unchecked[1][1] != 2.0


@pytest.mark.parametrize("data", [b"", b"a", b"\x00" * 8, bytes(range(256)) * 3])
def test_crc_matches_tensorboard(data: bytes) -> None:
    assert masked_crc32c(data) == tb_crc(data)


def test_importing_the_reader_pulls_in_no_heavy_framework() -> None:
    heavy = ("torch", "tensorflow", "skrl", "numpy")
    code = f"import sys, automl.search.trials.tb_reader; print(sorted(set({heavy!r}) & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
