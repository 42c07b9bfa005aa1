"""Ctrl-C (SIGINT) and SIGTERM, for every part of the project: handle() is the one way a
handler is installed, with the same rule everywhere: the first signal calls the part's
handler, a second one acts as if the handler were not there (the default: the process ends
at once). What each part does with the first:
- train.py before and after training (stop_before_recording, record_interruptions): one
  line on stderr, the phase recorded in run_info.json, exit code 128 + the signal, instead
  of a KeyboardInterrupt traceback (SIGINT) or dying unrecorded (SIGTERM);
- during training steps, training/hooks.StopOnSignalHook: the step under way finishes, a
  checkpoint is saved, then the run stops as above;
- predict.py: the batch being written is finished, then it stops and says how many
  sentences were written.

The handlers stay installed from record_interruptions() to the end of the run (the hook
puts them back after training), so no moment between two phases is left unhandled."""
import signal
import sys
from datetime import datetime

SIGNALS = (signal.SIGINT, signal.SIGTERM)
current = {"phase": "preparation"}


def handle(on_signal):
    """From now on, the first SIGINT or SIGTERM calls on_signal(signum) after putting back
    the handlers that were there before, so that a second signal acts as without this
    one. Returns those handlers, for restore()."""
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}

    def first(signum, frame):
        restore(previous)
        on_signal(signum)

    for signum in SIGNALS:
        signal.signal(signum, first)
    return previous


def handle_first(on_signal):
    """handle(), where a second signal ends the process at once (Python's own SIGINT
    handler, put back, would raise KeyboardInterrupt: a traceback)."""
    restore({signum: signal.SIG_DFL for signum in SIGNALS})
    handle(on_signal)


def restore(handlers):
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


def name(signum):
    return signal.Signals(signum).name


def exit_code(signum):
    """The shell's code for a process that a signal ended: 130 for SIGINT, 143 for
    SIGTERM."""
    return 128 + signum


def now(phase):
    """What the run does from now on: "training", "evaluation", "export"."""
    current["phase"] = phase


def stop_before_recording():
    """Until record_interruptions(): SIGINT and SIGTERM end the run (loading the reviews,
    converting them, building the model) with one line on stderr and exit code 128 + the
    signal, instead of a KeyboardInterrupt traceback or an unexplained end. Nothing is
    lost: temporary files are removed on the way out (`finally`) or by the next run."""
    def stop(signum):
        print("%s during the %s, before training: stopped. Run the same command again."
              % (name(signum), current["phase"]), file=sys.stderr)
        sys.exit(exit_code(signum))

    handle_first(stop)


def record_interruptions(run_record):
    """From now on, SIGINT and SIGTERM end the run: "interrupted during <phase>" in
    run_info.json (run_record), a line on stderr, exit code 128 + the signal."""
    def stop(signum):
        run_record.write("interrupted during %s" % current["phase"], datetime.now())
        print("%s during the %s: stopped. Run the same command again to finish; the saved "
              "checkpoints are kept." % (name(signum), current["phase"]), file=sys.stderr)
        # SystemExit, like KeyboardInterrupt, passes the `except Exception` clauses (logging
        # has one) between here and the top.
        sys.exit(exit_code(signum))

    handle_first(stop)
