"""Account errors. Messages are fixed strings: they never carry an email, password or token."""


class AccountError(Exception):
    code = "account_error"
    status = 400


class InvalidCredentialsError(AccountError):
    """Wrong email, password or TOTP code, or a disabled account: deliberately indistinct."""

    code = "invalid_credentials"
    status = 401

    def __init__(self) -> None:
        super().__init__("invalid credentials")


class PasswordChangeRequiredError(AccountError):
    code = "password_change_required"
    status = 403

    def __init__(self) -> None:
        super().__init__("the password must be changed before first use")


class UnauthenticatedError(AccountError):
    code = "unauthenticated"
    status = 401

    def __init__(self) -> None:
        super().__init__("a valid bearer token is required")


class PasswordPolicyError(AccountError):
    code = "password_policy"
    status = 422


class AccountConflictError(AccountError):
    code = "account_exists"
    status = 409


class AccountRequestError(AccountError):
    code = "invalid_account"
    status = 422


class AlreadyInitializedError(AccountError):
    code = "already_initialized"
    status = 409

    def __init__(self) -> None:
        super().__init__("accounts already exist; init creates only the first administrator")


class AccountNotFoundError(AccountError):
    code = "not_found"
    status = 404

    def __init__(self) -> None:
        super().__init__("no such account")


class NotPendingError(AccountError):
    """The account is not waiting for approval (approved, rejected, or never needed it)."""

    code = "not_pending"
    status = 409

    def __init__(self) -> None:
        super().__init__("this account is not waiting for approval")


class SecondPersonRequiredError(AccountError):
    """The approver created the account: approval takes a second person."""

    code = "second_person_required"
    status = 403

    def __init__(self) -> None:
        super().__init__("an account's creator cannot approve or reject it")
