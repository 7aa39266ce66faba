"""HTTP surface: the v2 distribution API (and, later, the admin API)."""
