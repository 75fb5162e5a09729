import pytest

from idp.services.passwords import PasswordService, password_policy_errors


@pytest.mark.parametrize(
    ("password", "ok"),
    [
        ("Zebra-Kite-42", True),
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


@pytest.mark.parametrize("password", ["Password1", "Qwerty123", "Iloveyou1", "Football1"])
def test_common_passwords_are_refused_whatever_their_case(password):
    assert "This password is too common." in password_policy_errors(password)


def test_a_common_password_in_full_width_letters_is_still_common():
    full_width = "".join(chr(ord(ch) + 0xFEE0) for ch in "Password1")
    assert full_width != "Password1"
    assert "This password is too common." in password_policy_errors(full_width)


@pytest.mark.parametrize(
    ("password", "email", "ok"),
    [
        ("Ada.Lovelace@Example.com1", "ada.lovelace@example.com", False),
        ("My-adalovelace-9X", "adalovelace@example.com", False),
        ("Bob1-secure-Pass", "bob@example.com", True),  # a 3-letter name part is too common
        ("Zebra-Kite-42", "ada@example.com", True),
    ],
)
def test_a_password_must_not_contain_the_email(password, email, ok):
    assert (password_policy_errors(password, email) == []) is ok


def test_concurrent_hashes_are_bounded(monkeypatch):
    import threading
    import time

    service = PasswordService(time_cost=1, memory_cost=1024, parallelism=1, max_concurrent=2)
    running = 0
    peak = 0
    lock = threading.Lock()
    real = service._hasher

    class CountingHasher:
        def hash(self, password):
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            time.sleep(0.05)
            with lock:
                running -= 1
            return real.hash(password)

    monkeypatch.setattr(service, "_hasher", CountingHasher())
    threads = [threading.Thread(target=service.hash, args=("Secret-123",)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak == 2


def test_hash_verify_and_rehash():
    weak = PasswordService(time_cost=1, memory_cost=1024, parallelism=1)
    stronger = PasswordService(time_cost=2, memory_cost=1024, parallelism=1)
    stored = weak.hash("Secret-123")
    assert stored.startswith("$argon2id$")
    assert weak.check(stored, "Secret-123").matched
    assert not weak.check(stored, "Secret-124").matched
    assert not weak.check("not a hash", "Secret-123").matched
    assert not weak.check(None, "Secret-123").matched
    assert not weak.needs_rehash(stored)
    assert stronger.needs_rehash(stored)
