"""The one exception the scripts turn into a plain message and exit code 2."""
import sys


class UserError(Exception):
    """Something the user can fix: the message says what was wrong and what to do."""


def run_script(main):
    """Run a script's main(): a UserError becomes its message on stderr and exit code 2,
    without a traceback."""
    try:
        sys.exit(main())
    except UserError as e:
        print("error: %s" % e, file=sys.stderr)
        sys.exit(2)
