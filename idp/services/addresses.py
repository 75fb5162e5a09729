"""The key an email address is unique under: one account, whatever the spelling typed."""

from __future__ import annotations

import unicodedata


def canonical_email(email: str) -> str:
    """Return the key an address is unique under: NFKC, local part folded, domain lower-cased."""
    # Not the whole address case-folded: folding makes "ß" "ss" and a final sigma "ς" a sigma,
    # letters IDNA 2008 keeps apart (straße.de is xn--strae-oqa.de, not strasse.de), so two
    # owners' domains would share accounts. Lower-casing keeps them apart and still makes "ẞ"
    # "ß". Each character is lowered alone: str.lower() on a whole word makes its last "Σ" a
    # final sigma, where IDNA (and so the API's validator) makes every "Σ" a sigma (U+03C3).
    # Local parts are ASCII (no SMTPUTF8): folding them is lower-casing them.
    # migrations/versions/0006 holds a copy: a change here needs a migration of the stored keys.
    local, at, domain = unicodedata.normalize("NFKC", email).rpartition("@")
    return local.casefold() + at + "".join(character.lower() for character in domain)
