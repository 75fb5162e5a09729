"""Admin commands given hostile or impossible input fail with a message and change nothing."""

import pytest


@pytest.mark.parametrize(
    "name",
    [
        "evil\nFAKEID  admin  read  2020-01-01T00:00:00+00:00",  # a forged `clients list` line
        "red\x1b[31malert",  # a terminal escape sequence
        "abc\u202edcba",  # a bidi override that reverses what the admin reads
        "n" * 201,  # longer than the column
    ],
)
def test_a_client_name_that_could_forge_the_listing_or_not_fit_is_refused(runner, name):
    result = runner.invoke(args=["clients", "create", name, "--scope", "read"])
    assert result.exit_code != 0
    assert "client_secret" not in result.output
    listed = runner.invoke(args=["clients", "list"])
    assert listed.exit_code == 0
    assert listed.output == ""


def test_an_ordinary_client_name_is_still_accepted(runner):
    result = runner.invoke(args=["clients", "create", "Billing (prod) ü"])
    assert result.exit_code == 0, result.output
    assert "client_secret: " in result.output


def test_client_ids_never_look_like_options_and_delete_takes_one_that_does(app, runner):
    from idp.clock import utcnow
    from idp.extensions import db
    from idp.services.clients import create_client

    with app.app_context():
        ids = [create_client(f"svc{n}", "read", utcnow()).client.client_id for n in range(20)]
        assert not any(client_id.startswith("-") for client_id in ids)
        # A client made before ids became hex may start with "-": delete must still take it.
        legacy = create_client("legacy", "read", utcnow()).client
        legacy.client_id = "-bLegacyId"
        db.session.commit()
    result = runner.invoke(args=["clients", "delete", "-bLegacyId"])
    assert result.exit_code == 0, result.output
    assert "-bLegacyId deleted" in result.output
