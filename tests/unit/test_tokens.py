"""tokens.uuid4_hex: the text of ``uuid.uuid4().hex`` without importing uuid."""

import uuid

from qcgflow.runtime.tokens import uuid4_hex


def test_it_is_the_hex_of_a_version_4_rfc_4122_uuid():
    for _ in range(2000):
        text = uuid4_hex()
        parsed = uuid.UUID(hex=text)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert parsed.hex == text and len(text) == 32


def test_the_random_bits_vary_in_every_position():
    tokens = [uuid4_hex() for _ in range(500)]
    assert len(set(tokens)) == len(tokens)
    for position in range(32):
        seen = {token[position] for token in tokens}
        if position == 12:  # the version digit
            assert seen == {"4"}
        elif position == 16:  # the variant's two top bits, then two random ones
            assert seen <= set("89ab") and len(seen) > 1
        else:
            assert len(seen) > 8, position  # 16 hex digits, 500 draws
