import pytest

from idp.services.passwords import PasswordService, password_policy_errors


@pytest.mark.parametrize(
    ("password", "ok"),
    [
        ("Abcdefg1", True),
        ("Ünïcödé1x", True),
        ("Abcdef1", False),
        ("abcdefg1", False),
        ("ABCDEFG1", False),
        ("Abcdefgh", False),
        ("A1" + "b" * 126, True),
        ("A1" + "b" * 127, False),
    ],
)
def test_policy(password, ok):
    assert (password_policy_errors(password) == []) is ok


def test_hash_verify_and_rehash():
    weak = PasswordService(time_cost=1, memory_cost=1024, parallelism=1)
    stronger = PasswordService(time_cost=2, memory_cost=1024, parallelism=1)
    stored = weak.hash("Secret-123")
    assert stored.startswith("$argon2id$")
    assert weak.verify(stored, "Secret-123")
    assert not weak.verify(stored, "Secret-124")
    assert not weak.verify("not a hash", "Secret-123")
    assert not weak.verify(None, "Secret-123")
    assert not weak.needs_rehash(stored)
    assert stronger.needs_rehash(stored)
