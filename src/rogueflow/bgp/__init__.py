"""BGP history: MRT archives → per-prefix origin/upstream timelines → upstream shares."""
