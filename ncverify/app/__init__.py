"""The application layer: the command line, readable reports, recheck, traces and sweeps, the
only layer that imports both the engine and the claims (`theorems`)."""
