"""fieldcal core: true whatever channel a request came through."""
