"""Independent reader of TensorBoard event files, for tests/io/test_tensorboard.cpp.

Usage: read_tfevents.py EVENT_FILE PROTO_FILE WORK_DIR
Compiles PROTO_FILE with protoc --python_out into WORK_DIR, reads every record of EVENT_FILE
(uint64 length, masked CRC-32C of the length, data, masked CRC-32C of the data), verifies both
CRCs with a bit-by-bit CRC-32C written here (not the writer's table), decodes each record as an
Event with Python's protobuf runtime and prints the events as JSON lines:
  {"step": S, "wall_time": T, "file_version": "..."}
  {"step": S, "wall_time": T, "scalars": {tag: value}, "images": {tag: {width, height,
   colorspace, md5, png_signature_ok}}}
Exits 1 with a message on a CRC mismatch, a truncated record or trailing bytes.
"""
import hashlib
import importlib
import json
import os
import struct
import subprocess
import sys


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def main() -> int:
    event_file, proto_file, work_dir = sys.argv[1:4]
    # Self-check of the CRC against the published check value of CRC-32C.
    assert crc32c(b"123456789") == 0xE3069283
    os.makedirs(work_dir, exist_ok=True)
    subprocess.run(["protoc", "--python_out=" + work_dir, "-I", os.path.dirname(proto_file),
                    proto_file], check=True)
    sys.path.insert(0, work_dir)
    module = importlib.import_module(os.path.splitext(os.path.basename(proto_file))[0] + "_pb2")
    data = open(event_file, "rb").read()
    pos = 0
    while pos < len(data):
        if pos + 12 > len(data):
            print(f"truncated header at byte {pos}", file=sys.stderr)
            return 1
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        if masked(crc32c(header)) != length_crc:
            print(f"length CRC mismatch at byte {pos}", file=sys.stderr)
            return 1
        body = data[pos + 12:pos + 12 + length]
        if len(body) != length or pos + 16 + length > len(data):
            print(f"truncated record at byte {pos}", file=sys.stderr)
            return 1
        (data_crc,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
        if masked(crc32c(body)) != data_crc:
            print(f"data CRC mismatch at byte {pos}", file=sys.stderr)
            return 1
        pos += 16 + length
        event = module.Event()
        event.ParseFromString(body)
        out = {"step": event.step, "wall_time": event.wall_time}
        what = event.WhichOneof("what")
        if what == "file_version":
            out["file_version"] = event.file_version
        elif what == "summary":
            scalars, images = {}, {}
            for value in event.summary.value:
                kind = value.WhichOneof("value")
                if kind == "simple_value":
                    scalars[value.tag] = value.simple_value
                elif kind == "image":
                    png = value.image.encoded_image_string
                    images[value.tag] = {
                        "width": value.image.width, "height": value.image.height,
                        "colorspace": value.image.colorspace,
                        "md5": hashlib.md5(png).hexdigest(),
                        "png_signature_ok": png[:8] == b"\x89PNG\r\n\x1a\n"}
            out["scalars"] = scalars
            out["images"] = images
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
