"""{{name}}: a WorkerHost (`wh`) worker.

The worker itself is in worker.py; see the README for how to run and test it.
"""

__version__ = "0.1.0"
