"""tf.train.Example parsing of hand-built records (TF's own files: tests/data/test_pretraining_tfrecords.py)."""

import pytest

from bertforge.errors import BertforgeError
from bertforge.formats.example_proto import parse_example
from bertforge.formats.protowire import encode_varint, length_delimited


def test_protobuf_merging_rules():
    """Valid protobuf TF never writes: repeated keys keep the last entry, lists of one kind concatenate,
    unknown fields of every wire type are skipped."""
    ints = length_delimited(3, length_delimited(1, encode_varint(1) + encode_varint(2)))
    more = length_delimited(3, b"\x08" + encode_varint(-5))
    unknown = b"\x20\x96\x01" + b"\x29" + bytes(8) + b"\x35" + bytes(4) + length_delimited(9, b"zz")

    def entry(name: bytes, feature: bytes) -> bytes:
        return length_delimited(1, length_delimited(1, name) + unknown + length_delimited(2, feature))

    features = entry(b"a", length_delimited(2, length_delimited(1, b"\x00\x00\x80?")))
    features += entry(b"a", ints + unknown + more) + entry(b"empty", b"")
    record = unknown + length_delimited(1, features + unknown)
    got = parse_example(record)
    assert got["a"].tolist() == [1, 2, -5]
    assert got["empty"].size == 0
    with pytest.raises(BertforgeError, match="byte"):
        parse_example(record[:-3])
