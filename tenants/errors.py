from __future__ import annotations

from service.core.errors import AppError, Conflict, InvalidInput, Unauthorized


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"
    title = "Invalid credentials"


class TooManyAttempts(AppError):
    status = 429
    code = "too_many_attempts"
    title = "Too many attempts"


class SlugTaken(Conflict):
    code = "slug_taken"
    title = "Slug taken"


class EmailTaken(Conflict):
    code = "email_taken"
    title = "E-mail taken"


class InvalidRoleBinding(InvalidInput):
    code = "invalid_role_binding"
    title = "Role and client do not fit"


class InvalidScope(InvalidInput):
    code = "invalid_scope"
    title = "Unknown or forbidden scope"


class InvalidLogo(InvalidInput):
    code = "invalid_logo"
    title = "Logo refused"


class LinkExpired(AppError):
    status = 400
    code = "link_invalid"
    title = "Link invalid or expired"
