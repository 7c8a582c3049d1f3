//! Work splitting over rows with `std::thread::scope`.
