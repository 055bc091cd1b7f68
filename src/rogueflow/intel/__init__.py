"""Reference data ("intel"): versioned snapshots, lookup tables and indicator lists."""
