"""A seeded mutation engine for fuzzing the protocol parsers without hypothesis.

Hypothesis shrinks and stores examples, which costs about a millisecond per
input; these loops cost microseconds, so a CI run can feed each parser
100,000 inputs. Each input is a corpus item with a few random mutations:
byte flips, insertions of interesting bytes and tokens, deletions,
duplicated slices and splices with another item. The seed and input index
of a failure are enough to rebuild the input.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence

INPUTS = int(os.environ.get("FUZZ_INPUTS", "100000"))
SEED = int(os.environ.get("FUZZ_SEED", "4475"))

INTERESTING = [
    b"\x00", b"\xff", b"\r\n", b"\r\n\r\n", b"\n", b" ", b"\t", b":", b";", b",", b"=", b'"',
    b"\\", b"<", b">", b"@", b"[", b"]", b"%", b"0", b"-1", b"4294967296", b"65536",
    b"99999999999999999999", b"SIP/2.0", b"Content-Length: ", b"v=0", b"m=audio ", b"a=",
    b"\xc3\x28", b"\xe2\x80\x8b", b"{", b"}", b"null", b"[]",
]  # fmt: skip


def mutate(data: bytes, corpus: Sequence[bytes], rng: random.Random) -> bytes:
    """Return `data` with one to eight random mutations applied."""
    buffer = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        choice = rng.randrange(6)
        position = rng.randint(0, len(buffer))
        if choice == 0 and buffer:
            index = rng.randrange(len(buffer))
            buffer[index] ^= 1 << rng.randrange(8)
        elif choice == 1:
            buffer[position:position] = rng.choice(INTERESTING)
        elif choice == 2 and buffer:
            end = min(len(buffer), position + rng.randint(1, 16))
            del buffer[position:end]
        elif choice == 3 and buffer:
            start = rng.randrange(len(buffer))
            piece = buffer[start : start + rng.randint(1, 64)]
            buffer[position:position] = piece * rng.randint(1, 4)
        elif choice == 4:
            other = rng.choice(corpus)
            cut = rng.randint(0, len(other))
            buffer = buffer[:position] + bytearray(other[cut:])
        else:
            buffer[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(buffer)


def inputs(corpus: Sequence[bytes], count: int = INPUTS, seed: int = SEED) -> list[bytes]:
    """Build `count` inputs: every tenth a corpus item as is, the rest mutated."""
    rng = random.Random(seed)
    built = []
    for index in range(count):
        item = rng.choice(corpus)
        built.append(item if index % 10 == 0 else mutate(item, corpus, rng))
    return built
