"""Service requests from the web form (and email): one domain call makes the job."""
