"""The output folder, which every step writes through: file names, atomic I/O, the
recorded settings, the lock, clean-up and disk space."""
