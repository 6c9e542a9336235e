//! The glommio shell: pinned executors, sockets, timers, the cross-shard mesh.
