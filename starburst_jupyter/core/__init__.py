"""The core: launcher, job driver, records, job spec and options, config, plans, prices. No IPython, no boto3."""
