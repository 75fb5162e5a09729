"""Every rule and side effect of the identity server. No Flask request objects in here."""
