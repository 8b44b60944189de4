"""Random hex tokens cut from buffered OS randomness."""

from __future__ import annotations

import os
import re

import pytest

from signaling.sip import tokens
from signaling.sip.dialog import new_branch, new_tag


def test_tokens_are_hex_of_requested_length() -> None:
    for length in (1, 8, 12, 16, 20, 2 * tokens._BLOCK_BYTES):
        token = tokens.random_hex(length)
        assert re.fullmatch(f"[0-9a-f]{{{length}}}", token)


def test_tag_and_branch_formats() -> None:
    assert re.fullmatch("[0-9a-f]{12}", new_tag())
    assert re.fullmatch("z9hG4bK[0-9a-f]{16}", new_branch())


def test_tokens_not_repeated_across_blocks() -> None:
    # Three blocks' worth of 16-digit tokens, so that the draws span two refills.
    count = 3 * 2 * tokens._BLOCK_BYTES // 16
    drawn = [tokens.random_hex(16) for _ in range(count)]
    assert len(set(drawn)) == count


def test_digits_cover_hex_alphabet_evenly() -> None:
    digits = "".join(tokens.random_hex(2 * tokens._BLOCK_BYTES) for _ in range(4))
    counts = [digits.count(digit) for digit in "0123456789abcdef"]
    # 2,048 expected per digit (sigma 44), so these bounds are about 8 sigma away.
    assert min(counts) > 1_700
    assert max(counts) < 2_400


@pytest.mark.parametrize("length", [0, -1, 2 * tokens._BLOCK_BYTES + 1])
def test_invalid_length_raises(length: int) -> None:
    with pytest.raises(ValueError, match="token length"):
        tokens.random_hex(length)


def test_forked_child_draws_other_tokens() -> None:
    tokens.random_hex(1)  # a block is buffered in the parent
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        os.write(write_end, tokens.random_hex(32).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child_token = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(child_token) == 32
    assert child_token != tokens.random_hex(32)


def test_random_bytes_of_requested_length() -> None:
    for length in (1, 16, tokens._BLOCK_BYTES):
        assert len(tokens.random_bytes(length)) == length


def test_random_bytes_not_repeated_across_blocks() -> None:
    # Three blocks' worth of 16-byte draws, so that the draws span two refills.
    count = 3 * tokens._BLOCK_BYTES // 16
    drawn = [tokens.random_bytes(16) for _ in range(count)]
    assert len(set(drawn)) == count


@pytest.mark.parametrize("length", [0, -1, tokens._BLOCK_BYTES + 1])
def test_random_bytes_invalid_length_raises(length: int) -> None:
    with pytest.raises(ValueError, match="token length"):
        tokens.random_bytes(length)


def test_forked_child_draws_other_bytes() -> None:
    tokens.random_bytes(1)  # a block is buffered in the parent
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        os.write(write_end, tokens.random_bytes(16))
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child_bytes = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(child_bytes) == 16
    assert child_bytes != tokens.random_bytes(16)
