"""Ctrl-C (SIGINT) and SIGTERM outside the training steps, which StopOnSignalHook handles:
during an evaluation, between training segments or during the export, the run stops with
a message, records what it was doing in run_info.json and exits with 128 + the signal,
instead of a KeyboardInterrupt traceback (SIGINT) or dying unrecorded (SIGTERM).

The handlers stay installed from record_interruptions() to the end of the run (the hook
puts them back after training), so no moment between two phases is left unhandled."""
import signal
import sys
from datetime import datetime

SIGNALS = (signal.SIGINT, signal.SIGTERM)
current = {"phase": "preparation"}


def now(phase):
    """What the run does from now on: "training", "evaluation", "export"."""
    current["phase"] = phase


def stop_before_recording():
    """Until record_interruptions(): SIGINT and SIGTERM end the run (loading the reviews,
    converting them, building the model) with one line on stderr and exit code 128 + the
    signal, instead of a KeyboardInterrupt traceback or an unexplained end. Nothing is
    lost: temporary files are removed on the way out (`finally`) or by the next run."""
    def stop(signum, frame):
        for each in SIGNALS:
            signal.signal(each, signal.SIG_DFL)
        print("%s during the %s, before training: stopped. Run the same command again."
              % (signal.Signals(signum).name, current["phase"]), file=sys.stderr)
        sys.exit(128 + signum)

    for signum in SIGNALS:
        signal.signal(signum, stop)


def record_interruptions(run_record):
    """From now on, SIGINT and SIGTERM end the run: "interrupted during <phase>" in
    run_info.json (run_record), a line on stderr, exit code 128 + the signal."""
    def stop(signum, frame):
        for each in SIGNALS:  # a second signal while recording acts as without a handler
            signal.signal(each, signal.SIG_DFL)
        run_record.write("interrupted during %s" % current["phase"], datetime.now())
        print("%s during the %s: stopped. Run the same command again to finish; the saved "
              "checkpoints are kept." % (signal.Signals(signum).name, current["phase"]),
              file=sys.stderr)
        # SystemExit, like KeyboardInterrupt, passes the `except Exception` clauses (logging
        # has one) between here and the top.
        sys.exit(128 + signum)

    for signum in SIGNALS:
        signal.signal(signum, stop)
