"""The one exception the scripts turn into a plain message and exit code 2."""


class UserError(Exception):
    """Something the user can fix: the message says what was wrong and what to do."""
