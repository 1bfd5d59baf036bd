"""simlab benchmarks: speed goals live here, never as timed asserts in tests (issue 8)."""
