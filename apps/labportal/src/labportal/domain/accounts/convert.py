from __future__ import annotations

from labportal.domain.accounts.models import ApiToken, User
from labportal.domain.accounts.schemas import TokenCreatedOut, TokenOut, UserOut, UserRef


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id, email=user.email, display_name=user.display_name, created_at=user.created_at
    )


def user_ref(user: User | None) -> UserRef | None:
    return None if user is None else UserRef(id=user.id, display_name=user.display_name)


def token_out(token: ApiToken, secret: str | None = None) -> TokenOut:
    fields = {
        "id": token.id,
        "name": token.name,
        "prefix": token.prefix,
        "scopes": list(token.scopes),
        "expires_at": token.expires_at,
        "created_at": token.created_at,
        "last_used_at": token.last_used_at,
    }
    return TokenCreatedOut(**fields, token=secret) if secret else TokenOut(**fields)
