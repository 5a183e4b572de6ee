"""The ``restore`` command line: parses options, calls restore_core, prints."""
