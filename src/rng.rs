//! Philox4x32-10 counter-based RNG, shared by init and dropout on every device.
