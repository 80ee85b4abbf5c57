"""Where bytes and records live: object stores (a folder, S3) and the job record store."""
