//! Automatic call distribution: agents, registrar, queues, persistence.
