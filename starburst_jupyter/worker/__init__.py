"""What runs on a worker (`python -m starburst_jupyter.worker`): claims work, runs programs, flushes results.

It imports nothing from IPython or widgets: only the protocol and the stores."""
