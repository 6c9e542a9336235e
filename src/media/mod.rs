//! Media: SDP, RTP port ranges, the io_uring relay, hold audio.
