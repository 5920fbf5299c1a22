"""Errors a user can cause. The command line prints them without a traceback, exit code 2."""


class UserError(Exception):
    """Bad input from the user; the message says what to change."""
