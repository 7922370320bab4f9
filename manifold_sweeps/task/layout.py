"""Token layout of the marker-based modular-arithmetic task.

A sequence has T = task.seq_len positions. m marker tokens sit at positions drawn from
1 .. L-2, each followed directly by its value token, with consecutive markers at least 2 apart
(non-adjacent: marker, value, marker, value is the tightest packing). L = T-1 when
readout=query (position T-1 holds the query token) and L = T when readout=last. Every other
position holds a distractor. The label is the sum (op=add) or product (op=mul) of the m values mod C.

Token ids, for vocab size V and modulus C:

    0 .. C-1                values
    C .. C+K-1              markers: K = max_markers (indexed) or 1 (shared)
    C+K                     query token (readout=query only)
    first_distractor .. V-1 distractors, drawn uniformly; never a value, marker or query token

K reserves a marker token for every m that fits in the sequence, so the vocabulary (and the
model's shapes) does not depend on which m a curriculum happens to use. Unused marker tokens never
appear, which avoids the paper's code's leak of unused markers into the distractors.

op=mul draws values from 1..C-1: a zero value would make the product 0 whatever the other terms
are, a shortcut that needs no routing. With composite C the product still collapses to 0 often
(2*4 = 0 mod 8), which is why the modmul option uses a prime modulus.
"""

from __future__ import annotations

from dataclasses import dataclass


def body_length(seq_len: int, readout: str) -> int:
    """Positions available to markers and values: the query token takes the last one."""
    return seq_len - 1 if readout == "query" else seq_len


def max_markers(seq_len: int, readout: str) -> int:
    """Largest m whose markers and values fit at positions 1..L-1 with markers non-adjacent."""
    slots = body_length(seq_len, readout) - 2  # marker positions 1..L-2
    return max(0, (slots + 1) // 2)


@dataclass(frozen=True)
class TokenLayout:
    seq_len: int
    modulus: int
    vocab_size: int
    op: str  # "add" | "mul"
    marker_scheme: str  # "indexed" | "shared"
    readout: str  # "query" | "last"

    @property
    def max_markers(self) -> int:
        return max_markers(self.seq_len, self.readout)

    @property
    def n_marker_tokens(self) -> int:
        return self.max_markers if self.marker_scheme == "indexed" else 1

    @property
    def first_marker(self) -> int:
        return self.modulus

    @property
    def query_token(self) -> int | None:
        return self.modulus + self.n_marker_tokens if self.readout == "query" else None

    @property
    def first_distractor(self) -> int:
        return self.modulus + self.n_marker_tokens + (1 if self.readout == "query" else 0)

    @property
    def n_distractors(self) -> int:
        return self.vocab_size - self.first_distractor

    @property
    def min_value(self) -> int:
        return 1 if self.op == "mul" else 0

    @property
    def body_length(self) -> int:
        return body_length(self.seq_len, self.readout)

    @classmethod
    def from_config(cls, task) -> "TokenLayout":
        return cls(
            seq_len=int(task.seq_len),
            modulus=int(task.modulus),
            vocab_size=int(task.vocab_size),
            op=_name(task.op),
            marker_scheme=_name(task.marker_scheme),
            readout=_name(task.readout),
        )


def _name(value) -> str:
    """Enum members and plain strings alike (configs loaded from YAML without the schema)."""
    return getattr(value, "name", value)
