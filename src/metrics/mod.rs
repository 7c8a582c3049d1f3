//! Scoring as Numerai does it (SPEC §5), and SVG charts.
