//! `rprof attach` against live targets: safety, detach, errors.
