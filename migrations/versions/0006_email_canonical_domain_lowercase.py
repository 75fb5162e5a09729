"""users: the canonical address lower-cases its domain instead of case-folding it

Case folding made "ß" "ss" and a final sigma "ς" a sigma, so ada@straße.de and
ada@strasse.de, two domains under IDNA 2008, were one account. The key is now NFKC, the local
part case-folded and the domain lower-cased character by character
(idp.services.addresses.canonical_email). Only an address with a non-ASCII character can have a
new key; those rows are recomputed here, in batches. The old keys were coarser, so no two rows
should meet on a new key; if two would (a key written by hand), the upgrade stops before writing
anything and names them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 02:30:00

"""
import unicodedata

from alembic import op
import sqlalchemy as sa


revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BATCH_SIZE = 1000

users = sa.table(
    "users",
    sa.column("id", sa.Integer()),
    sa.column("email", sa.String(length=320)),
    sa.column("email_canonical", sa.String(length=320)),
)


# Copies, not imports: this revision must keep meaning what it meant when the app changes.
def domain_lowercased_key(email):
    """The key from this revision on (idp.services.addresses.canonical_email at 0006)."""
    local, at, domain = unicodedata.normalize("NFKC", email).rpartition("@")
    return local.casefold() + at + "".join(character.lower() for character in domain)


def case_folded_key(email):
    """The key before this revision."""
    return unicodedata.normalize("NFKC", email).casefold()


def upgrade():
    rekey(domain_lowercased_key, "0006")


def downgrade():
    rekey(case_folded_key, "0005")


def rekey(key_of, revision_name):
    """Recompute email_canonical with `key_of` for every address with a non-ASCII character."""
    connection = op.get_bind()
    changes = {}  # users.id -> new key
    last_id = None
    while True:
        query = sa.select(users.c.id, users.c.email, users.c.email_canonical)
        if last_id is not None:
            query = query.where(users.c.id > last_id)
        rows = connection.execute(query.order_by(users.c.id).limit(BATCH_SIZE)).all()
        if not rows:
            break
        last_id = rows[-1].id
        for row in rows:
            if row.email.isascii():
                continue  # folding and lower-casing agree on ASCII: the key stays
            key = key_of(row.email)
            if key != row.email_canonical:
                changes[row.id] = key
    refuse_collisions(connection, changes, revision_name)
    statement = (
        sa.update(users)
        .where(users.c.id == sa.bindparam("row_id"))
        .values(email_canonical=sa.bindparam("new_key"))
    )
    items = sorted(changes.items())
    for start in range(0, len(items), BATCH_SIZE):
        batch = items[start : start + BATCH_SIZE]
        connection.execute(statement, [{"row_id": i, "new_key": k} for i, k in batch])


def refuse_collisions(connection, changes, revision_name):
    """Stop, having written nothing, if two users would share a key (the unique index would
    fail halfway, or on SQLite leave the keys half rewritten)."""
    holder_of = {}
    for user_id, key in sorted(changes.items()):
        if key in holder_of:
            collision(holder_of[key], user_id, revision_name)
        holder_of[key] = user_id
    keys = sorted(holder_of)
    for start in range(0, len(keys), BATCH_SIZE):
        batch = keys[start : start + BATCH_SIZE]
        # A row holding a new key of another row, today: whether or not it changes too, the
        # order of the updates could not be trusted to free the key first.
        held = connection.execute(
            sa.select(users.c.id, users.c.email_canonical).where(users.c.email_canonical.in_(batch))
        )
        for row in held:
            collision(row.id, holder_of[row.email_canonical], revision_name)


def collision(first_id, second_id, revision_name):
    raise RuntimeError(
        f"users.id {min(first_id, second_id)} and {max(first_id, second_id)} would share one "
        f"canonical email address (users.email_canonical) at revision {revision_name}. "
        "Nothing was changed: merge the two accounts or correct one address, then migrate again."
    )
