"""The signed events of FORMAT.md §6 as typed, frozen records: what each write appends.

Pure data, apart from the I/O that stores them (as python-tuf keeps its metadata
models apart from storage). ``to_json`` gives exactly the fields §6 lists for
the kind, so a writer cannot append a field the format does not have, and a
test holds the field lists to the independent verifier's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar


@dataclass(frozen=True, kw_only=True)
class _Event:
    kind: ClassVar[str]
    seq: int
    time: str

    def to_json(self) -> dict[str, Any]:
        """The payload's fields (JCS-serialised by the store), ``kind`` first."""
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True, kw_only=True)
class InitEvent(_Event):
    kind: ClassVar[str] = "init"
    format: str
    base_digest: str
    base_files: dict[str, str]
    sign_seed: int
    scale_bits: int
    threads: int
    public_key: str
    retain_vectors: bool
    trainable: dict[str, list[int]]
    state_digest: str
    serving_rule: str


@dataclass(frozen=True, kw_only=True)
class AddEvent(_Event):
    kind: ClassVar[str] = "add"
    task_id: str
    method: str
    data_hash: str
    n_records: int
    spec: dict[str, Any]
    determinism: dict[str, Any]
    vector_digest: str
    mask_digest: str | None
    state_digest_before: str
    state_digest_after: str
    active_after: list[str]
    readds: list[dict[str, Any]] | None = None  # §6's one optional field: absent when None

    def to_json(self) -> dict[str, Any]:
        """Without ``readds`` unless this add knowingly brings deleted data back."""
        out = super().to_json()
        if self.readds is None:
            del out["readds"]
        return out


@dataclass(frozen=True, kw_only=True)
class UnlearnEvent(_Event):
    kind: ClassVar[str] = "unlearn"
    task_id: str
    data_hash: str  # with vector_digest, the tombstone: what may not come back unannounced
    vector_digest: str
    replayed_digest: str
    state_digest_before: str
    state_digest_after: str
    active_after: list[str]


@dataclass(frozen=True, kw_only=True)
class KeyRotationEvent(_Event):
    kind: ClassVar[str] = "key_rotation"
    old_public_key: str
    new_public_key: str
    new_key_signature: str


EVENT_TYPES: tuple[type[_Event], ...] = (InitEvent, AddEvent, UnlearnEvent, KeyRotationEvent)
