"""The hosted pages: sign-in, sign-up, reset, consent, sign-out (their surface: surface.py).

Nothing is imported here: idp.oauth's browser endpoints use the pages' rendering and forms,
and the pages' surface holds those endpoints, so importing either first must not load the other.
"""
