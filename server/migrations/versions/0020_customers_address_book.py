"""the name `customers` in a technician's home is their address book (server.contacts): a
calendar someone made under that name before moves to `customers-calendar`; collections are
found by kind

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A home's calendar is '<login>/<name>': one '/'.
    op.execute(
        "UPDATE collection SET path = path || '-calendar' "
        "WHERE kind = 'calendar' AND path LIKE '%/customers' "
        "AND path NOT LIKE '%/%/%' "
        "AND NOT EXISTS (SELECT 1 FROM collection AS taken "
        "WHERE taken.path = collection.path || '-calendar')"
    )
    # every change of a visit looks up the address books (server.contacts.follow_customer)
    op.create_index("ix_collection_kind", "collection", ["kind"])


def downgrade() -> None:
    op.drop_index("ix_collection_kind", table_name="collection")
    books = "SELECT id FROM collection WHERE kind = 'addressbook'"
    op.execute(f"DELETE FROM calendar_item WHERE collection_id IN ({books})")
    op.execute(f"DELETE FROM change WHERE collection_id IN ({books})")
    op.execute("DELETE FROM collection WHERE kind = 'addressbook'")
