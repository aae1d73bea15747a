"""The library's Python sources: plain functions in the compiled subset, runnable as ordinary Python too."""
