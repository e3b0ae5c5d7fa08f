"""Teams, roles, memberships and invitations."""
