"""The errors the scripts turn into a plain message and exit code 2: UserError, and a full
disk."""
import sys


class UserError(Exception):
    """Something the user can fix: the message says what was wrong and what to do."""


def run_script(main):
    """Run a script's main(): a UserError or a full disk becomes a message on stderr and
    exit code 2, without a traceback."""
    from imdb_bert import disk_space
    try:
        sys.exit(main())
    except UserError as e:
        print("error: %s" % e, file=sys.stderr)
        sys.exit(2)
    except Exception as e:
        if not disk_space.is_full_disk(e):
            raise
        print("error: %s" % disk_space.full_disk_message(e), file=sys.stderr)
        sys.exit(2)
