"""Ways a run's records are shown and kept: terminal tables and the JSON report."""
