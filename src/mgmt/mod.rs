//! Management plane: metrics and snapshots, off the hot cores.
