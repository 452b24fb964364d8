"""Bytes a ledger keeps per task: the retained vector over its dense int64 size, mask bits.

A SIFT vector is zero wherever its sign disagreed with v (about half of the
entries) and its mask is a function of it, so neither needs a dense int64 or
a byte per entry. This measures the files the current code writes, as found
in the folder (vectors/<id>.safetensors, masks/<id>.safetensors).
"""

from __future__ import annotations

import statistics
import struct
from pathlib import Path

from benchmarks.common import Figure, Workspace, trainable_parameters


def figures(work: Workspace, model: str = "tiny", tasks: int = 20) -> list[Figure]:
    built = work.ledger(model, tasks)
    params = trainable_parameters(work.base(model))
    vectors = [p.stat().st_size for p in sorted((built.root / "vectors").glob("*.safetensors"))]
    mask_files = sorted((built.root / "masks").glob("*.safetensors"))
    masks = [p.stat().st_size for p in mask_files]
    payloads = [_payload(p) for p in mask_files]
    vector_bytes = statistics.median(vectors) if vectors else None
    mask_bytes = statistics.median(masks) if masks else None
    payload = statistics.median(payloads) if payloads else None
    return [
        Figure(
            f"retained_bytes_over_dense_{model}",
            None if vector_bytes is None else vector_bytes / (params * 8),
            "<= 0.5",
            f"median size of vectors/<id>.safetensors over trainable params x 8 "
            f"({params:,} params), {len(vectors)} SIFT tasks",
            {"vector_file_bytes": vector_bytes, "dense_int64_bytes": params * 8},
        ),
        Figure(
            f"mask_payload_bits_per_param_{model}",
            None if payload is None else payload * 8 / params,
            "<= 1.001",
            "median tensor data of masks/<id>.safetensors in bits, per trainable parameter: "
            "1 bit each, every tensor padded to a whole byte (< 8 bits a tensor); the header "
            "(tensor names, a constant per model) is in file_bits_per_param",
            {
                "mask_file_bytes": mask_bytes,
                "mask_data_bytes": payload,
                "file_bits_per_param": None if mask_bytes is None else mask_bytes * 8 / params,
            },
        ),
    ]


def _payload(path: Path) -> int:
    """The file's tensor data: what is left after the 8-byte length and the JSON header."""
    with path.open("rb") as handle:
        (header,) = struct.unpack("<Q", handle.read(8))
    return path.stat().st_size - 8 - int(header)
