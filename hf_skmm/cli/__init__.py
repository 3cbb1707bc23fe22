"""The ``hf-skmm`` command line. Heavy imports happen inside each command function."""
