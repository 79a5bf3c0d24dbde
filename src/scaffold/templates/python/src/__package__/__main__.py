"""Lets `python -m {{package}}` run the worker."""

import sys

from .worker import main

sys.exit(main())
